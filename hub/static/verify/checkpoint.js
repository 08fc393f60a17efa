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
    if (!isBytes(prot)) malformed("header.bytes");
    const h = J.decode(prot);
    if (!isMap(h)) malformed("header.map");
    for (const k of h.keys()) if (!LABELS.has(k)) malformed("header.unknown", { label: String(k) });
    for (const k of [1, 4, 15, 395, -65537]) if (!h.has(k)) malformed("header.lacks", { label: k });
    if (h.get(1) !== -8) malformed("header.alg");
    const kid = h.get(4);
    if (!isBytes(kid, 16)) malformed("header.kid");
    const claims = h.get(15);
    if (!isMap(claims) || claims.size !== 2 || claims.get(1) !== hex(kid) || !isUint(claims.get(6))) {
      malformed("header.claims");
    }
    if (h.get(395) !== 1) malformed("header.vds");
    const treeSize = h.get(-65537);
    if (!isUint(treeSize)) malformed("header.size");
    let head = null;
    if (h.has(-65538)) {
      const v = h.get(-65538);
      if (!isArray(v) || v.length !== 2 || !isUint(v[0]) || !isBytes(v[1], 32)) malformed("header.head");
      head = { length: v[0], id: v[1] };
    }
    return { kid, time: claims.get(6), treeSize, head };
  }

  const checkSignature = (prot, payload, signature, hubKey) =>
    J.ed25519Verify(signature, J.sigStructure(prot, EMPTY, payload), hubKey);

  function checkKid(header, hubKey) {
    const hubId = J.deviceId(hubKey);
    if (!equal(header.kid, hubId)) fail("INVALID_CHECKPOINT", "signed.hub", { kid: hex(header.kid), hub: hex(hubId) });
  }

  function parseSign1(bytes, what) {
    if (!isBytes(bytes)) malformed("sign1.bytes", { what });
    const c = J.decode(bytes, { allowTag18: true });
    if (!(c && c.tag === 18) || !isArray(c.value) || c.value.length !== 4) malformed("sign1.cose", { what });
    const [prot, unprot, payload, signature] = c.value;
    if (!isBytes(prot)) malformed("sign1.protected", { what });
    if (!isMap(unprot)) malformed("sign1.unprotected", { what });
    if (payload !== null && !isBytes(payload)) malformed("sign1.payload", { what });
    if (!isBytes(signature, 64)) malformed("sign1.signature", { what });
    return c.value;
  }

  // Shape only (MALFORMED); verifyCheckpoint also checks the hub and the signature.
  function parseCheckpoint(bytes) {
    const [prot, unprot, root, signature] = parseSign1(bytes, { key: "what.checkpoint" });
    if (unprot.size !== 0) malformed("checkpoint.unprotected");
    if (!isBytes(root, 32)) malformed("checkpoint.root");
    const header = parseHeader(prot);
    return { hub: header.kid, treeSize: header.treeSize, root, time: header.time, head: header.head, bytes, prot, signature };
  }

  function verifyCheckpoint(bytes, hubKey) {
    const cp = parseCheckpoint(bytes);
    checkKid({ kid: cp.hub }, hubKey);
    if (!checkSignature(cp.prot, cp.root, cp.signature, hubKey)) fail("INVALID_CHECKPOINT", "checkpoint.signature");
    return cp;
  }

  // §11: a receipt for record bytes; returns the signed root and tree size it proved inclusion under.
  function verifyReceipt(bytes, recordBytes, hubKey) {
    const [prot, unprot, payload, signature] = parseSign1(bytes, { key: "what.receipt" });
    const header = parseHeader(prot);
    if (payload !== null) malformed("receipt.payload");
    // Exactly {396: {-1: [proof]}}: one label, one key, one inclusion proof.
    const vdp = unprot.get(396);
    if (unprot.size !== 1 || !isMap(vdp) || vdp.size !== 1 || !isArray(vdp.get(-1)) || vdp.get(-1).length !== 1 || !isBytes(vdp.get(-1)[0])) {
      malformed("receipt.unprotected");
    }
    const proof = J.decode(vdp.get(-1)[0]);
    if (!isArray(proof) || proof.length !== 3 || !isUint(proof[0]) || !isUint(proof[1]) || !isArray(proof[2]) || !proof[2].every((p) => isBytes(p))) {
      malformed("receipt.proof");
    }
    const [treeSize, index, path] = proof;
    if (treeSize !== header.treeSize) fail("INVALID_PROOF", "receipt.size", { size: treeSize, signed: header.treeSize });
    const root = J.rootFromInclusion(J.leafHash(recordBytes), index, treeSize, path);
    checkKid(header, hubKey);
    if (!checkSignature(prot, root, signature, hubKey)) fail("INVALID_PROOF", "receipt.signature");
    return { treeSize, index, root, time: header.time, prot };
  }

  Object.assign(J, { parseHeader, parseCheckpoint, verifyCheckpoint, verifyReceipt });
})(globalThis.Jejak);
