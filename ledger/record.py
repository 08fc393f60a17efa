"""The Jejak record: a COSE_Sign1 over a deterministic CBOR payload, identified by its SHA-256."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import cbor2

from . import cbor
from .bodies import KIND_NAMES, kind_code, kind_name, validate_body
from .cose import ALG_EDDSA, HDR_ALG, HDR_KID, Signer, parse_sign1, sig_structure, verify_signature
from .errors import BadSignature, MalformedRecord

VERSION = 1
MAX_RECORD_BYTES = 8192
DEVICE_ID_BYTES = 16
ZERO_HASH = bytes(32)
# Domain separation: a record signature can never be taken for a checkpoint signature or anything else.
RECORD_AAD = b"jejak/record/v1"
DEVICE_ID_DOMAIN = b"jejak/device-id/v1"
_PROTECTED = cbor.encode({HDR_ALG: ALG_EDDSA})
# ["Signature1", protected, external_aad, payload] up to the payload's byte-string head.
_SIG_PREFIX = sig_structure(_PROTECTED, b"", RECORD_AAD)[:-1]


def device_id_for(public_key: bytes) -> bytes:
    """A device's id: the first 16 bytes of SHA-256 over a domain tag and its genesis public key."""
    return hashlib.sha256(DEVICE_ID_DOMAIN + public_key).digest()[:DEVICE_ID_BYTES]


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One signed entry of a device's log. `raw` is the exact COSE_Sign1; `id` is SHA-256(raw)."""

    version: int
    device_id: bytes
    seq: int
    prev: bytes
    time: int
    boot: int
    kind: str
    body: dict[str, Any] | None
    body_ref: tuple[bytes, int] | None  # (SHA-256, length) when the body travels beside the record
    payload: bytes
    signature: bytes
    raw: bytes
    id: bytes = field(repr=False)

    @property
    def device(self) -> str:
        return self.device_id.hex()

    @property
    def detached(self) -> bool:
        return self.body_ref is not None

    @property
    def signed_bytes(self) -> bytes:
        # Sig_structure (RFC 9052 §4.4) assembled from its constant prefix: same bytes as sig_structure().
        return _SIG_PREFIX + _bstr_head(len(self.payload)) + self.payload

    def verify_signature(self, public_key: bytes) -> None:
        try:
            verify_signature(public_key, self.signature, self.signed_bytes)
        except BadSignature as exc:
            exc.where = self.where  # computed only on failure: the hot path stays lean
            raise

    @property
    def where(self) -> str:
        return f"device {self.device} seq {self.seq}"

    def with_body(self, body_bytes: bytes) -> Record:
        """Attach a detached body after checking it against the signed digest and length."""
        if self.body_ref is None:
            raise MalformedRecord("record carries its body inline; nothing to attach", where=self.where)
        digest, length = self.body_ref
        if len(body_bytes) != length or hashlib.sha256(body_bytes).digest() != digest:
            raise MalformedRecord(
                f"detached body does not match the signed digest (expected {length} bytes "
                f"hashing to {digest.hex()[:16]}..., got {len(body_bytes)} bytes)", where=self.where)
        body = cbor.decode(body_bytes, what="detached body", depth=1)  # nested as if inline (FORMAT.md §2)
        if not isinstance(body, dict):
            raise MalformedRecord("detached body must be a map", where=self.where)
        validate_body(self.kind, body)
        return _replace_body(self, body)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id.hex(), "device": self.device, "seq": self.seq, "prev": self.prev.hex(),
            "time": self.time, "boot": self.boot, "kind": self.kind, "body": _jsonable(self.body),
            "detached": self.detached,
        }


def _replace_body(record: Record, body: dict[str, Any] | None) -> Record:
    return Record(version=record.version, device_id=record.device_id, seq=record.seq, prev=record.prev,
                  time=record.time, boot=record.boot, kind=record.kind, body=body, body_ref=record.body_ref,
                  payload=record.payload, signature=record.signature, raw=record.raw, id=record.id)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _bstr_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x40 | n])
    if n < 0x100:
        return bytes([0x58, n])
    return bytes([0x59]) + n.to_bytes(2, "big")


# The envelope of a record has exactly one canonical shape, so it is built and checked as bytes:
# tag 18, array(4), bstr(a10127), {4: bstr(16) kid}, bstr payload, bstr(64) signature.
_ENVELOPE_HEAD = bytes([0xD2, 0x84, 0x43]) + _PROTECTED + bytes([0xA1, 0x04, 0x50])
_SIG_HEAD = bytes([0x58, 0x40])


