"""Deterministic CBOR (RFC 8949 §4.2.1) encoding and a strict decoder that refuses anything else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2

from .errors import MalformedRecord

MAX_DEPTH = 16
_INT_MIN = -(2**64)
_INT_MAX = 2**64 - 1

NOT_DETERMINISTIC = "not in deterministic CBOR encoding (RFC 8949 §4.2.1)"
DETERMINISTIC_HINT = "re-encode with sorted map keys, shortest heads, definite lengths and no trailing bytes"

# The only value types signed data may hold. Floats are refused: prices, times and temperatures are integers.
Value = int | bytes | str | bool | None | list["Value"] | dict[Any, "Value"]


def _text_key(key: str) -> tuple[int, bytes]:
    # For text keys, bytewise order of the encodings is length first, then bytes (the head holds the length).
    b = key.encode()
    return len(b), b


def _canonical(value: Any, depth: int, allow_tag: int | None) -> Any:
    """Return `value` with every map's keys in deterministic order; refuse what signed data may not hold."""
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise MalformedRecord(f"integer out of the 64-bit CBOR range: {value}")
        return value
    if depth >= MAX_DEPTH:
        raise MalformedRecord(f"CBOR nested deeper than {MAX_DEPTH} levels")
    if t is list or t is tuple:
        return [_canonical(v, depth + 1, None) for v in value]
    if isinstance(value, Mapping):
        keys = list(value)
        if all(type(k) is str and k.isascii() for k in keys):
            # ASCII: encoded length is the character count, and bytewise order is code point order.
            order = sorted(sorted(keys), key=len)
        elif all(type(k) is str for k in keys):
            order = sorted(keys, key=_text_key)
        else:
            for k in keys:
                if type(k) is not int and type(k) is not str:
                    raise MalformedRecord(f"map key must be an integer or text, got {type(k).__name__}")
            order = sorted(keys, key=lambda k: cbor2.dumps(_canonical(k, depth + 1, None)))
        return {k: _canonical(value[k], depth + 1, None) for k in order}
    if isinstance(value, cbor2.CBORTag) and allow_tag is not None and value.tag == allow_tag and depth == 0:
        return cbor2.CBORTag(value.tag, _canonical(value.value, depth + 1, None))
    if isinstance(value, float):
        raise MalformedRecord("floating-point value in signed data: use integers (rupiah, centi-degrees)")
    if isinstance(value, int | str | bytes | list | tuple):  # subclasses: normalise to the plain type
        return _canonical((int if isinstance(value, int) else type(value).__mro__[-2])(value), depth,
                          allow_tag)
    raise MalformedRecord(f"CBOR item of a type signed data may not hold: {type(value).__name__}")


_SCALARS = (str, bytes, bool, type(None))


def _flat_in_order(value: Any) -> bool:
    """True for the common shape of a record body, already in canonical order: then `_canonical` would
    return an equal value and the re-encoding check alone decides. A map of ASCII text keys in
    deterministic order, whose values are scalars or arrays of scalars."""
    if type(value) is not dict:
        return False
    last_len, last = -1, ""
    for k, v in value.items():
        # Deterministic order of ASCII text keys: shorter first, then bytewise (a map's keys are unique).
        if type(k) is not str or not k.isascii():
            return False
        n = len(k)
        if n < last_len or (n == last_len and k <= last):
            return False
        last_len, last = n, k
        t = type(v)
        if t is int:
            if not _INT_MIN <= v <= _INT_MAX:
                return False
        elif t is list:
            for x in v:
                if type(x) not in _SCALARS and not (type(x) is int and _INT_MIN <= x <= _INT_MAX):
                    return False
        elif t not in _SCALARS:
            return False
    return True


def canonical(value: Any) -> Any:
    """A copy of `value` with maps in deterministic key order, as `decode` would return it."""
    return _canonical(value, 0, None)


def encode(value: Any, *, tag: int | None = None) -> bytes:
    """Encode in RFC 8949 §4.2.1 deterministic form: shortest heads, definite lengths, sorted map keys."""
    if tag is not None:
        value = cbor2.CBORTag(tag, value)
    return cbor2.dumps(_canonical(value, 0, tag))


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise MalformedRecord(f"CBOR length out of range: {n}")


def array_head(n: int) -> bytes:
    """The shortest head of an array of `n` items, for an encoder that writes the items one at a time."""
    return _head(4, n)


def map_head(n: int) -> bytes:
    """The shortest head of a map of `n` entries."""
    return _head(5, n)


def decode(data: bytes, *, what: str = "CBOR item", tag: int | None = None, depth: int = 0) -> Any:
    """Decode exactly one deterministic CBOR item; anything else raises MalformedRecord.

    `depth` is how deep the item sits inside an enclosing item, so that nesting limits stay the same
    whether an item is decoded alone or as part of its container.
    """
    if type(data) is not bytes:  # bytes, the common case, skip the union isinstance and the copy call
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MalformedRecord(f"{what}: expected bytes, got {type(data).__name__}")
        data = bytes(data)
    if not data:
        raise MalformedRecord(f"{what}: empty input")
    try:
        value = cbor2.loads(data, allow_indefinite=False, max_depth=MAX_DEPTH + 2 - depth)
    except Exception as exc:  # cbor2 raises several types; all of them mean the same thing to us
        raise MalformedRecord(f"{what}: not well-formed CBOR ({exc})") from None
    canonical = value if _flat_in_order(value) else _canonical(value, depth, tag)
    # Re-encoding and comparing catches trailing bytes, non-shortest heads, unsorted or duplicate keys
    # (cbor2 keeps only the last of duplicates, so the re-encoding is shorter).
    if cbor2.dumps(canonical) != data:
        raise MalformedRecord(f"{what}: {NOT_DETERMINISTIC}", hint=DETERMINISTIC_HINT)
    return canonical
