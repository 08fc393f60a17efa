// Chains (FORMAT.md §7) and fork evidence (§8) for the offline verifier.
"use strict";
(function (J) {
  const { fail, malformed, equal, hex } = J;
  const ZERO32 = new Uint8Array(32);

  // §7.5: a genesis names the key that signs it, and that key must derive the device id.
  function genesisKey(record, codeIfNotDerived) {
    if (record.kind !== "key") fail("BROKEN_CHAIN", "chain.genesiskind", { kind: record.kind });
    const pubkey = record.body.get("pubkey");
    if (!equal(J.deviceId(pubkey), record.device)) {
      fail(codeIfNotDerived, "chain.genesiskey", { device: hex(record.device) });
    }
    return pubkey;
  }

  // §7 steps 1–5, 7 and 9 for a decoded record (everything but the signature and the revocation point).
  // `state` is {device, length, head, key, boot}. Returns the next state and the key that must verify `r`.
  function link(state, r) {
    if (!equal(r.device, state.device)) fail("BROKEN_CHAIN", "chain.device", { seq: r.seq, device: hex(r.device) });
    if (r.seq !== state.length) {
      fail("BROKEN_CHAIN", r.seq < state.length ? "chain.present" : "chain.gap", { want: state.length, seq: r.seq });
    }
    if (!equal(r.prev, state.head)) fail("BROKEN_CHAIN", "chain.prev", { seq: r.seq, before: r.seq - 1 });
    if (r.seq > 0 && r.boot < state.boot) fail("BROKEN_CHAIN", "chain.boot", { seq: r.seq });
    const key = r.seq === 0 ? genesisKey(r, "INVALID_SIGNATURE") : state.key;
    const next = {
      device: state.device, length: r.seq + 1, head: r.id, boot: r.boot,
      key: r.kind === "key" ? r.body.get("pubkey") : key,
    };
    return { state: next, key };
  }

  // §7.8: the operator's revocation point; checked before the signature.
  function checkRevocation(r, revokedFrom) {
    if (revokedFrom !== null && revokedFrom !== undefined && r.seq >= revokedFrom) {
      fail("REVOKED_KEY", "chain.revoked", { seq: r.seq, from: revokedFrom });
    }
  }

  function checkSignature(r, key) {
    if (!J.signatureValid(r, key)) fail("INVALID_SIGNATURE", "chain.signature", { seq: r.seq });
  }

  const initialState = (device) => ({ device, length: 0, head: ZERO32, key: null, boot: 0 });

  // A whole log from genesis (the `verify_chain` / `verify_records` vectors).
  function verifyChain(recordBytes, revokedFrom) {
    if (recordBytes.length === 0) fail("BROKEN_CHAIN", "chain.empty");
    let state = null;
    for (const bytes of recordBytes) {
      const r = J.decodeRecord(bytes);
      const linked = link(state || initialState(r.device), r);
      checkRevocation(r, revokedFrom);
      checkSignature(r, linked.key);
      state = linked.state;
    }
    return state;
  }

  // §8: [record A, record B], same device and seq, different ids, both validly signed. `keyAt(device, seq)`
  // gives the device's key at a seq > 0 (from the bundle), or null when nothing says.
  function checkForkEvidence(bytes, keyAt) {
    const ev = J.decode(bytes);
    if (!J.isArray(ev) || ev.length !== 2 || !J.isBytes(ev[0]) || !J.isBytes(ev[1])) malformed("fork.shape");
    const a = J.decodeRecord(ev[0]), b = J.decodeRecord(ev[1]);
    if (!equal(a.device, b.device) || a.seq !== b.seq) malformed("fork.same");
    if (equal(a.id, b.id)) malformed("fork.identical");
    const shared = a.seq === 0 ? null : keyAt(a.device, a.seq);
    for (const r of [a, b]) {
      const key = r.seq === 0 ? genesisKey(r, "INVALID_SIGNATURE") : shared;
      if (key === null) fail("UNKNOWN_KEY", "fork.nolog");
      if (!J.signatureValid(r, key)) fail("INVALID_SIGNATURE", "fork.signature");
    }
    return { device: a.device, seq: a.seq, ids: [a.id, b.id] };
  }

  Object.assign(J, { ZERO32, genesisKey, link, checkRevocation, checkSignature, initialState, verifyChain, checkForkEvidence });
})(globalThis.Jejak);