def encode_record(signer: Signer, *, device_id: bytes, seq: int, prev: bytes, time: int, boot: int,
                  kind: str, body: dict[str, Any], detach: bool = False) -> Record:
    """Build, sign and encode a record; the result is exactly what `decode_record` would return."""
    validate_body(kind, body)
    if len(device_id) != DEVICE_ID_BYTES or len(prev) != 32:
        raise MalformedRecord("record: device id must be 16 bytes and prev 32 bytes")
    canon = cbor.canonical(body)
    body_bytes = cbor2.dumps(canon)
    ref = (hashlib.sha256(body_bytes).digest(), len(body_bytes))
    head = cbor.encode([VERSION, device_id, seq, prev, time, boot, kind_code(kind)])
    # Array of 8 = the 7 fixed fields (array head 0x87 swapped for 0x88) followed by the body item.
    payload = b"\x88" + head[1:] + (cbor.encode(list(ref)) if detach else body_bytes)
    signature = signer.sign(sig_structure(_PROTECTED, payload, RECORD_AAD))
    raw = b"".join((_ENVELOPE_HEAD, device_id, _bstr_head(len(payload)), payload, _SIG_HEAD, signature))
    if len(raw) > MAX_RECORD_BYTES:
        raise MalformedRecord(f"record of {len(raw)} bytes exceeds the limit of {MAX_RECORD_BYTES}",
                              hint="carry large bodies by digest (detach=True) or split them")
    return Record(version=VERSION, device_id=device_id, seq=seq, prev=prev, time=time, boot=boot, kind=kind,
                  body=None if detach else canon, body_ref=ref if detach else None,
                  payload=payload, signature=signature, raw=raw, id=hashlib.sha256(raw).digest())


