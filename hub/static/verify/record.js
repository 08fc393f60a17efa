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
  // A constraint holds (true) or names the sentence that says what it wants ("why.body.KEY").
  const oneOf = (...values) => (v) => values.includes(v) || ["oneof", { values: values.join(", ") }];
  const atLeast = (n) => (v) => v >= n || ["atleast", { min: n }];
  const size = (n) => (v) => v.length === n || ["size", { n }];
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
    if (!isMap(body)) malformed("body.map", { kind });
    const schema = SCHEMAS[kind];
    for (const k of body.keys()) {
      if (!isText(k)) malformed("body.key", { kind });
      if (!Object.prototype.hasOwnProperty.call(schema, k)) malformed("body.unknown", { kind, field: k });
    }
    for (const [field, [type, required, constraint]] of Object.entries(schema)) {
      if (!body.has(field)) {
        if (required) malformed("body.lacks", { kind, field });
        continue;
      }
      const v = body.get(field);
      if (!TYPE_CHECK[type](v)) malformed("body.type", { kind, field, type });
      const ok = constraint ? constraint(v) : true;
      if (ok !== true) malformed("body." + ok[0], Object.assign({ kind, field }, ok[1]));
    }
    if (kind === "authority") {
      const want = AUTHORITY_FIELDS[body.get("action")];
      const have = ["key", "site", "role"].filter((f) => body.has(f));
      if (have.join() !== want.join()) malformed("body.authority", { action: body.get("action"), fields: "[" + want.join(", ") + "]" });
    }
  }

  // §3.0–3.4: bytes -> record, or MALFORMED. The signature is not checked here (the chain gives the key).
  function decodeRecord(bytes) {
    if (!isBytes(bytes)) malformed("record.bytes");
    if (bytes.length > MAX_RECORD) malformed("record.size", { n: bytes.length, max: MAX_RECORD });
    const cose = J.decode(bytes, { allowTag18: true });
    if (!(cose && cose.tag === 18)) malformed("record.cose");
    const m = cose.value;
    if (!isArray(m) || m.length !== 4) malformed("record.array");
    const [prot, unprot, payload, signature] = m;
    if (!isBytes(prot) || !equal(prot, PROTECTED)) malformed("record.protected");
    if (!isMap(unprot) || unprot.size !== 1 || !isBytes(unprot.get(4), 16)) malformed("record.unprotected");
    if (!isBytes(payload)) malformed("record.payload");
    if (!isBytes(signature, 64)) malformed("record.signature");
    const kid = unprot.get(4);
    const p = J.decode(payload);
    if (!isArray(p) || p.length !== 8) malformed("record.fields");
    const [version, device, seq, prev, time, boot, kind, body] = p;
    if (version !== 1) malformed("record.version", { version: String(version) });
    if (!isBytes(device, 16) || !equal(device, kid)) malformed("record.kid");
    if (!isUint(seq) || !isUint(time) || !isUint(boot) || !isUint(kind)) malformed("record.uints");
    if (!isBytes(prev, 32)) malformed("record.prev");
    if (seq === 0 && !prev.every((x) => x === 0)) malformed("record.genesis");
    if (typeof kind !== "number" || kind >= KINDS.length) malformed("record.kind", { kind: String(kind) });
    const kindName = KINDS[kind];
    let bodyRef = null;
    if (isArray(body)) {
      if (body.length !== 2 || !isBytes(body[0], 32) || !isUint(body[1]) || !(body[1] > 0 && body[1] <= MAX_DETACHED)) {
        malformed("record.reference", { max: MAX_DETACHED });
      }
      if (kindName === "key") malformed("record.keyinline");
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
    if (!record.bodyRef) malformed("detached.inline", { seq: record.seq });
    if (!isBytes(bodyBytes)) malformed("detached.bytes");
    if (bodyBytes.length !== record.bodyRef.length) malformed("detached.length", { n: bodyBytes.length, want: record.bodyRef.length });
    if (!equal(J.sha256(bodyBytes), record.bodyRef.digest)) malformed("detached.digest");
    const body = J.decode(bodyBytes);
    checkBody(record.kind, body);
    return body;
  }

  // §3.2: Ed25519 over Sig_structure with external AAD "jejak/record/v1".
  const signatureValid = (record, pubkey) =>
    J.ed25519Verify(record.signature, J.sigStructure(PROTECTED, RECORD_AAD, record.payload), pubkey);

  Object.assign(J, { KINDS, SCHEMAS, decodeRecord, attachBody, checkBody, signatureValid });
})(globalThis.Jejak);
