// Checkpoints (FORMAT.md §10) and receipts (§11) for the offline verifier.
"use strict";
(function (J) {
  const { fail, malformed, isBytes, isMap, isArray, isUint, equal, hex } = J;
  const EMPTY = new Uint8Array(0);

  // §10 step 2: the protected header shared by checkpoints and receipts, exactly: labels 1 = -8, 4 (kid) 16
  // bytes, 15 = {1: kid as lowercase hex, 6: iat}, 395 = 1, -65537 tree size, and optionally -65538 [n, id],
  // the head of the hub's own log.
  const LABELS = new Set([1, 4, 15, 395, -65537, -65538]);
  function parseHeader(prot) {
    if (!isBytes(prot)) malformed("protected header is not a byte string");
    const h = J.decode(prot);
    if (!isMap(h)) malformed("protected header is not a map");
    for (const k of h.keys()) if (!LABELS.has(k)) malformed("protected header has unknown label " + String(k));
    for (const k of [1, 4, 15, 395, -65537]) if (!h.has(k)) malformed("protected header lacks label " + k);
    if (h.get(1) !== -8) malformed("alg is not EdDSA (-8)");
    const kid = h.get(4);
    if (!isBytes(kid, 16)) malformed("kid is not the hub's 16-byte id");
    const claims = h.get(15);
    if (!isMap(claims) || claims.size !== 2 || claims.get(1) !== hex(kid) || !isUint(claims.get(6))) {
      malformed("CWT claims must be exactly {1: kid in hex, 6: iat}");
    }
    if (h.get(395) !== 1) malformed("verifiable data structure is not RFC9162_SHA256 (1)");
    const treeSize = h.get(-65537);
    if (!isUint(treeSize)) malformed("tree size is not a non-negative integer");
    let head = null;
    if (h.has(-65538)) {
      const v = h.get(-65538);
      if (!isArray(v) || v.length !== 2 || !isUint(v[0]) || !isBytes(v[1], 32)) malformed("hub log head (-65538) is not [n, 32-byte id]");
      head = { length: v[0], id: v[1] };
    }
    return { kid, time: claims.get(6), treeSize, head };
  }

  const checkSignature = (prot, payload, signature, hubKey) =>
    J.ed25519Verify(signature, J.sigStructure(prot, EMPTY, payload), hubKey);

  function checkKid(header, hubKey) {
    const hubId = J.deviceId(hubKey);
    if (!equal(header.kid, hubId)) fail("INVALID_CHECKPOINT", "signed by hub " + hex(header.kid) + ", not the trusted hub " + hex(hubId));
  }

  function parseSign1(bytes, what) {
    if (!isBytes(bytes)) malformed(what + " is not a byte string");
    const c = J.decode(bytes, { allowTag18: true });
    if (!(c && c.tag === 18) || !isArray(c.value) || c.value.length !== 4) malformed(what + " is not a tagged COSE_Sign1 of 4 items");
    const [prot, unprot, payload, signature] = c.value;
    if (!isBytes(prot)) malformed(what + ": protected header is not a byte string");
    if (!isMap(unprot)) malformed(what + ": unprotected header is not a map");
    if (payload !== null && !isBytes(payload)) malformed(what + ": payload is neither bytes nor nil");
    if (!isBytes(signature, 64)) malformed(what + ": signature is not 64 bytes");
    return c.value;
  }

  // Shape only (MALFORMED); verifyCheckpoint also checks the hub and the signature.
  function parseCheckpoint(bytes) {
    const [prot, unprot, root, signature] = parseSign1(bytes, "checkpoint");
    if (unprot.size !== 0) malformed("checkpoint unprotected header is not empty");
    if (!isBytes(root, 32)) malformed("checkpoint payload is not a 32-byte root");
    const header = parseHeader(prot);
    return { hub: header.kid, treeSize: header.treeSize, root, time: header.time, head: header.head, bytes, prot, signature };
  }

  function verifyCheckpoint(bytes, hubKey) {
    const cp = parseCheckpoint(bytes);
    checkKid({ kid: cp.hub }, hubKey);
    if (!checkSignature(cp.prot, cp.root, cp.signature, hubKey)) fail("INVALID_CHECKPOINT", "checkpoint signature does not verify");
    return cp;
  }

  // §11: a receipt for record bytes; returns the signed root and tree size it proved inclusion under.
  function verifyReceipt(bytes, recordBytes, hubKey) {
    const [prot, unprot, payload, signature] = parseSign1(bytes, "receipt");
    const header = parseHeader(prot);
    if (payload !== null) malformed("receipt payload is not detached (nil)");
    // Exactly {396: {-1: [proof]}}: one label, one key, one inclusion proof.
    const vdp = unprot.get(396);
    if (unprot.size !== 1 || !isMap(vdp) || vdp.size !== 1 || !isArray(vdp.get(-1)) || vdp.get(-1).length !== 1 || !isBytes(vdp.get(-1)[0])) {
      malformed("receipt: unprotected header must be exactly {396: {-1: [inclusion proof]}}");
    }
    const proof = J.decode(vdp.get(-1)[0]);
    if (!isArray(proof) || proof.length !== 3 || !isUint(proof[0]) || !isUint(proof[1]) || !isArray(proof[2]) || !proof[2].every((p) => isBytes(p))) {
      malformed("inclusion proof is not [tree_size, leaf_index, [hash, ...]]");
    }
    const [treeSize, index, path] = proof;
    if (treeSize !== header.treeSize) fail("INVALID_PROOF", "proof tree size " + treeSize + " differs from the signed " + header.treeSize);
    const root = J.rootFromInclusion(J.leafHash(recordBytes), index, treeSize, path);
    checkKid(header, hubKey);
    if (!checkSignature(prot, root, signature, hubKey)) fail("INVALID_PROOF", "the record is not in the signed log (root signature does not verify)");
    return { treeSize, index, root, time: header.time, prot };
  }

  Object.assign(J, { parseHeader, parseCheckpoint, verifyCheckpoint, verifyReceipt });
})(globalThis.Jejak);
