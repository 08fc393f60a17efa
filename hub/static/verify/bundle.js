// Bundles (FORMAT.md §12): the schema in one place, then one function per check, in the order §12.1 gives.
"use strict";
(function (J) {
  const { fail, malformed, JejakError, isBytes, isMap, isArray, isUint, isText, equal, hex } = J;

  // ---- schema ----------------------------------------------------------------------------------------------
  // Every field: [type check, required]. A missing required field, an unknown field or another type is
  // MALFORMED for the whole bundle.
  const arrayOf = (check) => (v) => isArray(v) && v.every(check);
  const tuple = (...checks) => (v) => isArray(v) && v.length === checks.length && checks.every((c, i) => c(v[i]));
  const bytes = (n) => (v) => isBytes(v, n);
  const orNull = (check) => (v) => v === null || check(v);
  const schemaOf = (fields) => (v) => isMap(v) && checkFields(v, fields, "log") === true;
  const LOG_SCHEMA = {
    device: [bytes(16), true],
    keys: [arrayOf(bytes()), true],
    records: [arrayOf(bytes()), true],
    bodies: [(v) => arrayOf(tuple(isUint, bytes()))(v) && new Set(v.map(([s]) => String(s))).size === v.length, true],
    revoked_from: [orNull(isUint), true],
  };
  const BUNDLE_SCHEMA = {
    format: [(v) => v === "jejak-bundle/1", true],
    created: [isUint, true],
    description: [isText, false],
    hub_key: [orNull(bytes(32)), true],
    logs: [arrayOf(schemaOf(LOG_SCHEMA)), true],
    checkpoints: [arrayOf(bytes()), true],
    receipts: [arrayOf(tuple(bytes(), bytes())), true],
    consistency: [arrayOf(tuple(isUint, isUint, arrayOf(bytes()))), true],
    forks: [arrayOf(bytes()), true],
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
    const b = J.decode(data);
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
      created: b.get("created"), description: b.has("description") ? b.get("description") : "",
      hubKey: b.get("hub_key"),
      logs: b.get("logs").map((l) => ({
        device: l.get("device"), keys: l.get("keys"), records: l.get("records"), bodies: l.get("bodies"),
        revokedFrom: l.get("revoked_from"),
      })),
      checkpoints: b.get("checkpoints"), receipts: b.get("receipts"), consistency: b.get("consistency"),
      forks: b.get("forks"),
    };
  }

  // ---- report ----------------------------------------------------------------------------------------------
  // Steps carry a message key and values; the page translates them. A problem is {code, message, where}.
  class Report {
    constructor() { this.steps = []; this.devices = []; this.problems = []; this.checkpoints = []; }
    step(key, vars, problem) { this.steps.push({ key, vars: vars || {}, ok: !problem, problem: problem || null }); }
    // Devices' problems come before bundle-level ones (FORMAT.md §13): a receipt whose record failed is a
    // consequence, not the cause.
    firstProblem() {
      if (this.againstProblem) return this.againstProblem;
      for (const d of this.devices) if (d.problems.length) return d.problems[0];
      return this.problems[0] || null;
    }
    finish() {
      const first = this.firstProblem();
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

  // ---- 1. per log ------------------------------------------------------------------------------------------
  // The key schedule: [{from, pubkey}] (a key signs from the seq after its key record on), from the key
  // list, each entry checked as a link of the device's chain (records between key records are skipped).
  function keySchedule(log) {
    if (log.keys.length === 0) fail("UNKNOWN_KEY", "no usable genesis key for device " + hex(log.device));
    const g = J.decodeRecord(log.keys[0]);
    if (g.kind !== "key") fail("UNKNOWN_KEY", "no usable genesis key for device " + hex(log.device));
    if (!equal(J.deviceId(g.body.get("pubkey")), log.device)) fail("UNKNOWN_KEY", "genesis key does not derive the device id");
    const schedule = [];
    let state = null;
    for (const bytes of log.keys) {
      const r = J.decodeRecord(bytes);
      if (r.kind !== "key" || !equal(r.device, log.device)) fail("BROKEN_CHAIN", "key list holds a record that is not a key record of this device");
      if (r.seq === 0) state = J.initialState(log.device);
      if (state === null) fail("UNKNOWN_KEY", "key list does not start with the genesis record");
      if (r.seq !== state.length) state = Object.assign({}, state, { length: r.seq, head: r.prev });
      const linked = J.link(state, r);
      J.checkSignature(r, linked.key);
      state = linked.state;
      schedule.push({ from: r.seq + 1, pubkey: r.body.get("pubkey") });
    }
    return schedule;
  }

  // The key a record at `seq` must verify with: the genesis key, or the last one whose schedule began.
  const keyAt = (schedule, seq) => {
    let key = schedule[0].pubkey;
    for (const k of schedule) if (k.from <= seq) key = k.pubkey;
    return key;
  };

  // The state a range extends. A range from genesis starts empty (its genesis must be the key list's); a
  // later one is taken at its word for its first record's prev and boot, with the key the key list puts in
  // force there: the range proves its own records, not the history before them.
  function rangeStart(log, schedule) {
    if (log.records.length === 0) return J.initialState(log.device);
    const first = J.decodeRecord(log.records[0]);
    if (!equal(first.device, log.device)) fail("BROKEN_CHAIN", "record of device " + hex(first.device) + " inside the log of " + hex(log.device));
    if (first.seq === 0) {
      if (!equal(first.bytes, log.keys[0])) fail("BROKEN_CHAIN", "genesis record differs from the genesis in the key list");
      return J.initialState(log.device);
    }
    return { device: log.device, length: first.seq, head: first.prev, key: keyAt(schedule, first.seq), boot: first.boot };
  }

  // §7 over the range, record by record: the verified prefix and the problem that ended it. A record the
  // range already holds (same id) is a harmless repeat and skipped; another validly signed record at a seq
  // the range holds is a fork (FORK_DETECTED).
  function acceptRange(log, start) {
    const accepted = [];
    const keys = [];
    let state = start;
    for (const bytes of log.records) {
      let r = null;
      const p = attempt(() => {
        r = J.decodeRecord(bytes);
        if (!equal(r.device, log.device)) fail("BROKEN_CHAIN", "record of device " + hex(r.device) + " offered as device " + hex(log.device));
        if (r.seq < state.length) {
          if (r.seq === state.length - 1 && equal(r.id, state.head)) { r = null; return; }
          const mine = r.seq >= start.length ? accepted[r.seq - start.length] : null;
          if (!mine) fail("BROKEN_CHAIN", "seq " + r.seq + " is below the range's first seq " + start.length);
          if (equal(mine.id, r.id)) { r = null; return; }
          const signer = r.seq ? keys[r.seq - start.length] : null;
          J.checkForkEvidence(J.encode([mine.bytes, r.bytes]), () => signer);
          fail("FORK_DETECTED", "two different records at seq " + r.seq + ": " + hex(mine.id).slice(0, 16) + "... and " + hex(r.id).slice(0, 16) + "...");
        }
        J.checkRevocation(r, log.revokedFrom);
        const linked = J.link(state, r);
        J.checkSignature(r, linked.key);
        const body = log.bodies.find(([s]) => s === r.seq);
        if (r.bodyRef && body) J.attachBody(r, body[1]);
        state = linked.state;
        keys.push(linked.key);
      }, "device " + hex(log.device) + (r ? " seq " + r.seq : ""));
      if (p) return { records: accepted, problem: p };
      if (r) accepted.push(r);
    }
    return { records: accepted, problem: null };
  }

  // §5: a body entry must belong to a detached record of the range.
  function checkBodyEntries(log, records) {
    for (const [seq] of log.bodies) {
      const r = records.find((x) => x.seq === seq);
      if (!r) malformed("detached body for seq " + seq + ", which is not a verified record of the range");
      if (!r.bodyRef) malformed("detached body for seq " + seq + ", whose record carries its body inline");
    }
  }

  function verifyLog(log, report) {
    const dev = { device: hex(log.device), firstSeq: null, lastSeq: null, records: 0, receipts: 0, problems: [] };
    report.devices.push(dev);
    const where = "device " + dev.device;
    let start = null, schedule = null;
    const keyProblem = attempt(() => { schedule = keySchedule(log); start = rangeStart(log, schedule); }, where);
    report.step("log.keys", { device: dev.device, n: log.keys.length }, keyProblem);
    if (keyProblem) { dev.problems.push(keyProblem); return []; }
    const result = acceptRange(log, start);
    const good = result.records;
    dev.records = good.length;
    if (good.length) { dev.firstSeq = good[0].seq; dev.lastSeq = good[good.length - 1].seq; }
    report.step("log.records", { device: dev.device, n: log.records.length, first: dev.firstSeq, last: dev.lastSeq, revoked: log.revokedFrom }, result.problem);
    if (result.problem) { dev.problems.push(result.problem); return good; }
    const bodies = attempt(() => checkBodyEntries(log, good), where);
    report.step("log.bodies", { device: dev.device, n: log.bodies.length }, bodies);
    if (bodies) dev.problems.push(bodies);
    return good;
  }

  // ---- 2. fork evidence ------------------------------------------------------------------------------------
  // Valid evidence is listed (report.forks) and does not fail the bundle: the bundle proves the fork.
  function verifyForks(bundle, report) {
    report.forks = [];
    bundle.forks.forEach((ev, i) => {
      let fork = null;
      const p = attempt(() => {
        fork = J.checkForkEvidence(ev, (device, seq) => {
          let key = null;
          for (const log of bundle.logs) if (equal(log.device, device) && seq > 0) key = keyAt(keySchedule(log), seq);
          return key;
        });
      }, "fork evidence " + i);
      report.step("fork", { i, device: fork ? hex(fork.device) : "", seq: fork ? fork.seq : "" }, p);
      if (p) report.problems.push(p); else report.forks.push({ device: hex(fork.device), seq: fork.seq });
    });
  }

  // ---- 3. checkpoints and consistency ----------------------------------------------------------------------
  function verifyCheckpoints(bundle, hubKey, report) {
    const good = [];
    bundle.checkpoints.forEach((bytes, i) => {
      let cp = null;
      const p = attempt(() => {
        J.parseCheckpoint(bytes);
        if (hubKey === null) fail("UNKNOWN_KEY", "bundle has checkpoints but no hub key to check them with");
        cp = J.verifyCheckpoint(bytes, hubKey);
      }, "checkpoint " + i);
      report.step("checkpoint", { i, size: cp ? cp.treeSize : "?", root: cp ? hex(cp.root).slice(0, 16) : "", time: cp ? cp.time : "" }, p);
      if (p) report.problems.push(p); else good.push(cp);
    });
    // Sorted by size, then time (stable); of two of one size the later one stands for that size.
    good.sort((a, b) => (a.treeSize - b.treeSize) || (a.time - b.time));
    report.checkpoints = good;
    const bySize = new Map(good.map((c) => [c.treeSize, c]));
    for (let i = 1; i < good.length; i++) {
      const a = good[i - 1], b = good[i];
      if (a.treeSize === b.treeSize && !equal(a.root, b.root)) {
        const p = { code: "INVALID_CHECKPOINT", message: "two checkpoints of size " + a.treeSize + " with different roots: the hub forked its log", where: "checkpoints" };
        report.step("checkpoints.split", { size: a.treeSize }, p);
        report.problems.push(p);
      }
    }
    bundle.consistency.forEach(([first, second, proof]) => {
      const p = attempt(() => {
        const a = bySize.get(first), b = bySize.get(second);
        if (!a || !b || hubKey === null) fail("INVALID_CHECKPOINT", "consistency proof " + first + "->" + second + " names a missing checkpoint");
        checkpointsConsistent(a, b, proof, hubKey);
      }, "consistency " + first + "->" + second);
      report.step("consistency", { first, second }, p);
      if (p) report.problems.push(p);
    });
    return bySize;
  }

  // §10: both checkpoints genuine, and the larger log extends the smaller one (order of the pair is free).
  function checkpointsConsistent(a, b, proof, hubKey) {
    J.verifyCheckpoint(a.bytes, hubKey);
    J.verifyCheckpoint(b.bytes, hubKey);
    const [older, newer] = a.treeSize > b.treeSize ? [b, a] : [a, b];
    if (older.treeSize === 0) return;
    try {
      J.verifyConsistency(older.treeSize, newer.treeSize, older.root, newer.root, proof);
    } catch (e) {
      if (e instanceof JejakError && e.code === "INVALID_PROOF") {
        fail("INVALID_CHECKPOINT", "checkpoints of size " + older.treeSize + " and " + newer.treeSize + " are inconsistent: " + e.message);
      }
      throw e;
    }
  }

  // ---- 4. receipts -----------------------------------------------------------------------------------------
  // A receipt's failure is its device's problem (after the device's record problems); a receipt for a
  // record the bundle does not hold (or that failed) is a bundle problem.
  function verifyReceipts(bundle, hubKey, bySize, good, report) {
    let checked = 0;
    const before = report.problems.length;
    for (const [id, receipt] of bundle.receipts) {
      const held = good.get(hex(id));
      if (!held) {
        report.problems.push({ code: "MALFORMED", message: "receipt for record " + hex(id).slice(0, 16) + "... that the bundle does not hold or that did not verify", where: "receipts" });
        continue;
      }
      const p = attempt(() => {
        if (hubKey === null) fail("UNKNOWN_KEY", "receipts need the hub key");
        const got = J.verifyReceipt(receipt, held.r.bytes, hubKey);
        const cp = bySize.get(got.treeSize);
        if (cp && !equal(cp.root, got.root)) fail("INVALID_CHECKPOINT", "receipt root differs from the checkpoint of the same size");
      }, "receipt for device " + held.dev.device + " seq " + held.r.seq);
      if (p) { held.dev.problems.push(p); continue; }
      held.dev.receipts += 1;
      checked += 1;
    }
    report.receiptsChecked = checked;
    const first = report.devices.map((d) => d.problems.find((x) => x.where.startsWith("receipt"))).find(Boolean) || report.problems[before] || null;
    report.step("receipts", { n: bundle.receipts.length, ok: checked }, first);
  }

  // ---- --against: the newer bundle proves that its log extends the older one's -----------------------------
  // Checked after everything else, and its failure is reported first: it is what the auditor asked.
  function verifyAgainst(bundle, olderBytes, pinned, report) {
    const p = attempt(() => {
      const old = parseBundle(olderBytes);
      const key = pinned || bundle.hubKey || old.hubKey;
      if (key === null) fail("UNKNOWN_KEY", "comparing bundles needs the hub key");
      if (old.hubKey && bundle.hubKey && !equal(old.hubKey, bundle.hubKey)) fail("INVALID_CHECKPOINT", "the two bundles come from different hubs");
      const largest = (list) => list.map(J.parseCheckpoint).reduce((x, y) => (x === null || y.treeSize >= x.treeSize ? y : x), null);
      const a = largest(old.checkpoints), b = largest(bundle.checkpoints);
      if (!old.checkpoints.length || !bundle.checkpoints.length) fail("INVALID_CHECKPOINT", "both bundles need at least one checkpoint");
      report.against = { from: a.treeSize, to: b.treeSize };
      if (a.treeSize === b.treeSize) { checkpointsConsistent(a, b, [], key); return; }
      const entry = bundle.consistency.find(([f, s]) => f === a.treeSize && s === b.treeSize);
      if (!entry) fail("INVALID_CHECKPOINT", "newer bundle carries no consistency proof from size " + a.treeSize + " to " + b.treeSize);
      checkpointsConsistent(a, b, entry[2], key);
    }, "against");
    report.step("against", report.against || {}, p);
    report.againstProblem = p;
  }

  // ---- all of it -------------------------------------------------------------------------------------------
  // bundleBytes, options {hubKey: Uint8Array|null, against: Uint8Array|null} -> Report.
  function verifyBundle(bundleBytes, options) {
    const opts = options || {};
    const report = new Report();
    let bundle = null;
    const p = attempt(() => { bundle = parseBundle(bundleBytes); }, "bundle");
    report.step("bundle.parse", { bytes: bundleBytes.length }, p);
    if (p) { report.problems.push(p); return report.finish(); }
    report.bundle = { created: bundle.created, description: bundle.description, logs: bundle.logs.length };
    const pinned = opts.hubKey || null;
    const hubKey = pinned || bundle.hubKey;
    let keyProblem = null;
    if (pinned && bundle.hubKey && !equal(pinned, bundle.hubKey)) {
      keyProblem = { code: "INVALID_CHECKPOINT", message: "bundle names another hub key than the one pinned", where: "hub key" };
      report.problems.push(keyProblem);
    }
    report.step("bundle.hubkey", { pinned: !!pinned, key: hubKey ? hex(hubKey) : "", id: hubKey ? hex(J.deviceId(hubKey)) : "" }, keyProblem);

    const good = new Map();
    for (const log of bundle.logs) {
      const records = verifyLog(log, report);
      const dev = report.devices[report.devices.length - 1];
      for (const r of records) good.set(hex(r.id), { r, dev });
    }
    verifyForks(bundle, report);
    const bySize = verifyCheckpoints(bundle, hubKey, report);
    verifyReceipts(bundle, hubKey, bySize, good, report);
    if (opts.against) verifyAgainst(bundle, opts.against, pinned, report);
    return report.finish();
  }

  // The same result as a plain object (what the tests and --json-like output compare).
  const summary = (report) => ({
    ok: report.ok, code: report.code, exit: report.exit,
    problems: (report.againstProblem ? [report.againstProblem] : []).concat(report.devices.flatMap((d) => d.problems), report.problems),
  });

  Object.assign(J, { BUNDLE_SCHEMA, LOG_SCHEMA, parseBundle, Report, verifyBundle, summary, keyAt, keySchedule });
})(globalThis.Jejak);
