// Records (FORMAT.md §3), kinds and bodies (§4) and detached bodies (§5) for the offline verifier.
"use strict";
(function (J) {
  const { malformed, isInt, isUint, isBytes, isText, isMap, isArray, equal, ascii } = J;

  const MAX_RECORD = 8192;
  const MAX_DETACHED = 65536;
  const MAX_TEXT = 512;
  const MAX_ITEMS = 256;
  const PROTECTED = Uint8Array.of(0xa1, 0x01, 0x27); // {1: -8}, alg EdDSA
  const RECORD_AAD = ascii("jejak/record/v1");
  const KINDS = ["key", "scan", "reading", "price", "stock", "note", "witness", "attest", "authority"];
  // §4 authority: the optional fields each action takes, exactly.
  const AUTHORITY_FIELDS = { approve: ["key", "site", "role"], rotate: ["key"], withdraw: [], revoke: [] };

  // §4 body schemas: field -> [type, required, constraint]. Types: int, text, bytes, texts (array of
  // text), arrays (array of arrays), map.
  const oneOf = (...values) => (v) => values.includes(v) || "one of " + values.join(", ");
  const atLeast = (n) => (v) => v >= n || ">= " + n;
  const size = (n) => (v) => v.length === n || "exactly " + n + " bytes";
  const SCHEMAS = {
    key: {
      pubkey: ["bytes", true, size(32)], alg: ["text", false], reason: ["text", false],
    },
    scan: {
      event: ["text", true, oneOf("cooked", "packed", "departed", "arrived", "received", "served", "returned",
        "damaged", "lost", "sample", "incident")],
      site: ["text", true],
      checkpoint: ["text", false, oneOf("kitchen", "kitchen_exit", "school_gate", "return", "market_stall", "phone")],
      staff: ["text", false], tags: ["texts", false], parent: ["text", false], batch: ["text", false],
      school: ["text", false], count: ["int", false, atLeast(0)], temp_cc: ["int", false],
      cooked_at: ["int", false, atLeast(0)], text: ["text", false], source: ["text", false],
    },
    reading: {
      site: ["text", true], sensor: ["text", false], temp_cc: ["int", false], rh_cp: ["int", false, atLeast(0)],
      crowd: ["int", false, atLeast(0)],
    },
    price: {
      market: ["text", true], commodity: ["text", true], grade: ["text", false], unit: ["text", true],
      price_idr: ["int", true, atLeast(1)], reporter: ["text", false], region: ["text", false],
      source: ["text", false], observed_at: ["int", false, atLeast(0)],
    },
    stock: {
      site: ["text", true], item: ["text", true], movement: ["text", true, oneOf("receive", "use", "waste", "count")],
      qty: ["int", true, atLeast(0)], unit: ["text", true], supplier: ["text", false], batch: ["text", false],
      reason: ["text", false],
    },
    note: {
      site: ["text", false], market: ["text", false], commodity: ["text", false], text: ["text", true],
      author: ["text", false],
    },
    witness: { heads: ["arrays", true] },
    attest: {
      path: ["text", true], sender: ["text", true], kind: ["text", true], data: ["map", true],
      received_at: ["int", true, atLeast(0)],
    },
    authority: {
      action: ["text", true, oneOf("approve", "withdraw", "revoke", "rotate")], device: ["bytes", true, size(16)],
      from_seq: ["int", true, atLeast(0)], key: ["bytes", false, size(32)], site: ["text", false],
      role: ["text", false],
    },
  };

  const codePoints = (s) => { let n = 0; for (const _ of s) n++; return n; };
  const TYPE_CHECK = {
    int: isInt,
    text: (v) => isText(v) && codePoints(v) <= MAX_TEXT,
    bytes: isBytes,
    // The 512-character limit holds for every text item of an array field too.
    texts: (v) => isArray(v) && v.length <= MAX_ITEMS && v.every((t) => isText(t) && codePoints(t) <= MAX_TEXT),
    // witness heads: each exactly [device id, seq, record id].
    arrays: (v) => isArray(v) && v.length <= MAX_ITEMS
      && v.every((h) => isArray(h) && h.length === 3 && isBytes(h[0], 16) && isUint(h[1]) && isBytes(h[2], 32)),
    map: isMap,
  };

  function checkBody(kind, body) {
    if (!isMap(body)) malformed(kind + " body is not a map");
    const schema = SCHEMAS[kind];
    for (const k of body.keys()) {
      if (!isText(k)) malformed(kind + " body has a key that is not text");
      if (!Object.prototype.hasOwnProperty.call(schema, k)) malformed(kind + " body has unknown field '" + k + "'");
    }
    for (const [field, [type, required, constraint]] of Object.entries(schema)) {
      if (!body.has(field)) {
        if (required) malformed(kind + " body lacks required field '" + field + "'");
        continue;
      }
      const v = body.get(field);
      if (!TYPE_CHECK[type](v)) malformed(kind + " field '" + field + "' is not " + type + " (or too long)");
      const ok = constraint ? constraint(v) : true;
      if (ok !== true) malformed(kind + " field '" + field + "' must be " + ok);
    }
    if (kind === "authority") {
      const want = AUTHORITY_FIELDS[body.get("action")];
      const have = ["key", "site", "role"].filter((f) => body.has(f));
      if (have.join() !== want.join()) malformed("authority " + body.get("action") + " takes exactly the optional fields [" + want.join(", ") + "]");
    }
  }

  // §3.0–3.4: bytes -> record, or MALFORMED. The signature is not checked here (the chain gives the key).
  function decodeRecord(bytes) {
    if (!isBytes(bytes)) malformed("record is not a byte string");
    if (bytes.length > MAX_RECORD) malformed("record of " + bytes.length + " bytes exceeds " + MAX_RECORD);
    const cose = J.decode(bytes, { allowTag18: true });
    if (!(cose && cose.tag === 18)) malformed("record is not a tagged COSE_Sign1");
    const m = cose.value;
    if (!isArray(m) || m.length !== 4) malformed("COSE_Sign1 is not an array of 4");
    const [prot, unprot, payload, signature] = m;
    if (!isBytes(prot) || !equal(prot, PROTECTED)) malformed("protected header is not exactly {1: -8}");
    if (!isMap(unprot) || unprot.size !== 1 || !isBytes(unprot.get(4), 16)) malformed("unprotected header is not exactly {4: kid}");
    if (!isBytes(payload)) malformed("payload is not a byte string (detached payloads are refused)");
    if (!isBytes(signature, 64)) malformed("signature is not 64 bytes");
    const kid = unprot.get(4);
    const p = J.decode(payload);
    if (!isArray(p) || p.length !== 8) malformed("payload is not an array of 8");
    const [version, device, seq, prev, time, boot, kind, body] = p;
    if (version !== 1) malformed("unknown format version " + String(version));
    if (!isBytes(device, 16) || !equal(device, kid)) malformed("payload device id does not match the kid");
    if (!isUint(seq) || !isUint(time) || !isUint(boot) || !isUint(kind)) malformed("seq, time, boot and kind must be unsigned integers");
    if (!isBytes(prev, 32)) malformed("prev is not 32 bytes");
    if (seq === 0 && !prev.every((x) => x === 0)) malformed("genesis prev is not 32 zero bytes");
    if (typeof kind !== "number" || kind >= KINDS.length) malformed("unknown kind code " + String(kind));
    const kindName = KINDS[kind];
    let bodyRef = null;
    if (isArray(body)) {
      if (body.length !== 2 || !isBytes(body[0], 32) || !isUint(body[1]) || !(body[1] > 0 && body[1] <= MAX_DETACHED)) {
        malformed("detached body reference is not [bstr(32), 0 < length <= " + MAX_DETACHED + "]");
      }
      if (kindName === "key") malformed("key records must carry their body inline");
      bodyRef = { digest: body[0], length: body[1] };
    } else {
      checkBody(kindName, body);
    }
    return {
      bytes, id: J.sha256(bytes), payload, signature, device, seq, prev, time, boot, kind: kindName,
      body: bodyRef ? null : body, bodyRef,
    };
  }

  // §5: a detached body must match the signed digest and length and satisfy the kind's schema.
  function attachBody(record, bodyBytes) {
    if (!record.bodyRef) malformed("record seq " + record.seq + " carries its body inline");
    if (!isBytes(bodyBytes)) malformed("detached body is not a byte string");
    if (bodyBytes.length !== record.bodyRef.length) malformed("detached body has " + bodyBytes.length + " bytes, the record says " + record.bodyRef.length);
    if (!equal(J.sha256(bodyBytes), record.bodyRef.digest)) malformed("detached body does not hash to the signed digest");
    const body = J.decode(bodyBytes);
    checkBody(record.kind, body);
    return body;
  }

  // §3.2: Ed25519 over Sig_structure with external AAD "jejak/record/v1".
  const signatureValid = (record, pubkey) =>
    J.ed25519Verify(record.signature, J.sigStructure(PROTECTED, RECORD_AAD, record.payload), pubkey);

  Object.assign(J, { KINDS, SCHEMAS, decodeRecord, attachBody, checkBody, signatureValid });
})(globalThis.Jejak);
