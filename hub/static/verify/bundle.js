// Bundles (FORMAT.md §12, format jejak-bundle/2): the schema, then one function per step of §12.3, in its order.
"use strict";
(function (J) {
  const { fail, malformed, JejakError, isBytes, isMap, isArray, isUint, isText, equal, hex } = J;

  // ---- 1. schema -------------------------------------------------------------------------------------------
  // Every field: [type check, required]. A missing required field, an unknown field or another type is
  // MALFORMED for the whole bundle.
  const arrayOf = (check) => (v) => isArray(v) && v.every(check);
  const nonEmpty = (check) => (v) => arrayOf(check)(v) && v.length > 0;
  const tuple = (...checks) => (v) => isArray(v) && v.length === checks.length && checks.every((c, i) => c(v[i]));
  const bytes = (n) => (v) => isBytes(v, n);
  const schemaOf = (fields) => (v) => isMap(v) && checkFields(v, fields, "log") === true;
  const LOG_SCHEMA = {
    device: [bytes(16), true],
    keys: [arrayOf(bytes()), true],
    records: [arrayOf(bytes()), true],
    bodies: [(v) => arrayOf(tuple(isUint, bytes()))(v) && new Set(v.map(([s]) => String(s))).size === v.length, true],
  };
  const BUNDLE_SCHEMA = {
    format: [(v) => v === "jejak-bundle/2", true],
    created: [isUint, true],
    description: [isText, false],
    hub_key: [bytes(32), true],
    hub_log: [nonEmpty(bytes()), true],
    logs: [arrayOf(schemaOf(LOG_SCHEMA)), true],
    checkpoints: [nonEmpty(bytes()), true],
    receipts: [arrayOf(tuple(bytes(32), bytes())), true],
    consistency: [arrayOf(tuple(isUint, isUint, arrayOf(bytes()))), true],
    forks: [arrayOf(bytes()), true],
    seal: [bytes(), true],
  };

  function checkFields(map, schema, what) {
    for (const k of map.keys()) {
      if (!Object.prototype.hasOwnProperty.call(schema, k)) return what + " has unknown field " + JSON.stringify(String(k));
    }
    for (const [field, [check, required]] of Object.entries(schema)) {
      if (!map.has(field)) { if (required) return what + " lacks field '" + field + "'"; continue; }
      if (!check(map.get(field))) return what + " field '" + field + "' has the wrong type or value";
    }
    return true;
  }

  const MAX_BUNDLE = 2 ** 30;

  function parseBundle(data) {
    if (data.length > MAX_BUNDLE) malformed("bundle larger than " + MAX_BUNDLE + " bytes");
    // A file that is no bundle, and a bundle cut short, are said as jejak-verify says them (ledger/bundle.py),
    // not as the decoder meets them: a random file's first byte read as a tag, "truncated CBOR (length 288)".
    if (data.length && data[0] >> 5 !== 5) {
      malformed("expected a map: this file is not a Jejak bundle (it starts with byte 0x" +
        data[0].toString(16).padStart(2, "0") + ")");
    }
    const spans = new Map();
    let b;
    try {
      b = J.decode(data, { spans });
    } catch (e) {
      const after = e.code === "MALFORMED" && /^trailing bytes after the CBOR item \((\d+)\)$/.exec(e.message);
      if (after) malformed("bytes after the bundle's map (" + after[1] + "), where a bundle ends");
      if (data.length && !(e.code === "MALFORMED" && e.message.startsWith("truncated CBOR"))) throw e;
      malformed("cut short: it ends after " + data.length + " bytes, before its map does");
    }
    if (!isMap(b)) malformed("bundle is not a map");
    const ok = checkFields(b, BUNDLE_SCHEMA, "bundle");
    if (ok !== true) {
      // Name the log field that failed, if that is where the problem is.
      if (isArray(b.get("logs"))) {
        for (const log of b.get("logs")) {
          const why = isMap(log) ? checkFields(log, LOG_SCHEMA, "log") : "log is not a map";
          if (why !== true) malformed(why);
        }
      }
      malformed(ok);
    }
    return {
      map: b, created: b.get("created"), description: b.has("description") ? b.get("description") : "",
      hubKey: b.get("hub_key"), hubLog: b.get("hub_log"),
      logs: b.get("logs").map((l) => ({ device: l.get("device"), keys: l.get("keys"), records: l.get("records"), bodies: l.get("bodies") })),
      checkpoints: b.get("checkpoints"), receipts: b.get("receipts"), consistency: b.get("consistency"),
      forks: b.get("forks"), seal: b.get("seal"), bytes: data, spans,
    };
  }

  // ---- report ----------------------------------------------------------------------------------------------
  // Steps carry a message key and values; the page translates them. A problem is {code, message, where}; the
  // problems are kept in the order of the checks (§12.3), and the first one is the verdict.
  class Report {
    constructor() { this.steps = []; this.devices = []; this.problems = []; this.notes = []; this.checkpoints = []; this.decisions = []; this.done = 0; this.total = 0; this.stage = "bundle"; }
    // One record or receipt checked: the page shows how far a long check has come (options.progress), in the
    // bundle or, for --against, in the older bundle (stage "older").
    tick() { this.done += 1; if (this.onProgress) this.onProgress(this.done, this.total, this.stage); }
    step(key, vars, problem) { this.steps.push({ key, vars: vars || {}, ok: !problem, problem: problem || null }); }
    add(problem, dev) { if (problem) { this.problems.push(problem); if (dev) dev.problems.push(problem); } return problem; }
    finish() {
      const first = this.againstProblem || this.problems[0] || null;
      this.ok = first === null;
      this.code = first ? first.code : null;
      this.exit = first ? J.EXIT[first.code] : 0;
      return this;
    }
  }
  const asProblem = (e, where) => {
    if (!(e instanceof JejakError)) throw e;
    return { code: e.code, message: e.message, where: where || "" };
  };
  // Runs `fn`; a typed failure becomes a problem (returned), anything else is a bug and propagates.
  const attempt = (fn, where) => { try { fn(); return null; } catch (e) { return asProblem(e, where); } };

  // ---- 3. checkpoints, 4. consistency -----------------------------------------------------------------------
  function verifyCheckpoints(bundle, hubKey, report) {
    const good = [];
    bundle.checkpoints.forEach((bytes, i) => {
      let cp = null;
      const p = attempt(() => {
        const shape = J.parseCheckpoint(bytes);
        if (shape.head === null) malformed("checkpoint lacks the head of the hub's own log (label -65538)");
        cp = J.verifyCheckpoint(bytes, hubKey);
      }, "checkpoint " + i);
      report.step("checkpoint", { i, size: cp ? cp.treeSize : "?", root: cp ? hex(cp.root).slice(0, 16) : "", time: cp ? utc(cp.time) : "", hub: cp ? cp.head.length : "" }, p);
      if (!report.add(p)) good.push(cp);
    });
    const bySize = new Map();
    for (const cp of good) {
      const other = bySize.get(cp.treeSize);
      if (other && !equal(other.root, cp.root)) {
        const p = { code: "INVALID_CHECKPOINT", message: "two checkpoints of size " + cp.treeSize + " with different roots: the hub rewrote its log", where: "checkpoints" };
        report.step("checkpoints.split", { size: cp.treeSize }, p);
        report.add(p);
      }
      if (!other) bySize.set(cp.treeSize, cp);
    }
    // Sorted by size, then iat: the last one is the largest.
    report.checkpoints = good.slice().sort((a, b) => (a.treeSize - b.treeSize) || (a.time - b.time));
    const linked = [];
    bundle.consistency.forEach(([first, second, proof]) => {
      const p = attempt(() => {
        const a = bySize.get(first), b = bySize.get(second);
        if (!a || !b) fail("INVALID_CHECKPOINT", "consistency entry " + first + "->" + second + " names a size no verified checkpoint has");
        J.verifyConsistency(first, second, a.root, b.root, proof);
      }, "consistency " + first + "->" + second);
      report.step("consistency", { first, second }, p);
      if (!report.add(p)) linked.push([first, second]);
    });
    report.notes = checkpointNotes(good, linked);
    return good;
  }

  // Notes, not problems (FORMAT.md §12.3; ledger.bundle.checkpoint_notes says the same): what the checkpoints
  // that verified leave unshown, given the sizes [first, second] of the consistency entries that verified. A
  // size-0 checkpoint whose root is not MTH({}) ("empty_root"); each other size from which no chain of entries,
  // each to a size at least its first, leads to the largest ("untied"). The empty tree is a prefix of every tree
  // (§9), so a size-0 checkpoint with its root needs no entry.
  const EMPTY_ROOT = J.sha256(new Uint8Array(0));
  function checkpointNotes(checkpoints, linked) {
    const roots = new Map();
    for (const cp of checkpoints) {
      if (!roots.has(cp.treeSize)) roots.set(cp.treeSize, []);
      roots.get(cp.treeSize).push(cp.root);
    }
    if (!roots.size) return [];
    const sizes = [...roots.keys()].sort((a, b) => a - b);
    const largest = sizes[sizes.length - 1];
    const later = new Map();
    for (const [first, second] of linked) {
      if (!later.has(first)) later.set(first, new Set());
      later.get(first).add(second);
    }
    const tied = new Set([largest]);
    for (const size of [...later.keys()].sort((a, b) => b - a)) {
      if ([...later.get(size)].some((s) => tied.has(s))) tied.add(size);
    }
    const notes = [];
    for (const size of sizes) {
      if (size === 0 && !roots.get(0).every((r) => equal(r, EMPTY_ROOT))) {
        notes.push({ note: "empty_root", size: 0, largest, message: "checkpoint of size 0 names a root that is not the empty tree's: the hub signed a false statement" });
      } else if (size !== 0 && !tied.has(size)) {
        notes.push({ note: "untied", size, largest, message: "checkpoint of size " + size + " is not tied to checkpoint of size " + largest + " by a consistency proof: the bundle does not show that the larger log extends it" });
      }
    }
    return notes;
  }

  // ---- 5. the hub's own log -----------------------------------------------------------------------------------
  // -> {records: the verified prefix, decisions: their authority bodies in seq order}.
  function verifyHubLog(bundle, hubKey, checkpoints, report) {
    const hubId = J.deviceId(hubKey);
    // A whole log from the empty state, accepted like any offered range (a repeated record is skipped); after
    // the genesis only decisions and attestations (§6.2).
    const onlyDecisions = (r) => {
      if (r.seq > 0 && r.kind !== "authority" && r.kind !== "attest") fail("BROKEN_CHAIN", "seq " + r.seq + " of the hub's own log is a " + r.kind + " record");
      if (r.kind === "authority" && r.bodyRef) fail("BROKEN_CHAIN", "seq " + r.seq + " of the hub's own log is a decision carried by digest: no decision can be read from it");
    };
    const accepted = acceptRange({ device: hubId, records: bundle.hubLog }, J.initialState(hubId), null, onlyDecisions, report);
    const records = accepted.records;
    const problem = accepted.problem ? Object.assign(accepted.problem, { where: "hub log " + accepted.problem.where.replace(/^device \w+ ?/, "") }) : null;
    report.add(problem);
    const ids = records.map((r) => r.id);
    let headProblem = null;
    for (const cp of problem ? [] : checkpoints) {
      const { length, id } = cp.head;
      const want = length === 0 ? J.ZERO32 : ids[length - 1];
      if (length > ids.length || !equal(want, id)) {
        headProblem = { code: "BROKEN_CHAIN", message: "checkpoint of size " + cp.treeSize + " names hub log head " + length + " that the bundle's hub log does not hold", where: "hub log" };
        break;
      }
    }
    const largest = report.checkpoints[report.checkpoints.length - 1];
    if (!problem && !headProblem && largest && largest.head.length !== ids.length) {
      headProblem = { code: "BROKEN_CHAIN", message: "the hub log holds " + ids.length + " records, its largest checkpoint names " + largest.head.length, where: "hub log" };
    }
    report.add(headProblem);
    report.step("hublog", { n: bundle.hubLog.length, ok: records.length, id: hex(hubId) }, problem || headProblem);
    const decisions = records.filter((r) => r.kind === "authority").map((r) => ({
      seq: r.seq, action: r.body.get("action"), device: r.body.get("device"), fromSeq: r.body.get("from_seq"),
      key: r.body.get("key") || null, site: r.body.get("site") || "", role: r.body.get("role") || "",
    }));
    for (const d of decisions) {
      report.step("decision." + d.action, { seq: d.seq, device: hex(d.device), from: d.fromSeq, site: d.site, role: d.role, key: d.key ? hex(d.key).slice(0, 16) : "" });
    }
    report.decisions = decisions;
    return { records, decisions };
  }

  // The standing of a device by the decisions (§6.2).
  function standing(decisions, device) {
    const mine = decisions.filter((d) => equal(d.device, device));
    const approval = mine.find((d) => d.action === "approve") || null;
    // Several rotate decisions for one seq: the last one in the hub's log stands.
    const rotations = mine.filter((d, i) => d.action === "rotate"
      && !mine.slice(i + 1).some((e) => e.action === "rotate" && e.fromSeq === d.fromSeq));
    const points = mine.filter((d) => d.action === "withdraw" || d.action === "revoke").map((d) => d.fromSeq);
    return { approval, rotations, revokedFrom: points.length ? Math.min(...points) : null };
  }

  // ---- 6. device logs ----------------------------------------------------------------------------------------
  // 6.1 the key list -> [{seq, key, bytes}] (a key signs from the seq after its key record on).
  function keySchedule(log) {
    const noGenesis = () => fail("UNKNOWN_KEY", "the key list of device " + hex(log.device) + " does not start with a genesis key record");
    if (log.keys.length === 0) noGenesis();
    const g = J.decodeRecord(log.keys[0]);
    if (g.kind !== "key" || g.seq !== 0) noGenesis();
    const schedule = [];
    let prev = null;
    for (const bytes of log.keys) {
      const r = prev === null ? g : J.decodeRecord(bytes);
      if (r.kind !== "key" || !equal(r.device, log.device)) fail("BROKEN_CHAIN", "the key list holds a record that is not a key record of this device");
      if (prev === null) {
        J.genesisKey(r, "INVALID_SIGNATURE");
      } else {
        if (r.seq <= prev.seq) fail("BROKEN_CHAIN", "the key list is not in increasing seq order");
        if (r.seq === prev.seq + 1 && !equal(r.prev, J.sha256(prev.bytes))) fail("BROKEN_CHAIN", "key record at seq " + r.seq + " does not name seq " + prev.seq + " as prev");
        if (r.boot < prev.boot) fail("BROKEN_CHAIN", "boot counter went backwards in the key list");
      }
      J.checkSignature(r, prev === null ? r.body.get("pubkey") : prev.key);
      prev = { seq: r.seq, key: r.body.get("pubkey"), bytes, boot: r.boot };
      schedule.push(prev);
    }
    return schedule;
  }

  // The key a record at `seq` > 0 must verify with: the key of the last key record before it.
  const keyAt = (schedule, seq) => {
    let key = schedule[0].key;
    for (const k of schedule) if (k.seq < seq) key = k.key;
    return key;
  };

  // 6.2 the state a range extends. A range from genesis starts empty (its genesis must be the key list's);
  // a later one is taken at its word for its first record's prev and boot, with the key in force there.
  function rangeStart(log, schedule) {
    const first = J.decodeRecord(log.records[0]);
    if (!equal(first.device, log.device)) fail("BROKEN_CHAIN", "record of device " + hex(first.device) + " inside the log of " + hex(log.device));
    if (first.seq === 0) {
      if (!equal(first.bytes, log.keys[0])) fail("BROKEN_CHAIN", "genesis record differs from the genesis in the key list");
      return J.initialState(log.device);
    }
    return { device: log.device, length: first.seq, head: first.prev, key: keyAt(schedule, first.seq), boot: first.boot };
  }

  // 6.3 the hub's decisions admit the device, its key list and the key in force at the range's start.
  function checkStanding(log, schedule, st, firstSeq) {
    if (!st.approval) fail("UNKNOWN_KEY", "device " + hex(log.device) + " has no approval in the hub's own log");
    if (!equal(st.approval.key, schedule[0].key)) fail("UNKNOWN_KEY", "device " + hex(log.device) + " was approved with another key");
    for (const k of schedule.slice(1)) {
      if (!st.rotations.some((d) => d.fromSeq === k.seq && equal(d.key, k.key))) fail("UNKNOWN_KEY", "the rotation at seq " + k.seq + " was not accepted by the hub");
    }
    for (const d of st.rotations) {
      if (d.fromSeq < firstSeq && !schedule.some((k) => k.seq === d.fromSeq && equal(k.key, d.key))) {
        fail("BROKEN_CHAIN", "the key list lacks the rotation at seq " + d.fromSeq + " the hub accepted");
      }
    }
  }

  // 6.4 §7 over the range, record by record: the verified prefix and the problem that ended it. A record the
  // range already holds (same id) is skipped; another validly signed record at a seq it holds is a fork.
  function acceptRange(log, start, revokedFrom, check, report) {
    const accepted = [];
    const keys = [];
    let state = start;
    for (const bytes of log.records) {
      let r = null;
      if (report) report.tick();
      const p = attempt(() => {
        r = J.decodeRecord(bytes);
        if (!equal(r.device, log.device)) fail("BROKEN_CHAIN", "record of device " + hex(r.device) + " offered as device " + hex(log.device));
        if (r.seq < state.length) {
          const mine = r.seq >= start.length ? accepted[r.seq - start.length] : null;
          if (!mine) {
            if (r.seq === state.length - 1 && equal(r.id, state.head)) { r = null; return; }
            fail("BROKEN_CHAIN", "seq " + r.seq + " is below the range's first seq " + start.length);
          }
          if (equal(mine.id, r.id)) { r = null; return; }
          const signer = keys[r.seq - start.length];
          J.checkForkEvidence(J.encode([mine.bytes, r.bytes]), () => signer);
          fail("FORK_DETECTED", "two different records at seq " + r.seq + ": " + hex(mine.id).slice(0, 16) + "... and " + hex(r.id).slice(0, 16) + "...");
        }
        J.checkRevocation(r, revokedFrom);
        const linked = J.link(state, r);
        J.checkSignature(r, linked.key);
        // A rule of its own (the hub's log holds only decisions after its genesis) applies to what §7 accepted:
        // a record that fails §7 too has §7's code (FORMAT.md §12.3 step 5).
        if (check) check(r);
        state = linked.state;
        keys.push(linked.key);
      }, "device " + hex(log.device) + (r ? " seq " + r.seq : ""));
      if (p) return { records: accepted, problem: p };
      if (r) accepted.push(check ? r : slim(r));
    }
    return { records: accepted, problem: null };
  }

  // What later steps read of a device's record; the rest of the decoded record is let go, as a large bundle holds
  // hundreds of thousands of them.
  const slim = (r) => ({ bytes: r.bytes, id: r.id, seq: r.seq, time: r.time, kind: r.kind, bodyRef: r.bodyRef });

  // 6.5 key records match the key list, detached bodies match their records: the first failure cuts the prefix.
  function checkPrefix(log, schedule, records) {
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      const p = attempt(() => {
        const k = schedule.find((x) => x.seq === r.seq);
        if (r.kind === "key" && (!k || !equal(k.bytes, r.bytes))) fail("BROKEN_CHAIN", "the key list lacks the key record at seq " + r.seq);
        // A key-list entry at a seq of the range is that record: else the device has a second history there.
        if (k && !equal(k.bytes, r.bytes)) fail("BROKEN_CHAIN", "the key list's entry for seq " + r.seq + " is not the range's record there");
        const body = log.bodies.find(([s]) => s === r.seq);
        if (r.bodyRef && body) J.attachBody(r, body[1]);
      }, "device " + hex(log.device) + " seq " + r.seq);
      if (p) return { records: records.slice(0, i), problem: p };
    }
    return { records, problem: null };
  }

  function verifyLog(log, hubId, decisions, report) {
    const dev = { device: hex(log.device), firstSeq: null, lastSeq: null, firstTime: null, lastTime: null, records: 0, receipts: 0, revokedFrom: null, problems: [], schedule: null };
    report.devices.push(dev);
    const where = "device " + dev.device;
    if (equal(log.device, hubId)) {
      const p = report.add({ code: "MALFORMED", message: "a log of the hub id: the hub's own log belongs in hub_log", where }, dev);
      report.step("log.keys", { device: dev.device, n: log.keys.length }, p);
      return [];
    }
    let schedule = null, start = null;
    const st = standing(decisions, log.device);
    dev.revokedFrom = st.revokedFrom;
    const keyProblem = attempt(() => {
      schedule = keySchedule(log);
      dev.schedule = schedule;
      if (log.records.length === 0) return;
      start = rangeStart(log, schedule);
      checkStanding(log, schedule, st, start.length);
    }, where);
    report.step("log.keys", { device: dev.device, n: log.keys.length }, keyProblem);
    if (report.add(keyProblem, dev) || log.records.length === 0) return [];
    const accepted = acceptRange(log, start, st.revokedFrom, null, report);
    const checked = checkPrefix(log, schedule, accepted.records);
    const good = checked.records;
    dev.records = good.length;
    if (good.length) { dev.firstSeq = good[0].seq; dev.lastSeq = good[good.length - 1].seq; }
    // The span of device times (a device's clock may run backwards across boots).
    for (const r of good) {
      if (dev.firstTime === null || r.time < dev.firstTime) dev.firstTime = r.time;
      if (dev.lastTime === null || r.time > dev.lastTime) dev.lastTime = r.time;
    }
    const p = checked.problem || accepted.problem;
    report.step("log.records", { device: dev.device, n: log.records.length, first: dev.firstSeq, last: dev.lastSeq, revoked: st.revokedFrom }, p);
    report.add(checked.problem, dev);
    report.add(accepted.problem, dev);
    if (p) return good;
    const bodies = attempt(() => {
      for (const [seq] of log.bodies) {
        const r = good.find((x) => x.seq === seq);
        if (!r) malformed("detached body for seq " + seq + ", which is not a record of the range");
        if (!r.bodyRef) malformed("detached body for seq " + seq + ", whose record carries its body inline");
      }
    }, where);
    report.step("log.bodies", { device: dev.device, n: log.bodies.length }, bodies);
    report.add(bodies, dev);
    return good;
  }

  // ---- 7. fork evidence ----------------------------------------------------------------------------------------
  function verifyForks(bundle, report) {
    report.forks = [];
    bundle.forks.forEach((ev, i) => {
      let fork = null;
      const p = attempt(() => {
        fork = J.checkForkEvidence(ev, (device, seq) => {
          const dev = report.devices.find((d) => d.device === hex(device) && d.schedule);
          return dev ? keyAt(dev.schedule, seq) : null;
        });
        report.forks.push({ device: hex(fork.device), seq: fork.seq });
        fail("FORK_DETECTED", "device " + hex(fork.device) + " signed two different records at seq " + fork.seq);
      }, "fork evidence " + i);
      report.step("fork", { i, device: fork ? hex(fork.device) : "", seq: fork ? fork.seq : "" }, p);
      report.add(p);
    });
  }

  // ---- 8. receipts ---------------------------------------------------------------------------------------------
  // held: record id hex -> {bytes, verified, dev}.
  function verifyReceipts(bundle, hubKey, checkpoints, held, report) {
    let checked = 0;
    const seen = new Set();
    const problems = [];
    for (const [id, receipt] of bundle.receipts) {
      report.tick();
      const h = held.get(hex(id));
      const where = "receipt for " + hex(id).slice(0, 16) + "...";
      if (!h || seen.has(hex(id))) {
        problems.push(report.add({ code: "MALFORMED", message: h ? "a second receipt for one record" : "receipt for a record the bundle does not hold", where }));
        continue;
      }
      seen.add(hex(id));
      if (!h.verified) continue;
      const p = attempt(() => {
        const got = J.verifyReceipt(receipt, h.bytes, hubKey);
        if (!checkpoints.some((cp) => equal(cp.prot, got.prot) && equal(cp.root, got.root))) {
          fail("INVALID_PROOF", "the receipt is not under a checkpoint of the bundle");
        }
      }, where);
      if (p) { problems.push(report.add(p, h.dev)); continue; }
      if (h.dev) h.dev.receipts += 1;
      checked += 1;
    }
    for (const [idHex, h] of held) {
      if (h.verified && !seen.has(idHex)) {
        problems.push(report.add({ code: "INVALID_PROOF", message: "record " + idHex.slice(0, 16) + "... has no receipt: the bundle does not show it in the hub's log", where: h.dev ? "device " + h.dev.device : "hub log" }, h.dev));
      }
    }
    report.receiptsChecked = checked;
    report.step("receipts", { n: bundle.receipts.length, ok: checked }, problems[0] || null);
  }

  // ---- 9. seal -------------------------------------------------------------------------------------------------
  const SEAL_AAD = J.ascii("jejak/bundle/v1");
  const PROTECTED = Uint8Array.of(0xa1, 0x01, 0x27);
  function verifySeal(bundle, hubKey) {
    const c = J.decode(bundle.seal, { allowTag18: true });
    const v = c && c.tag === 18 ? c.value : null;
    if (!isArray(v) || v.length !== 4 || !isBytes(v[0]) || !equal(v[0], PROTECTED) || !isMap(v[1]) || v[1].size !== 0 || v[2] !== null || !isBytes(v[3], 64)) {
      malformed("the seal is not 18([h'a10127', {}, nil, signature])");
    }
    // The bundle without its seal, encoded: its own bytes less the seal's key and value, under a map head one
    // entry shorter (the decoder took only deterministic CBOR, whose encoding of a value is the one it has).
    const [from, to] = bundle.spans.get("seal");
    const entries = [...bundle.spans.values()];
    const digest = J.sha256Parts([J.head(5, bundle.map.size - 1), bundle.bytes.subarray(entries[0][0], from), bundle.bytes.subarray(to, entries[entries.length - 1][1])]);
    if (!J.ed25519Verify(v[3], J.sigStructure(PROTECTED, SEAL_AAD, digest), hubKey)) {
      fail("INVALID_SIGNATURE", "the hub's seal does not verify: the bundle was changed after export");
    }
  }

  // ---- §12.3 in order ----------------------------------------------------------------------------------------
  function verifyParsed(bundle, pinned, report) {
    const hubKey = pinned || bundle.hubKey;
    Object.assign(report, { hubKey: hex(hubKey), hubId: hex(J.deviceId(hubKey)), pinned: !!pinned });
    const keyProblem = pinned && !equal(pinned, bundle.hubKey)
      ? { code: "INVALID_CHECKPOINT", message: "bundle names another hub key than the one pinned", where: "hub key" } : null;
    report.step("bundle.hubkey", { pinned: !!pinned, key: hex(hubKey), id: hex(J.deviceId(hubKey)) }, keyProblem);
    report.add(keyProblem);
    const checkpoints = verifyCheckpoints(bundle, hubKey, report);
    const hub = verifyHubLog(bundle, hubKey, checkpoints, report);
    const held = new Map();
    const verifiedHub = new Set(hub.records.map((r) => hex(r.id)));
    for (const b of bundle.hubLog) { const id = hex(J.sha256(b)); held.set(id, { bytes: b, verified: verifiedHub.has(id), dev: null }); }
    const hubId = J.deviceId(hubKey);
    for (const log of bundle.logs) {
      const good = verifyLog(log, hubId, hub.decisions, report);
      const dev = report.devices[report.devices.length - 1];
      const ids = new Set(good.map((r) => hex(r.id)));
      for (const b of log.records) {
        const id = hex(J.sha256(b));
        const h = held.get(id);
        if (!h) held.set(id, { bytes: b, verified: ids.has(id), dev });
        else if (ids.has(id)) Object.assign(h, { verified: true, dev });
      }
    }
    verifyForks(bundle, report);
    verifyReceipts(bundle, hubKey, checkpoints, held, report);
    const seal = attempt(() => verifySeal(bundle, hubKey), "seal");
    report.step("seal", {}, seal);
    report.add(seal);
    return hubKey;
  }

  // ---- §12.4 --against: the newer bundle proves that its log extends the older one's -------------------------
  function verifyAgainst(bundle, report, olderBytes, pinned) {
    const p = attempt(() => {
      const old = parseBundle(olderBytes);
      const key = pinned || bundle.hubKey;
      if (!equal(old.hubKey, bundle.hubKey) || (pinned && !equal(pinned, bundle.hubKey))) fail("INVALID_CHECKPOINT", "the two bundles come from different hubs");
      const oldReport = Object.assign(new Report(), { total: items(old), stage: "older", onProgress: report.onProgress });
      verifyParsed(old, key, oldReport);
      if (oldReport.problems.length) { const q = oldReport.problems[0]; fail(q.code, "older bundle: " + q.message); }
      const o = oldReport.checkpoints[oldReport.checkpoints.length - 1], n = report.checkpoints[report.checkpoints.length - 1];
      report.against = { from: o.treeSize, to: n.treeSize };
      if (o.treeSize > n.treeSize) fail("INVALID_CHECKPOINT", "the older bundle's log is larger: the bundles are given the wrong way round");
      if (o.treeSize === n.treeSize) {
        if (!equal(o.root, n.root)) fail("INVALID_CHECKPOINT", "two checkpoints of size " + o.treeSize + " with different roots");
      } else {
        const entry = bundle.consistency.find(([f, s]) => f === o.treeSize && s === n.treeSize);
        if (!entry) fail("INVALID_PROOF", "the newer bundle carries no consistency proof from size " + o.treeSize + " to " + n.treeSize);
        J.verifyConsistency(o.treeSize, n.treeSize, o.root, n.root, entry[2]);
      }
      if (old.hubLog.length > bundle.hubLog.length || !old.hubLog.every((r, i) => equal(r, bundle.hubLog[i]))) {
        fail("BROKEN_CHAIN", "the older bundle's hub log is not a prefix of the newer one's");
      }
    }, "against");
    report.step("against", report.against || {}, p);
    report.againstProblem = p;
  }

  // A time as people read it (the hub signs Unix seconds), the same in every browser's zone.
  function utc(seconds) {
    const d = new Date(Number(seconds) * 1000);
    return isNaN(d) ? String(seconds) : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  // What a check ticks through: each record of the hub's log and of the device logs, and each receipt.
  const items = (bundle) => bundle.hubLog.length + bundle.logs.reduce((n, l) => n + l.records.length, 0) + bundle.receipts.length;

  // bundleBytes, options {hubKey: Uint8Array|null, against: Uint8Array|null, progress: (done, total, stage) => void
  // or absent} -> Report.
  function verifyBundle(bundleBytes, options) {
    const opts = options || {};
    const report = new Report();
    let bundle = null;
    const p = attempt(() => { bundle = parseBundle(bundleBytes); }, "bundle");
    report.step("bundle.parse", { bytes: bundleBytes.length }, p);
    if (report.add(p)) return report.finish();
    report.bundle = { created: bundle.created, description: bundle.description, logs: bundle.logs.length };
    report.total = items(bundle);
    report.onProgress = opts.progress || null;
    const pinned = opts.hubKey || null;
    verifyParsed(bundle, pinned, report);
    if (opts.against && report.problems.length === 0) verifyAgainst(bundle, report, opts.against, pinned);
    return report.finish();
  }

  // The same result as a plain object (what the tests and --json-like output compare).
  const summary = (report) => ({
    ok: report.ok, code: report.code, exit: report.exit,
    problems: (report.againstProblem ? [report.againstProblem] : []).concat(report.problems),
    notes: report.notes || [],
  });

  // What the auditor reads after the verdict (jejak-verify prints the same): the records, devices and
  // device-time span that verified, under which checkpoint, and the hub key to compare out of band.
  function verified(report) {
    const devices = (report.devices || []).filter((d) => d.records > 0);
    const cp = (report.checkpoints || [])[(report.checkpoints || []).length - 1];
    const out = { key: report.hubKey || null, id: report.hubId || null, pinned: !!report.pinned, records: null };
    if (!devices.length || !cp) return out;
    const min = (a, b) => (b < a ? b : a), max = (a, b) => (b > a ? b : a);
    return Object.assign(out, {
      records: devices.reduce((n, d) => n + d.records, 0), devices: devices.length,
      first: utc(devices.map((d) => d.firstTime).reduce(min)), last: utc(devices.map((d) => d.lastTime).reduce(max)),
      size: cp.treeSize, time: utc(cp.time),
    });
  }

  Object.assign(J, { BUNDLE_SCHEMA, LOG_SCHEMA, MAX_BUNDLE, parseBundle, Report, verifyBundle, summary, verified, keyAt, keySchedule, checkpointNotes });
})(globalThis.Jejak);
