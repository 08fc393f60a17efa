// Strict deterministic CBOR (docs/FORMAT.md §2), typed errors and byte helpers for the offline verifier.
"use strict";
(function (J) {
  // Stable codes and exit codes of jejak-verify (FORMAT.md §13).
  const EXIT = {
    MALFORMED: 11, VERIFICATION_FAILED: 12, INVALID_SIGNATURE: 13, BROKEN_CHAIN: 14, FORK_DETECTED: 15,
    INVALID_PROOF: 16, INVALID_CHECKPOINT: 17, UNKNOWN_KEY: 18, REVOKED_KEY: 19,
  };

  // A check that does not hold: its code, and `why`, the key of its sentence in the page's words (i18n.js, the
  // "why." keys) with the values the sentence names. The message is that sentence in English, as jejak-verify
  // says it; the page says it in the auditor's language.
  class JejakError extends Error {
    constructor(code, key, vars) {
      const why = { key: "why." + key, vars: vars || {} };
      super(J.i18n.words("en", why));
      if (!(code in EXIT)) throw new Error("unknown code " + code);
      this.code = code;
      this.why = why;
    }
  }
  const fail = (code, key, vars) => { throw new JejakError(code, key, vars); };
  const malformed = (key, vars) => fail("MALFORMED", key, vars);

  // --- bytes -----------------------------------------------------------------------------------------------
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const fromHex = (s) => {
    if (s.length % 2 || /[^0-9a-fA-F]/.test(s)) throw new Error("not hex: " + s.slice(0, 20));
    const out = new Uint8Array(s.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
    return out;
  };
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const compare = (a, b) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  };
  const ascii = (s) => new TextEncoder().encode(s);

  // --- values ----------------------------------------------------------------------------------------------
  // Integers decode to Number while exact, else BigInt; maps to Map (insertion = canonical order);
  // byte strings to Uint8Array; a tag to {tag, value}.
  const isInt = (v) => (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
  const isUint = (v) => isInt(v) && v >= 0;
  const isBytes = (v, n) => v instanceof Uint8Array && (n === undefined || v.length === n);
  const isText = (v) => typeof v === "string";
  const isMap = (v) => v instanceof Map;
  const isArray = (v) => Array.isArray(v);

  // --- decoder ---------------------------------------------------------------------------------------------
  const MAX_DEPTH = 16;
  const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  // options: allowTag18; spans, a Map that receives for each key of the outermost map the [start, end) of its
  // key and value in `data` (the seal is checked over the bundle's own bytes without re-encoding them).
  // Byte strings are views into `data`, not copies: a large bundle is held once.
  function decode(data, options) {
    const allowTag18 = !!(options && options.allowTag18);
    const spans = (options && options.spans) || null;
    if (!(data instanceof Uint8Array)) malformed("cbor.bytes");
    let pos = 0;

    const need = (n) => { if (pos + n > data.length) malformed("cbor.truncated"); };
    const arg = (info) => {
      // Shortest head (rule 1): a longer argument than the value needs is refused.
      if (info < 24) return info;
      if (info === 24) { need(1); const v = data[pos++]; if (v < 24) malformed("cbor.shortest"); return v; }
      if (info === 25) { need(2); const v = (data[pos] << 8) | data[pos + 1]; pos += 2; if (v < 256) malformed("cbor.shortest"); return v; }
      if (info === 26) {
        need(4); const v = ((data[pos] << 24) >>> 0) + (data[pos + 1] << 16) + (data[pos + 2] << 8) + data[pos + 3]; pos += 4;
        if (v < 65536) malformed("cbor.shortest"); return v;
      }
      if (info === 27) {
        need(8); let v = 0n; for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(data[pos + i]); pos += 8;
        if (v < 4294967296n) malformed("cbor.shortest");
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      if (info === 31) malformed("cbor.indefinite");
      malformed("cbor.reserved", { info });
    };
    const length = (info) => {
      const n = arg(info);
      if (typeof n === "bigint" || n > data.length - pos) malformed("cbor.length", { n });
      return n;
    };

    function item(depth, outer) {
      need(1);
      const ib = data[pos++], major = ib >> 5, info = ib & 31;
      switch (major) {
        case 0: return arg(info);
        case 1: { const n = arg(info); return typeof n === "bigint" || n >= Number.MAX_SAFE_INTEGER ? -1n - BigInt(n) : -1 - n; }
        case 2: { const n = length(info); const v = data.subarray(pos, pos + n); pos += n; return v; }
        case 3: {
          const n = length(info); const raw = data.subarray(pos, pos + n); pos += n;
          try { return utf8.decode(raw); } catch (e) { return malformed("cbor.utf8"); }
        }
        case 4: case 5: {
          // Rule 6: containers nested deeper than MAX_DEPTH are refused (the outermost counts as 1).
          if (depth + 1 > MAX_DEPTH) malformed("cbor.deep", { max: MAX_DEPTH });
          const n = arg(info);
          if (typeof n === "bigint" || n > data.length - pos) malformed("cbor.items", { n });
          if (major === 4) { const out = []; for (let i = 0; i < n; i++) out.push(item(depth + 1, false)); return out; }
          const out = new Map(); let prevKey = null;
          for (let i = 0; i < n; i++) {
            const ks = pos; const k = item(depth + 1, false); const kraw = data.subarray(ks, pos);
            if (!(isInt(k) || isText(k))) malformed("cbor.key");
            // Rule 3: keys unique and in bytewise order of their (already deterministic) encodings.
            if (prevKey !== null) {
              const c = compare(prevKey, kraw);
              if (c === 0) malformed("cbor.duplicate");
              if (c > 0) malformed("cbor.order");
            }
            prevKey = kraw;
            out.set(k, item(depth + 1, false));
            if (spans && outer) spans.set(k, [ks, pos]);
          }
          return out;
        }
        case 6: {
          const t = arg(info);
          // Rule 5: the only tag is 18 (COSE_Sign1), and only as the outermost item.
          if (!(allowTag18 && outer && t === 18)) malformed("cbor.tag", { tag: t });
          return { tag: 18, value: item(depth, false) };
        }
        default:
          if (info === 20) return false;
          if (info === 21) return true;
          if (info === 22) return null;
          if (info >= 25 && info <= 27) malformed("cbor.float");
          malformed("cbor.simple", { value: info === 24 ? "(extended)" : info });
      }
    }

    if (data.length === 0) malformed("cbor.empty");
    const value = item(0, true);
    if (pos !== data.length) malformed("cbor.trailing", { n: data.length - pos });
    return value;
  }

  // --- encoder: deterministic CBOR of decoded values (the seal covers the bundle re-encoded without it) --------
  function head(major, n) {
    const m = major << 5;
    if (typeof n === "bigint") {
      if (n < 4294967296n) return head(major, Number(n));
      const out = new Uint8Array(9); out[0] = m | 27;
      for (let i = 8; i >= 1; i--) { out[i] = Number(n & 255n); n >>= 8n; }
      return out;
    }
    if (n < 24) return Uint8Array.of(m | n);
    if (n < 256) return Uint8Array.of(m | 24, n);
    if (n < 65536) return Uint8Array.of(m | 25, n >> 8, n & 255);
    if (n < 2 ** 32) return Uint8Array.of(m | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255);
    return head(major, BigInt(n));
  }
  function encode(v) {
    if (v instanceof Uint8Array) return concat(head(2, v.length), v);
    if (typeof v === "string") { const b = ascii(v); return concat(head(3, b.length), b); }
    if (Array.isArray(v)) return concat(head(4, v.length), ...v.map(encode));
    // Maps keep their decoded (deterministic) key order.
    if (v instanceof Map) return concat(head(5, v.size), ...[...v].flatMap(([k, x]) => [encode(k), encode(x)]));
    if (v === false) return Uint8Array.of(0xf4);
    if (v === true) return Uint8Array.of(0xf5);
    if (v === null) return Uint8Array.of(0xf6);
    if (isInt(v)) return v >= 0 ? head(0, v) : head(1, typeof v === "bigint" ? -1n - v : -1 - v);
    throw new Error("cannot encode " + v);
  }

  // --- crypto (vendored @noble, see noble.js) ----------------------------------------------------------------
  const N = globalThis.JejakNoble;
  const sha256 = (b) => N.sha256(b);
  // SHA-256 of parts taken one after another, without joining them.
  const sha256Parts = (parts) => { const h = N.sha256Create(); for (const p of parts) h.update(p); return h.digest(); };
  // Verdicts are remembered by H(signature || key || message): an auditor often re-checks the same bundle,
  // and the differential tests check thousands of variants of one, at a few milliseconds per verification.
  const verdicts = new Map();
  const ed25519Verify = (sig, msg, pub) => {
    const memo = hex(sha256(concat(sig, pub, msg)));
    let ok = verdicts.get(memo);
    if (ok === undefined) {
      ok = N.verify(sig, msg, pub);
      if (verdicts.size > 100000) verdicts.clear();
      verdicts.set(memo, ok);
    }
    return ok;
  };
  // RFC 9052 §4.4 Sig_structure for COSE_Sign1.
  const sigStructure = (protectedBytes, externalAad, payload) =>
    encode(["Signature1", protectedBytes, externalAad, payload]);
  // FORMAT.md §6: device_id = H("jejak/device-id/v1" || pubkey)[0:16]; a hub's id the same way.
  const deviceId = (pubkey) => sha256(concat(ascii("jejak/device-id/v1"), pubkey)).slice(0, 16);

  Object.assign(J, {
    EXIT, JejakError, fail, malformed,
    hex, fromHex, concat, equal, compare, ascii,
    isInt, isUint, isBytes, isText, isMap, isArray,
    MAX_DEPTH, decode, head, encode, sha256, sha256Parts, ed25519Verify, sigStructure, deviceId,
  });
})(globalThis.Jejak = globalThis.Jejak || {});
