// The checks named by tests/vectors/invalid/*.json, run against the page's verifier (injected by the tests).
"use strict";
(function (J) {
  const b = (h) => (h === null || h === undefined ? null : J.fromHex(h));
  // A report that fails throws its first problem, as a check does.
  const failed = (r) => {
    if (r.ok) return;
    const why = J.summary(r).problems[0].why;
    J.fail(r.code, why.key.slice("why.".length), why.vars);
  };
  const CHECKS = {
    cbor_decode: (i) => J.decode(b(i.data)),
    decode_record: (i) => J.decodeRecord(b(i.record)),
    attach_body: (i) => J.attachBody(J.decodeRecord(b(i.record)), b(i.body)),
    verify_chain: (i) => J.verifyChain(i.records.map(b), null),
    verify_records: (i) => J.verifyChain(i.records.map(b), i.revoked_from),
    verify_bundle: (i) => {
      const r = J.verifyBundle(b(i.bundle), { hubKey: b(i.hub_key), against: b(i.against) });
      failed(r);
    },
    verify_against: (i) => {
      const r = J.verifyBundle(b(i.newer), { against: b(i.older) });
      failed(r);
    },
    fork_evidence: (i) => {
      J.checkForkEvidence(b(i.evidence), () => b(i.public_key));
      J.fail("FORK_DETECTED", "fork.found", {});
    },
    inclusion: (i) => J.verifyInclusion(b(i.leaf), i.index, i.size, i.path.map(b), b(i.root)),
    receipt: (i) => J.verifyReceipt(b(i.receipt), b(i.leaf), b(i.hub_key)),
    consistency_proof: (i) => J.verifyConsistency(i.first, i.second, b(i.first_root), b(i.second_root), i.proof.map(b)),
    checkpoint: (i) => J.verifyCheckpoint(b(i.checkpoint), b(i.hub_key)),
    checkpoint_pair: (i) => {
      const key = b(i.hub_key);
      const older = J.verifyCheckpoint(b(i.older), key), newer = J.verifyCheckpoint(b(i.newer), key);
      // §10: two signed checkpoints of one size with different roots prove on their own that the hub rewrote its log.
      if (older.treeSize === newer.treeSize && !J.equal(older.root, newer.root)) J.fail("INVALID_CHECKPOINT", "against.split", { size: older.treeSize });
      // §9, §10: a consistency proof between two checkpoints that fails is INVALID_PROOF, like every proof.
      J.verifyConsistency(older.treeSize, newer.treeSize, older.root, newer.root, i.proof.map(b));
    },
  };
  // The valid vectors: each returns a list of mismatches (empty when the page agrees).
  const VALID = {
    chain: (v) => {
      const out = [];
      const state = J.verifyChain(v.records.map((r) => b(r.cose)), null);
      const e = v.expect;
      if (state.length !== e.length) out.push("length " + state.length);
      if (J.hex(state.head) !== e.head) out.push("head " + J.hex(state.head));
      if (J.hex(state.key) !== e.key) out.push("key " + J.hex(state.key));
      if (state.boot !== e.boot) out.push("boot " + state.boot);
      if (J.hex(state.device) !== e.device_id) out.push("device");
      for (const [seq, body] of Object.entries(v.detached_bodies || {})) {
        J.attachBody(J.decodeRecord(b(v.records[Number(seq)].cose)), b(body));
      }
      return out;
    },
    records: (v) => v.records.flatMap((r) => {
      const d = J.decodeRecord(b(r.cose));
      const out = [];
      const same = (name, got, want) => { if (got !== want) out.push("seq " + r.seq + " " + name + ": " + got + " != " + want); };
      same("id", J.hex(d.id), r.id);
      same("device", J.hex(d.device), r.device);
      same("seq", d.seq, r.seq);
      same("prev", J.hex(d.prev), r.prev);
      same("time", d.time, r.time);
      same("boot", d.boot, r.boot);
      same("kind", d.kind, r.kind);
      same("payload", J.hex(d.payload), r.payload);
      same("signature", J.hex(d.signature), r.signature);
      same("sig_structure", J.hex(J.sigStructure(Uint8Array.of(0xa1, 0x01, 0x27), J.ascii("jejak/record/v1"), d.payload)), r.sig_structure);
      same("verifies", J.signatureValid(d, b(v.public_key)), true);
      return out;
    }),
    checkpoints: (v) => {
      const out = [];
      const key = b(v.hub_public_key);
      const cps = v.checkpoints.map((c) => {
        const cp = J.verifyCheckpoint(b(c.cose), key);
        if (cp.treeSize !== c.tree_size || J.hex(cp.root) !== c.root || cp.time !== c.time || J.hex(cp.hub) !== c.hub) out.push("checkpoint " + c.tree_size);
        if (J.hex(J.rootOf(v.leaves.slice(0, c.tree_size).map(b))) !== c.root) out.push("root over the leaves " + c.tree_size);
        return cp;
      });
      const bySize = new Map(cps.map((c) => [c.treeSize, c]));
      const c = v.consistency;
      J.verifyConsistency(c.first, c.second, bySize.get(c.first).root, bySize.get(c.second).root, c.proof.map(b));
      for (const r of v.receipts) {
        const got = J.verifyReceipt(b(r.receipt), b(r.record), key);
        if (got.index !== r.leaf_index || !bySize.has(got.treeSize) || J.hex(got.root) !== J.hex(bySize.get(got.treeSize).root)) out.push("receipt " + r.leaf_index);
      }
      return out;
    },
    // valid/bundle.json: the bytes of bundle.cbor and bundle-older.cbor are added by the test (bundle, older).
    bundle: (v) => {
      const out = [];
      const r = J.verifyBundle(b(v.bundle), { against: b(v.older) });
      const e = v.expect;
      if (!r.ok) out.push("verdict " + r.code + ": " + J.summary(r).problems[0].message);
      const sizes = r.checkpoints.map((c) => c.treeSize);
      if (JSON.stringify(sizes) !== JSON.stringify(e.checkpoints)) out.push("checkpoints " + sizes);
      if (r.decisions.length !== e.decisions) out.push("decisions " + r.decisions.length);
      const hubLog = r.steps.find((s) => s.key === "hublog");
      if (!hubLog || hubLog.vars.ok !== e.hub_log) out.push("hub log");
      if (r.receiptsChecked !== e.receipts) out.push("receipts " + r.receiptsChecked);
      const devices = r.devices.map((d) => ({ device: d.device, records: d.records, revoked_from: d.revokedFrom }));
      if (JSON.stringify(devices) !== JSON.stringify(e.devices)) out.push("devices " + JSON.stringify(devices));
      if (!r.against || r.against.from !== e.against.from || r.against.to !== e.against.to) out.push("against " + JSON.stringify(r.against));
      if (J.hex(J.deviceId(b(v.hub_public_key))) !== v.hub_id) out.push("hub id");
      for (const h of v.hub_log) {
        const d = J.decodeRecord(b(h.cose));
        if (J.hex(d.id) !== h.id || d.seq !== h.seq || d.kind !== h.kind) out.push("hub log record " + h.seq);
      }
      return out;
    },
    limits: (v) => {
      J.decode(b(v.cbor_depth_16));
      for (const r of Object.values(v.records)) J.decodeRecord(b(r));
      return [];
    },
    rfc6962: (v) => {
      const out = [];
      const leaves = v.leaves.map(b);
      if (J.hex(J.rootOf([])) !== v.empty_root) out.push("empty root");
      v.roots.forEach((root, i) => { if (J.hex(J.rootOf(leaves.slice(0, i + 1))) !== root) out.push("root " + (i + 1)); });
      for (const p of v.inclusion) {
        J.verifyInclusion(J.leafHash(leaves[p.index]), p.index, p.size, p.path.map(b), b(v.roots[p.size - 1]));
      }
      for (const p of v.consistency) {
        J.verifyConsistency(p.first, p.second, b(v.roots[p.first - 1]), b(v.roots[p.second - 1]), p.proof.map(b));
      }
      return out;
    },
  };
  J.runValid = (kind, vector) => {
    try { return VALID[kind](vector); } catch (e) { return [String(e.code || "") + " " + e.message]; }
  };

  // -> the code a check fails with, or null when it passes.
  J.runVector = (check, input) => {
    if (!(check in CHECKS)) throw new Error("unknown check " + check);
    try { CHECKS[check](input); return null; } catch (e) {
      if (e instanceof J.JejakError) return e.code;
      throw e;
    }
  };
})(globalThis.Jejak);