def _split_envelope(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(kid, payload, signature) if `raw` has the one canonical envelope shape, else None."""
    n = len(_ENVELOPE_HEAD)
    if not raw.startswith(_ENVELOPE_HEAD) or len(raw) < n + 16 + 2 + 66:
        return None
    kid = raw[n:n + 16]
    i = n + 16
    head = raw[i]
    if 0x40 <= head < 0x58:
        length, i = head - 0x40, i + 1
    elif head == 0x58 and raw[i + 1] >= 24:
        length, i = raw[i + 1], i + 2
    elif head == 0x59 and int.from_bytes(raw[i + 1:i + 3], "big") >= 0x100:
        length, i = int.from_bytes(raw[i + 1:i + 3], "big"), i + 3
    else:
        return None
    payload = raw[i:i + length]
    i += length
    if len(payload) != length or raw[i:i + 2] != _SIG_HEAD or len(raw) != i + 66:
        return None
    return kid, payload, raw[i + 2:]


def signature_parts(raw: bytes) -> tuple[bytes, bytes] | None:
    """(signature, signed bytes) of a record in its canonical envelope, without decoding its payload, or None
    for anything else: for checking signatures ahead of the decode that decides the record."""
    parts = _split_envelope(raw) if isinstance(raw, bytes) else None
    if parts is None:
        return None
    _, payload, signature = parts
    return signature, _SIG_PREFIX + _bstr_head(len(payload)) + payload


_PAYLOAD_AT = len(_ENVELOPE_HEAD) + DEVICE_ID_BYTES  # where the payload's byte-string head starts
_SIGNED_MIN = _PAYLOAD_AT + 1 + 66


def signed_message(raw: bytes) -> bytes | None:
    """A record's signature followed by the bytes it signs (libsodium's signed-message form), cut from its
    envelope by position alone, for checking signatures ahead of the decode that decides the record: for every
    record `decode_record` accepts (its envelope in the one canonical shape), exactly `signature +
    signed_bytes`. The envelope is not checked here: bytes that are not a record get either None or a message
    whose confirmation decides nothing, as `decode_record` refuses them."""
    if type(raw) is not bytes or len(raw) < _SIGNED_MIN or not raw.startswith(_ENVELOPE_HEAD):
        return None
    return raw[-64:] + _SIG_PREFIX + raw[_PAYLOAD_AT:-66]


# The 7 fixed fields of a payload in canonical form, matched in one C pass: array(8), version 1, bstr(16) device
# id, seq, bstr(32) prev, time, boot, kind, then the body item. An unsigned integer in its shortest form: the
# value in the head below 24, else a 1, 2, 4 or 8-byte argument that the next shorter form could not hold (its
# leading byte or bytes not zero; for 1 byte, at least 24).
_UINT = rb"([\x00-\x17]|\x18[\x18-\xff]|\x19[\x01-\xff].|\x1a(?!\x00\x00)....|\x1b(?!\x00\x00\x00\x00)........)"
_FIXED = re.compile(bytes([0x88, VERSION, 0x40 | DEVICE_ID_BYTES]) + rb"(.{16})" + _UINT + rb"\x58\x20(.{32})"
                    + _UINT * 3, re.DOTALL)
_from_bytes = int.from_bytes


def _split_payload(payload: bytes, kid: bytes) -> tuple[int, bytes, int, int, int, bytes] | None:
    """(seq, prev, time, boot, kind, body bytes) if the 7 fixed fields are canonical and typed, else None.

    The fast path reads the fixed fields as bytes; whatever it does not accept goes through the generic
    decoder, which accepts exactly the same records and says precisely what is wrong with the others.
    """
    m = _FIXED.match(payload)
    if m is None:
        return None
    device_id, seq, prev, time, boot, kind = m.groups()
    if device_id != kid:
        return None
    # A one-byte integer is its head; a longer one is its argument (the head's slice after it is not empty).
    return (_from_bytes(seq[1:] or seq), prev, _from_bytes(time[1:] or time), _from_bytes(boot[1:] or boot),
            _from_bytes(kind[1:] or kind), payload[m.end():])


def _fixed_fields(raw: bytes) -> tuple[int, bytes, int, int, int, bytes] | None:
    """(seq, prev, time, boot, kind code, body bytes) of a record in the canonical form `decode_record` reads
    fastest, its body neither decoded nor checked; None for any other bytes."""
    parts = _split_envelope(raw) if isinstance(raw, bytes) else None
    return _split_payload(parts[1], parts[0]) if parts is not None else None


def peek_kind(raw: bytes) -> str | None:
    """A record's kind read from its fixed fields alone, its body neither decoded nor checked: a reader that
    wants only some kinds skips the others before paying for `decode_record`. None when the bytes are not in
    the canonical form that `decode_record` reads fastest (decode them to learn the kind or what is wrong)."""
    fast = _fixed_fields(raw)
    if fast is None:
        return None
    try:
        return kind_name(fast[4])
    except MalformedRecord:
        return None


def decode_record(raw: bytes) -> Record:
    """Parse a record strictly. The signature is not checked: that needs the device's key (see chain)."""
    if not isinstance(raw, bytes):
        raise MalformedRecord(f"record: expected bytes, got {type(raw).__name__}")
    if len(raw) > MAX_RECORD_BYTES:
        raise MalformedRecord(f"record of {len(raw)} bytes exceeds the limit of {MAX_RECORD_BYTES}")
    parts = _split_envelope(raw)
    if parts is None:
        # Off the fast path: parse generically to say precisely what is wrong.
        msg = parse_sign1(raw, what="record")
        if msg.protected != _PROTECTED:
            raise MalformedRecord(f"record: protected header must be exactly {_PROTECTED.hex()} (alg EdDSA), "
                                  f"got {msg.protected.hex()}")
        if msg.payload is None:
            raise MalformedRecord("record: payload is detached; records always carry their payload")
        kid = msg.kid
        if set(msg.unprotected) != {HDR_KID} or kid is None or len(kid) != DEVICE_ID_BYTES:
            raise MalformedRecord("record: unprotected header must be exactly {4: 16-byte device id} (kid)")
        raise MalformedRecord("record: envelope is not in its canonical form")
    kid, payload, signature = parts
    fast = _split_payload(payload, kid)
    if fast is not None:
        seq, prev, time, boot, kind, body_bytes = fast
        return _finish(kid, seq, prev, time, boot, kind,
                       cbor.decode(body_bytes, what="record payload", depth=1), payload, signature, raw)
    p = cbor.decode(payload, what="record payload")
    if not isinstance(p, list) or len(p) != 8:
        raise MalformedRecord(f"record payload: expected an array of 8 items, got {type(p).__name__}")
    version, device_id, seq, prev, time, boot, kind, body_item = p
    if version != VERSION or isinstance(version, bool):
        raise MalformedRecord(f"record: unknown format version: expected {VERSION}, got {version!r}",
                              hint="upgrade the verifier if this device runs a newer format")
    if not isinstance(device_id, bytes) or len(device_id) != DEVICE_ID_BYTES:
        raise MalformedRecord(f"record: device id must be {DEVICE_ID_BYTES} bytes, got {device_id!r}")
    if kid != device_id:
        raise MalformedRecord("record: kid in the header differs from the device id in the payload")
    for name, value in (("seq", seq), ("time", time), ("boot", boot), ("kind", kind)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MalformedRecord(f"record: {name} must be a non-negative integer, got {value!r}")
    if not isinstance(prev, bytes) or len(prev) != 32:
        raise MalformedRecord(f"record: prev must be a 32-byte hash, got {prev!r}")
    return _finish(device_id, seq, prev, time, boot, kind, body_item, payload, signature, raw)


def kind_and_time(raw: bytes) -> tuple[str, int]:
    """A record's kind and time from its fixed fields, without decoding its body: a hub counting the records it
    already holds. Bytes off the fast path are decoded in full, so anything that is not a record raises
    MalformedRecord as `decode_record` does."""
    fast = _fixed_fields(raw)
    if fast is None:
        record = decode_record(raw)
        return record.kind, record.time
    return kind_name(fast[4]), fast[2]


def _finish(device_id: bytes, seq: int, prev: bytes, time: int, boot: int, kind: int, body_item: Any,
            payload: bytes, signature: bytes, raw: bytes) -> Record:
    """The checks every record gets once its fixed fields have the right types."""
    if seq == 0 and prev != ZERO_HASH:
        raise MalformedRecord("record: genesis (seq 0) must have prev = 32 zero bytes")
    kind_str = KIND_NAMES.get(kind) or kind_name(kind)  # the lookup alone when the code is known; else its error
    body: dict[str, Any] | None
    body_ref: tuple[bytes, int] | None
    if isinstance(body_item, dict):
        validate_body(kind_str, body_item)
        body, body_ref = body_item, None
    elif (isinstance(body_item, list) and len(body_item) == 2 and isinstance(body_item[0], bytes)
          and len(body_item[0]) == 32 and isinstance(body_item[1], int) and not isinstance(body_item[1], bool)
          and 0 < body_item[1] <= MAX_RECORD_BYTES * 8):
        if kind_str == "key":
            raise MalformedRecord("record: key records must carry their body inline")
        body, body_ref = None, (body_item[0], body_item[1])
    else:
        raise MalformedRecord("record: body must be a map, or [sha256, length] for a detached body")
    return _decoded(device_id, seq, prev, time, boot, kind_str, body, body_ref, payload, signature, raw,
                    hashlib.sha256(raw).digest())


_new = object.__new__
# Each slot's own setter: a frozen dataclass refuses attribute assignment, but its slots' descriptors still set
# them, without the name lookup object.__setattr__ makes for each.
(_set_version, _set_device_id, _set_seq, _set_prev, _set_time, _set_boot, _set_kind, _set_body, _set_body_ref,
 _set_payload, _set_signature, _set_raw, _set_id) = (
    getattr(Record, name).__set__ for name in ("version", "device_id", "seq", "prev", "time", "boot", "kind", "body",
                                               "body_ref", "payload", "signature", "raw", "id"))


def _decoded(device_id: bytes, seq: int, prev: bytes, time: int, boot: int, kind: str, body: dict[str, Any] | None,
             body_ref: tuple[bytes, int] | None, payload: bytes, signature: bytes, raw: bytes, id: bytes) -> Record:
    """The Record that Record(...) would build, with its slots set directly: the generated keyword __init__
    costs a third of a hub's decode of a record. Record has no __post_init__, so nothing is skipped."""
    rec = _new(Record)
    _set_version(rec, VERSION)
    _set_device_id(rec, device_id)
    _set_seq(rec, seq)
    _set_prev(rec, prev)
    _set_time(rec, time)
    _set_boot(rec, boot)
    _set_kind(rec, kind)
    _set_body(rec, body)
    _set_body_ref(rec, body_ref)
    _set_payload(rec, payload)
    _set_signature(rec, signature)
    _set_raw(rec, raw)
    _set_id(rec, id)
    return rec
