// RFC 9162 Merkle tree hashing and proof verification (FORMAT.md §9) for the offline verifier.
"use strict";
(function (J) {
  const { fail, equal, concat, sha256 } = J;

  const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
  const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
  const badProof = (key, vars) => fail("INVALID_PROOF", key, vars);

  // Sizes and indexes fit in Number for any log this verifier can hold in memory; BigInt values are refused.
  const checkHashes = (path) => {
    if (!J.isArray(path) || !path.every((h) => J.isBytes(h, 32))) badProof("proof.hashes");
  };
  const isNum = (v) => typeof v === "number" && Number.isInteger(v) && v >= 0;
  const lsb = (n) => n % 2 === 1;
  const half = (n) => Math.floor(n / 2);
  const isPowerOfTwo = (n) => { while (n > 1 && n % 2 === 0) n /= 2; return n === 1; };

  // RFC 9162 §2.1.3.2: the root an inclusion proof leads to.
  function rootFromInclusion(leaf, index, size, path) {
    checkHashes(path);
    if (!isNum(index) || !isNum(size) || index >= size) badProof("proof.index", { index, size });
    let fn = index, sn = size - 1, r = leaf;
    for (const p of path) {
      if (sn === 0) badProof("proof.inclusion.many");
      if (lsb(fn) || fn === sn) {
        r = nodeHash(p, r);
        while (!lsb(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
      } else {
        r = nodeHash(r, p);
      }
      fn = half(fn); sn = half(sn);
    }
    if (sn !== 0) badProof("proof.inclusion.few");
    return r;
  }

  function verifyInclusion(leaf, index, size, path, root) {
    if (!equal(rootFromInclusion(leaf, index, size, path), root)) badProof("proof.inclusion.root");
  }

  // RFC 9162 §2.1.4.2.
  function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
    checkHashes(proof);
    if (!isNum(first) || !isNum(second) || first > second) badProof("proof.order", { first, second });
    // §9: the empty tree is a prefix of every tree, with an empty proof.
    if (first === 0) {
      if (proof.length !== 0) badProof("proof.zero.empty");
      if (!equal(firstRoot, sha256(new Uint8Array(0)))) badProof("proof.zero.root");
      return;
    }
    if (first === second) {
      if (proof.length !== 0) badProof("proof.equal.empty");
      if (!equal(firstRoot, secondRoot)) badProof("proof.equal.roots");
      return;
    }
    if (proof.length === 0) badProof("proof.empty");
    let path = proof;
    if (isPowerOfTwo(first)) path = [firstRoot, ...proof];
    let fn = first - 1, sn = second - 1;
    while (lsb(fn)) { fn = half(fn); sn = half(sn); }
    let fr = path[0], sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0) badProof("proof.consistency.many");
      if (lsb(fn) || fn === sn) {
        fr = nodeHash(c, fr); sr = nodeHash(c, sr);
        while (!lsb(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
      } else {
        sr = nodeHash(sr, c);
      }
      fn = half(fn); sn = half(sn);
    }
    if (sn !== 0) badProof("proof.consistency.few");
    if (!equal(fr, firstRoot) || !equal(sr, secondRoot)) badProof("proof.consistency.roots");
  }

  // MTH over leaf data (RFC 9162 §2.1.1), for the published test data.
  function rootOf(leaves) {
    if (leaves.length === 0) return sha256(new Uint8Array(0));
    if (leaves.length === 1) return leafHash(leaves[0]);
    let k = 1; while (k * 2 < leaves.length) k *= 2;
    return nodeHash(rootOf(leaves.slice(0, k)), rootOf(leaves.slice(k)));
  }

  Object.assign(J, { leafHash, nodeHash, rootFromInclusion, verifyInclusion, verifyConsistency, rootOf });
})(globalThis.Jejak);
