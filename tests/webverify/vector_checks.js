// The checks named by tests/vectors/invalid/*.json, run against the page's verifier (injected by the tests).
"use strict";
(function (J) {
  const b = (h) => (h === null || h === undefined ? null : J.fromHex(h));
  const CHECKS = {
    cbor_decode: (i) => J.decode(b(i.data)),
    decode_record: (i) => J.decodeRecord(b(i.record)),
    attach_body: (i) => J.attachBody(J.decodeRecord(b(i.record)), b(i.body)),
    verify_chain: (i) => J.verifyChain(i.records.map(b), null),
    verify_records: (i) => J.verifyChain(i.records.map(b), i.revoked_from),
    verify_bundle: (i) => {
      const r = J.verifyBundle(b(i.bundle), { hubKey: b(i.hub_key), against: b(i.against) });
      if (!r.ok) J.fail(r.code, "bundle");
    },
    fork_evidence: (i) => {
      J.checkForkEvidence(b(i.evidence), () => b(i.public_key));
      J.fail("FORK_DETECTED", "valid fork evidence");
    },
    inclusion: (i) => J.verifyInclusion(b(i.leaf), i.index, i.size, i.path.map(b), b(i.root)),
    receipt: (i) => J.verifyReceipt(b(i.receipt), b(i.leaf), b(i.hub_key)),
    consistency_proof: (i) => J.verifyConsistency(i.first, i.second, b(i.first_root), b(i.second_root), i.proof.map(b)),
    checkpoint: (i) => J.verifyCheckpoint(b(i.checkpoint), b(i.hub_key)),
    checkpoint_pair: (i) => {
      const key = b(i.hub_key);
      const older = J.verifyCheckpoint(b(i.older), key), newer = J.verifyCheckpoint(b(i.newer), key);
      try {
        J.verifyConsistency(older.treeSize, newer.treeSize, older.root, newer.root, i.proof.map(b));
      } catch (e) {
        if (e instanceof J.JejakError) J.fail("INVALID_CHECKPOINT", "two checkpoints that are not consistent: " + e.message);
        throw e;
      }
    },
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
