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

  // true, or the sentence that says what is wrong: [key, vars] (what: "bundle" or "log").
  function checkFields(map, schema, what) {
    const named = { key: "what." + what };
    for (const k of map.keys()) {
      if (!Object.prototype.hasOwnProperty.call(schema, k)) return ["fields.unknown", { what: named, field: JSON.stringify(String(k)) }];
    }
    for (const [field, [check, required]] of Object.entries(schema)) {
      if (!map.has(field)) { if (required) return ["fields.lacks", { what: named, field }]; continue; }
      if (!check(map.get(field))) return ["fields.type", { what: named, field }];
    }
    return true;
  }

  const MAX_BUNDLE = 2 ** 30;

  function parseBundle(data) {
    if (data.length > MAX_BUNDLE) malformed("bundle.large", { max: MAX_BUNDLE });
    // A file that is no bundle, and a bundle cut short, are said as jejak-verify says them (ledger/bundle.py),
    // not as the decoder meets them: a random file's first byte read as a tag, "truncated CBOR (length 288)".
    if (data.length && data[0] >> 5 !== 5) {
      malformed("bundle.other", { byte: data[0].toString(16).padStart(2, "0") });
    }
    const spans = new Map();
    let b;
    try {
      b = J.decode(data, { spans });
    } catch (e) {
      const why = e instanceof JejakError ? e.why.key : "";
      if (why === "why.cbor.trailing") malformed("bundle.trailing", e.why.vars);
      if (data.length && !/^why\.cbor\.(truncated|length|items)$/.test(why)) throw e;
      malformed("bundle.cut", { n: data.length });
    }
    if (!isMap(b)) malformed("bundle.map");
    const ok = checkFields(b, BUNDLE_SCHEMA, "bundle");
    if (ok !== true) {
      // Name the log field that failed, if that is where the problem is.
      if (isArray(b.get("logs"))) {
        for (const log of b.get("logs")) {
          const why = isMap(log) ? checkFields(log, LOG_SCHEMA, "log") : ["fields.log"];
          if (why !== true) malformed(...why);
        }
      }
      malformed(...ok);
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
  // Steps carry a message key and values; the page translates them. A problem is {code, message, where, why, at}:
  // `why` and `at` are the sentence and the place in the page's words ({key, vars}, i18n.js), `message` and
  // `where` the same in English (as jejak-verify says them). The problems are kept in the order of the checks
  // (§12.3), and the first one is the verdict. A step that checks a list the bundle gives (checkpoints,
  // consistency entries, fork evidence, receipts) lists its first MAX_LISTED problems and counts the rest in
  // `more`, as jejak-verify does (ledger/bundle.py): a million bad entries would otherwise be a million steps.
  const MAX_LISTED = 20;
  class Report {
    constructor() { this.steps = []; this.devices = []; this.problems = []; this.notes = []; this.checkpoints = []; this.decisions = []; this.done = 0; this.total = 0; this.stage = "bundle"; this.more = {}; this.listed = {}; }
    // Whether a problem of `step` is listed (and shown as a step of its own); past the first MAX_LISTED it is
    // counted in `more` instead.
    counted(step) {
      const n = (this.listed[step] || 0) + 1;
      this.listed[step] = n;
      if (n <= MAX_LISTED) return true;
      this.more[step] = n - MAX_LISTED;
      return false;
    }
    // The line that says how many problems of `step` were counted and not listed, if any.
    stepMore(step) { if (this.more[step]) this.steps.push({ key: "more." + step, vars: { more: this.more[step] }, ok: false, problem: null }); }
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
  // A place in the bundle, as the page says it (the "at." words).
  const at = (key, vars) => ({ key: "at." + key, vars: vars || {} });
  const asProblem = (e, place) => {
    if (!(e instanceof JejakError)) throw e;
    return { code: e.code, message: e.message, why: e.why, where: place ? J.i18n.words("en", place) : "", at: place || null };
  };
  // The problem a check finds without throwing: code, the key of its sentence and its values, and its place.
  const problem = (code, key, vars, place) => asProblem(new JejakError(code, key, vars), place);
  // Runs `fn`; a typed failure becomes a problem (returned), anything else is a bug and propagates. A place that
  // `fn` learns (the seq of the record it decoded) is given as a function, asked after the failure.
  const attempt = (fn, place) => {
    try { fn(); return null; } catch (e) { return asProblem(e, typeof place === "function" ? place() : place); }
  };

  // ---- 3. checkpoints, 4. consistency -----------------------------------------------------------------------
  function verifyCheckpoints(bundle, hubKey, report) {
    const good = [];
    bundle.checkpoints.forEach((bytes, i) => {
      let cp = null;
      const p = attempt(() => {
        const shape = J.parseCheckpoint(bytes);
        if (shape.head === null) malformed("checkpoint.head");
        cp = J.verifyCheckpoint(bytes, hubKey);
      }, at("checkpoint", { i }));
      if (!p) good.push(cp);
      if (p && !report.counted("checkpoints")) return;
      report.step("checkpoint", { i, size: cp ? cp.treeSize : "?", root: cp ? hex(cp.root).slice(0, 16) : "", time: cp ? utc(cp.time) : "", hub: cp ? cp.head.length : "" }, p);
      report.add(p);
    });
    const bySize = new Map();
    for (const cp of good) {
      const other = bySize.get(cp.treeSize);
      if (other && !equal(other.root, cp.root)) {
        const p = problem("INVALID_CHECKPOINT", "checkpoints.split", { size: cp.treeSize }, at("checkpoints"));
        if (report.counted("checkpoints")) { report.step("checkpoints.split", { size: cp.treeSize }, p); report.add(p); }
      } else if (other && (other.head.length !== cp.head.length || !equal(other.head.id, cp.head.id))) {
        // One tree has one head of the hub's own log: two heads for one size are a false statement of the hub,
        // and either could pass for the largest checkpoint in step 5.
        const p = problem("INVALID_CHECKPOINT", "checkpoints.heads", { size: cp.treeSize }, at("checkpoints"));
        if (report.counted("checkpoints")) { report.step("checkpoints.heads", { size: cp.treeSize }, p); report.add(p); }
      }
      if (!other) bySize.set(cp.treeSize, cp);
    }
    report.stepMore("checkpoints");
    // Sorted by size, then iat: the last one is the largest.
    report.checkpoints = good.slice().sort((a, b) => (a.treeSize - b.treeSize) || (a.time - b.time));
    const linked = [];
    bundle.consistency.forEach(([first, second, proof]) => {
      const p = attempt(() => {
        const a = bySize.get(first), b = bySize.get(second);
        if (!a || !b) fail("INVALID_CHECKPOINT", "consistency.size", { first, second });
        J.verifyConsistency(first, second, a.root, b.root, proof);
      }, at("consistency", { first, second }));
      if (!p) linked.push([first, second]);
      if (p && !report.counted("consistency")) return;
      report.step("consistency", { first, second }, p);
      report.add(p);
    });
    report.stepMore("consistency");
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
      if (r.seq > 0 && r.kind !== "authority" && r.kind !== "attest") fail("BROKEN_CHAIN", "hublog.kind", { seq: r.seq, kind: r.kind });
      if (r.kind === "authority" && r.bodyRef) fail("BROKEN_CHAIN", "hublog.digest", { seq: r.seq });
    };
    const accepted = acceptRange({ device: hubId, records: bundle.hubLog }, J.initialState(hubId), null, onlyDecisions, report);
    const records = accepted.records;
    // The place of a problem in the hub's own log: the hub log, at a seq where one is named.
    const hubAt = (p) => (p.at.vars.seq === undefined ? at("hublog") : at("hublog.seq", { seq: p.at.vars.seq }));
    const logProblem = accepted.problem ? Object.assign(accepted.problem, { at: hubAt(accepted.problem) }) : null;
    if (logProblem) logProblem.where = J.i18n.words("en", logProblem.at);
    report.add(logProblem);
    const ids = records.map((r) => r.id);
    let headProblem = null;
    for (const cp of logProblem ? [] : checkpoints) {
      const { length, id } = cp.head;
      const want = length === 0 ? J.ZERO32 : ids[length - 1];
      if (length > cp.treeSize) {
        headProblem = problem("BROKEN_CHAIN", "hublog.size", { size: cp.treeSize, n: length }, at("hublog"));
        break;
      }
      if (length > ids.length || !equal(want, id)) {
        headProblem = problem("BROKEN_CHAIN", "hublog.head", { size: cp.treeSize, n: length }, at("hublog"));
        break;
      }
    }
    const largest = report.checkpoints[report.checkpoints.length - 1];
    if (!logProblem && !headProblem && largest && largest.head.length !== ids.length) {
      headProblem = problem("BROKEN_CHAIN", "hublog.length", { n: ids.length, named: largest.head.length }, at("hublog"));
    }
    report.add(headProblem);
    report.step("hublog", { n: bundle.hubLog.length, ok: records.length, id: hex(hubId) }, logProblem || headProblem);
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
    const noGenesis = () => fail("UNKNOWN_KEY", "keys.genesis", { device: hex(log.device) });
    if (log.keys.length === 0) noGenesis();
    const g = J.decodeRecord(log.keys[0]);
    if (g.kind !== "key" || g.seq !== 0) noGenesis();
    const schedule = [];
    let prev = null;
    for (const bytes of log.keys) {
      const r = prev === null ? g : J.decodeRecord(bytes);
      if (r.kind !== "key" || !equal(r.device, log.device)) fail("BROKEN_CHAIN", "keys.other");
      if (prev === null) {
        J.genesisKey(r, "INVALID_SIGNATURE");
      } else {
        if (r.seq <= prev.seq) fail("BROKEN_CHAIN", "keys.order");
        if (r.seq === prev.seq + 1 && !equal(r.prev, J.sha256(prev.bytes))) fail("BROKEN_CHAIN", "keys.prev", { seq: r.seq, before: prev.seq });
        if (r.boot < prev.boot) fail("BROKEN_CHAIN", "keys.boot");
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
    if (!equal(first.device, log.device)) fail("BROKEN_CHAIN", "range.inside", { device: hex(first.device), log: hex(log.device) });
    if (first.seq === 0) {
      if (!equal(first.bytes, log.keys[0])) fail("BROKEN_CHAIN", "range.genesis");
      return J.initialState(log.device);
    }
    return { device: log.device, length: first.seq, head: first.prev, key: keyAt(schedule, first.seq), boot: first.boot };
  }

  // 6.3 the hub's decisions admit the device, its key list and the key in force at the range's start.
  function checkStanding(log, schedule, st, firstSeq) {
    if (!st.approval) fail("UNKNOWN_KEY", "standing.none", { device: hex(log.device) });
    if (!equal(st.approval.key, schedule[0].key)) fail("UNKNOWN_KEY", "standing.key", { device: hex(log.device) });
    for (const k of schedule.slice(1)) {
      if (!st.rotations.some((d) => d.fromSeq === k.seq && equal(d.key, k.key))) fail("UNKNOWN_KEY", "standing.rotation", { seq: k.seq });
    }
    for (const d of st.rotations) {
      if (d.fromSeq < firstSeq && !schedule.some((k) => k.seq === d.fromSeq && equal(k.key, d.key))) {
        fail("BROKEN_CHAIN", "standing.lacks", { seq: d.fromSeq });
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
        if (!equal(r.device, log.device)) fail("BROKEN_CHAIN", "range.offered", { device: hex(r.device), log: hex(log.device) });
        if (r.seq < state.length) {
          const mine = r.seq >= start.length ? accepted[r.seq - start.length] : null;
          if (!mine) {
            if (r.seq === state.length - 1 && equal(r.id, state.head)) { r = null; return; }
            fail("BROKEN_CHAIN", "range.below", { seq: r.seq, first: start.length });
          }
          if (equal(mine.id, r.id)) { r = null; return; }
          const signer = keys[r.seq - start.length];
          J.checkForkEvidence(J.encode([mine.bytes, r.bytes]), () => signer);
          fail("FORK_DETECTED", "range.fork", { seq: r.seq, a: hex(mine.id).slice(0, 16), b: hex(r.id).slice(0, 16) });
        }
        J.checkRevocation(r, revokedFrom);
        const linked = J.link(state, r);
        J.checkSignature(r, linked.key);
        // A rule of its own (the hub's log holds only decisions after its genesis) applies to what §7 accepted:
        // a record that fails §7 too has §7's code (FORMAT.md §12.3 step 5).
        if (check) check(r);
        state = linked.state;
        keys.push(linked.key);
      }, () => (r ? at("device.seq", { device: hex(log.device), seq: r.seq }) : at("device", { device: hex(log.device) })));
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
        if (r.kind === "key" && (!k || !equal(k.bytes, r.bytes))) fail("BROKEN_CHAIN", "prefix.key", { seq: r.seq });
        // A key-list entry at a seq of the range is that record: else the device has a second history there.
        if (k && !equal(k.bytes, r.bytes)) fail("BROKEN_CHAIN", "prefix.entry", { seq: r.seq });
        const body = log.bodies.find(([s]) => s === r.seq);
        if (r.bodyRef && body) J.attachBody(r, body[1]);
      }, at("device.seq", { device: hex(log.device), seq: r.seq }));
      if (p) return { records: records.slice(0, i), problem: p };
    }
    return { records, problem: null };
  }

  function verifyLog(log, hubId, decisions, report) {
    const dev = { device: hex(log.device), firstSeq: null, lastSeq: null, firstTime: null, lastTime: null, records: 0, receipts: 0, revokedFrom: null, problems: [], schedule: null };
    report.devices.push(dev);
    const where = at("device", { device: dev.device });
    if (equal(log.device, hubId)) {
      const p = report.add(problem("MALFORMED", "log.hub", {}, where), dev);
      report.step("log.keys", { device: dev.device, n: log.keys.length }, p);
      return [];
    }
    let schedule = null, start = null;
    const st = standing(decisions, log.device);
    dev.revokedFrom = st.revokedFrom;
    const keyProblem = attempt(() => {
      schedule = keySchedule(log);
      dev.schedule = schedule;
      // A key list with no range is vouched for all the same: the hub admitted its genesis and rotations.
      start = log.records.length === 0 ? null : rangeStart(log, schedule);
      checkStanding(log, schedule, st, start ? start.length : 0);
    }, where);
    report.step("log.keys", { device: dev.device, n: log.keys.length }, keyProblem);
    if (report.add(keyProblem, dev)) return [];
    if (log.records.length === 0) {
      // A body needs a detached record of the range, and there is none.
      const bodies = attempt(() => {
        if (log.bodies.length) malformed("bodies.stray", { seq: log.bodies[0][0] });
      }, where);
      if (bodies) report.step("log.bodies", { device: dev.device, n: log.bodies.length }, bodies);
      report.add(bodies, dev);
      return [];
    }
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
    // How many records the range holds and how many of them verified: they differ when a record fails.
    const verified = dev.records ? { key: "log.verified", vars: { n: dev.records, first: dev.firstSeq, last: dev.lastSeq } } : { key: "log.verified.none" };
    report.step("log.records", { device: dev.device, records: { n: log.records.length, noun: "cli.n.record" }, verified, revoked: st.revokedFrom }, p);
    report.add(checked.problem, dev);
    report.add(accepted.problem, dev);
    if (p) return good;
    const bodies = attempt(() => {
      for (const [seq] of log.bodies) {
        const r = good.find((x) => x.seq === seq);
        if (!r) malformed("bodies.stray", { seq });
        if (!r.bodyRef) malformed("bodies.inline", { seq });
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
        fail("FORK_DETECTED", "fork.found", { device: hex(fork.device), seq: fork.seq });
      }, at("fork", { i }));
      if (!report.counted("forks")) return;
      // The forks said are those listed.
      if (fork) report.forks.push({ device: hex(fork.device), seq: fork.seq });
      report.step("fork", { i, device: fork ? hex(fork.device) : "", seq: fork ? fork.seq : "" }, p);
      report.add(p);
    });
    report.stepMore("forks");
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
      const where = at("receipt", { id: hex(id).slice(0, 16) });
      if (!h || seen.has(hex(id))) {
        if (report.counted("receipts")) problems.push(report.add(problem("MALFORMED", h ? "receipt.second" : "receipt.stray", {}, where)));
        continue;
      }
      seen.add(hex(id));
      if (!h.verified) continue;
      const p = attempt(() => {
        const got = J.verifyReceipt(receipt, h.bytes, hubKey);
        if (!checkpoints.some((cp) => equal(cp.prot, got.prot) && equal(cp.root, got.root))) {
          fail("INVALID_PROOF", "receipt.checkpoint");
        }
      }, where);
      if (p) { if (report.counted("receipts")) problems.push(report.add(p, h.dev)); continue; }
      if (h.dev) h.dev.receipts += 1;
      checked += 1;
    }
    for (const [idHex, h] of held) {
      if (h.verified && !seen.has(idHex) && report.counted("receipts")) {
        problems.push(report.add(problem("INVALID_PROOF", "receipt.missing", { id: idHex.slice(0, 16) }, h.dev ? at("device", { device: h.dev.device }) : at("hublog")), h.dev));
      }
    }
    report.receiptsChecked = checked;
    report.step("receipts", { n: bundle.receipts.length, ok: checked }, problems[0] || null);
    report.stepMore("receipts");
  }

  // ---- 9. seal -------------------------------------------------------------------------------------------------
  const SEAL_AAD = J.ascii("jejak/bundle/v1");
  const PROTECTED = Uint8Array.of(0xa1, 0x01, 0x27);
  function verifySeal(bundle, hubKey) {
    const c = J.decode(bundle.seal, { allowTag18: true });
    const v = c && c.tag === 18 ? c.value : null;
    if (!isArray(v) || v.length !== 4 || !isBytes(v[0]) || !equal(v[0], PROTECTED) || !isMap(v[1]) || v[1].size !== 0 || v[2] !== null || !isBytes(v[3], 64)) {
      malformed("seal.shape");
    }
    // The bundle without its seal, encoded: its own bytes less the seal's key and value, under a map head one
    // entry shorter (the decoder took only deterministic CBOR, whose encoding of a value is the one it has).
    const [from, to] = bundle.spans.get("seal");
    const entries = [...bundle.spans.values()];
    const digest = J.sha256Parts([J.head(5, bundle.map.size - 1), bundle.bytes.subarray(entries[0][0], from), bundle.bytes.subarray(to, entries[entries.length - 1][1])]);
    if (!J.ed25519Verify(v[3], J.sigStructure(PROTECTED, SEAL_AAD, digest), hubKey)) {
      fail("INVALID_SIGNATURE", "seal.signature");
    }
  }

  // ---- §12.3 in order ----------------------------------------------------------------------------------------
  function verifyParsed(bundle, pinned, report) {
    const hubKey = pinned || bundle.hubKey;
    Object.assign(report, { hubKey: hex(hubKey), hubId: hex(J.deviceId(hubKey)), pinned: !!pinned });
    const keyProblem = pinned && !equal(pinned, bundle.hubKey)
      ? problem("INVALID_CHECKPOINT", "hubkey.pinned", {}, at("hubkey")) : null;
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
    const seal = attempt(() => verifySeal(bundle, hubKey), at("seal"));
    report.step("seal", {}, seal);
    report.add(seal);
    return hubKey;
  }

  // ---- §12.4 --against: the newer bundle proves that its log extends the older one's -------------------------
  function verifyAgainst(bundle, report, olderBytes, pinned) {
    const p = attempt(() => {
      const old = parseBundle(olderBytes);
      const key = pinned || bundle.hubKey;
      if (!equal(old.hubKey, bundle.hubKey) || (pinned && !equal(pinned, bundle.hubKey))) fail("INVALID_CHECKPOINT", "against.hubs");
      const oldReport = Object.assign(new Report(), { total: items(old), stage: "older", onProgress: report.onProgress });
      verifyParsed(old, key, oldReport);
      if (oldReport.problems.length) { const q = oldReport.problems[0]; fail(q.code, "against.older", { why: q.why }); }
      const o = oldReport.checkpoints[oldReport.checkpoints.length - 1], n = report.checkpoints[report.checkpoints.length - 1];
      report.against = { from: o.treeSize, to: n.treeSize };
      // The same code either way (§12.4 step 4); what it means depends on which bundle the hub made later.
      if (o.treeSize > n.treeSize) {
        if (bundle.created >= old.created) fail("INVALID_CHECKPOINT", "against.shrank", { n: o.treeSize, m: n.treeSize });
        fail("INVALID_CHECKPOINT", "against.larger");
      }
      if (o.treeSize === n.treeSize) {
        if (!equal(o.root, n.root)) fail("INVALID_CHECKPOINT", "against.split", { size: o.treeSize });
      } else {
        const entry = bundle.consistency.find(([f, s]) => f === o.treeSize && s === n.treeSize);
        if (!entry) fail("INVALID_PROOF", "against.proof", { from: o.treeSize, to: n.treeSize });
        J.verifyConsistency(o.treeSize, n.treeSize, o.root, n.root, entry[2]);
      }
      if (old.hubLog.length > bundle.hubLog.length || !old.hubLog.every((r, i) => equal(r, bundle.hubLog[i]))) {
        fail("BROKEN_CHAIN", "against.prefix");
      }
      report.against.notes = revokedSince(oldReport, report);
    }, at("against"));
    // Failed before the two sizes were known (another hub, an older bundle that fails): the step says what it
    // checks without them.
    report.step(report.against ? "against" : "against.unsized", report.against || {}, p);
    report.againstProblem = p;
  }

  // Notes, not problems (FORMAT.md §12.4, notes; ledger.bundle.RevokedSince says the same): each device the newer
  // bundle's decisions revoke from a seq at or below the last one the older bundle verified, so that records the
  // older bundle vouched for are no longer accepted.
  function revokedSince(oldReport, report) {
    const notes = [];
    for (const d of oldReport.devices) {
      const point = standing(report.decisions, J.fromHex(d.device)).revokedFrom;
      if (point === null || d.lastSeq === null || point > d.lastSeq) continue;
      const records = d.lastSeq - Math.max(point, d.firstSeq) + 1;
      notes.push({
        note: "revoked", device: d.device, revoked_from: point, verified_to: d.lastSeq, records,
        message: "device " + d.device + ": revoked from seq " + point + " since the older bundle, which verified up to " + d.lastSeq + ": " + records + " records it vouched for are no longer accepted",
      });
    }
    return notes;
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
    const p = attempt(() => { bundle = parseBundle(bundleBytes); }, at("bundle"));
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
    more: report.more || {},
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
      // A record is in the hub's log before a checkpoint over it is signed: a later device time is a clock that
      // ran ahead (jejak-verify says so too).
      ahead: devices.map((d) => d.lastTime).reduce(max) > cp.time,
    });
  }

  Object.assign(J, { BUNDLE_SCHEMA, LOG_SCHEMA, MAX_BUNDLE, MAX_LISTED, parseBundle, Report, verifyBundle, summary, verified, keyAt, keySchedule, checkpointNotes });
})(globalThis.Jejak);
