// Checkpoints (FORMAT.md §10) and receipts (§11) for the offline verifier.
"use strict";
(function (J) {
  const { fail, malformed, isBytes, isMap, isArray, isUint, equal, hex } = J;
  const EMPTY = new Uint8Array(0);

  // The protected header shared by checkpoints and receipts. Labels checked: 1 (alg) = -8, 4 (kid) = 16
  // bytes, 15 (CWT claims) a map whose 6 (iat) is an integer, 395 = 1, -65537 (tree size) an unsigned
  // integer. Other labels and claims are allowed: the signature covers them.
  function parseHeader(prot) {
    if (!isBytes(prot)) malformed("protected header is not a byte string");
    const h = prot.length ? J.decode(prot) : new Map();
    if (!isMap(h)) malformed("protected header is not a map");
    if (h.get(1) !== -8) malformed("alg is not EdDSA (-8)");
    if (h.get(395) !== 1) malformed("verifiable data structure is not RFC9162_SHA256 (1)");
    const kid = h.get(4);
    if (!isBytes(kid, 16)) malformed("kid is not the hub's 16-byte id");
    const treeSize = h.get(-65537);
    if (!isUint(treeSize)) malformed("tree size is not a non-negative integer");
    const claims = h.get(15);
    if (!isMap(claims) || !J.isInt(claims.get(6))) malformed("CWT claims must carry iat");
    return { kid, time: claims.get(6), treeSize };
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
    const [prot, , root, signature] = parseSign1(bytes, "checkpoint");
    const header = parseHeader(prot);
    if (!isBytes(root, 32)) malformed("checkpoint payload is not a 32-byte root");
    return { hub: header.kid, treeSize: header.treeSize, root, time: header.time, bytes, prot, signature };
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
    // The first inclusion proof under 396 / -1 is the one checked.
    const vdp = unprot.get(396);
    if (!isMap(vdp) || !isArray(vdp.get(-1)) || vdp.get(-1).length === 0 || !isBytes(vdp.get(-1)[0])) {
      malformed("receipt: unprotected header must carry an inclusion proof (396 / -1)");
    }
    const proof = J.decode(vdp.get(-1)[0]);
    if (!isArray(proof) || proof.length !== 3 || !J.isInt(proof[0]) || !J.isInt(proof[1]) || !isArray(proof[2]) || !proof[2].every((p) => isBytes(p))) {
      malformed("inclusion proof is not [tree_size, leaf_index, [hash, ...]]");
    }
    const [treeSize, index, path] = proof;
    if (treeSize !== header.treeSize) fail("INVALID_PROOF", "proof tree size " + treeSize + " differs from the signed " + header.treeSize);
    const root = J.rootFromInclusion(J.leafHash(recordBytes), index, treeSize, path);
    checkKid(header, hubKey);
    if (!checkSignature(prot, root, signature, hubKey)) fail("INVALID_PROOF", "the record is not in the signed log (root signature does not verify)");
    return { treeSize, index, root, time: header.time };
  }

  Object.assign(J, { parseHeader, parseCheckpoint, verifyCheckpoint, verifyReceipt });
})(globalThis.Jejak);
