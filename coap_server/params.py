"""Query parameters read once, by type and range, before anything uses them: CoAP's helper, and the rules HTTP reuses
(with the one header both the hub and the edge read, a Bearer token).

A parameter named twice is refused rather than resolved: an access check that reads the first `d` and a
handler that reads the last would decide about one log and serve another. Numbers are digits only (no sign,
no exponent, no `0x`) and sequence numbers stay below 2**63, the largest the wire formats carry, so a huge or
negative value is a 4.00/400 with the expected range instead of a `struct.error` deep inside a store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiocoap

from .errors import RequestError, TooLarge

SEQ_LIMIT = 2**63  # sequence numbers, tree sizes and times are unsigned 63-bit on every wire format
DIGITS = 19  # len(str(2**63 - 1))


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header (the scheme's name in any case, RFC 9110 §11.1),
    or "" for any other header or none: the hub's operator and seed-2 tokens and the edge's pairing secret."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """One query parameter a resource or route accepts: its kind and bounds.

    kind: "int" (lo <= value < hi), "hex" (exactly `size` bytes), "text" (at most `size` characters),
    "flag" ("1"/"true"/"0"/"false"), "steps" (at most `size` `seq:seconds` pairs, `_steps`). `many` lets it
    repeat (a list of devices); everything else is refused when named twice."""

    name: str
    kind: str = "int"
    lo: int = 0
    hi: int = SEQ_LIMIT
    size: int = 0
    required: bool = False
    many: bool = False

    def read(self, text: str) -> Any:
        if self.kind == "int":
            if not text.isascii() or not text.isdigit() or len(text) > DIGITS:
                raise RequestError(f"query {self.name}: expected an integer from {self.lo} to {self.hi - 1}, "
                                   f"got {text[:40]!r}")
            value = int(text)
            if not self.lo <= value < self.hi:
                raise RequestError(f"query {self.name}: expected an integer from {self.lo} to {self.hi - 1}, "
                                   f"got {value}")
            return value
        if self.kind == "hex":
            try:
                raw = bytes.fromhex(text) if text.isascii() else b""
            except ValueError:
                raw = b""
            if len(raw) != self.size:
                raise RequestError(f"query {self.name}: expected {2 * self.size} hex digits, got {text[:80]!r}")
            return raw
        if self.kind == "text":
            if len(text) > self.size:
                raise RequestError(f"query {self.name}: expected at most {self.size} characters, got {len(text)}")
            return text
        if self.kind == "steps":
            return _steps(self.name, text, self.size)
        if self.kind == "flag":
            if text not in ("1", "true", "0", "false", ""):
                raise RequestError(f"query {self.name}: expected 1, true, 0 or false, got {text[:40]!r}")
            return text in ("1", "true", "")
        raise AssertionError(f"unknown parameter kind {self.kind}")


STEP_SECONDS = 2**40  # a clock step is less than this either way (some 34,000 years)


def _steps(name: str, text: str, most: int) -> tuple[tuple[int, int], ...]:
    """`seq:seconds,seq:seconds,...`: where a device's wall clock stepped (the first record made after it, and by
    how many seconds, signed, not 0), seqs increasing, at most `most` of them."""
    parts = text.split(",")
    if len(parts) > most:
        raise RequestError(f"query {name}: expected at most {most} steps, got {len(parts)}")
    out: list[tuple[int, int]] = []
    for part in parts:
        at, _, seconds = part.partition(":")
        digits = seconds[1:] if seconds[:1] == "-" else seconds
        if not (at.isascii() and at.isdigit() and len(at) <= DIGITS and digits.isascii() and digits.isdigit()
                and len(digits) <= DIGITS):
            raise RequestError(f"query {name}: expected seq:seconds pairs separated by commas, got {part[:40]!r}")
        step = (int(at), int(seconds))
        if step[0] >= SEQ_LIMIT or not 0 < abs(step[1]) < STEP_SECONDS or (out and step[0] <= out[-1][0]):
            raise RequestError(f"query {name}: expected seqs below 2**63 in increasing order, each with a step of "
                               f"1 to {STEP_SECONDS - 1} seconds either way, got {part[:40]!r}")
        out.append(step)
    return tuple(out)


def seq(name: str, *, required: bool = False) -> Param:
    return Param(name=name, required=required)


def count(name: str, hi: int, *, lo: int = 0) -> Param:
    return Param(name=name, lo=lo, hi=hi + 1)


def device(name: str, *, required: bool = False, many: bool = False) -> Param:
    return Param(name=name, kind="hex", size=16, required=required, many=many)


def text(name: str, size: int = 200, *, required: bool = False) -> Param:
    return Param(name=name, kind="text", size=size, required=required)


def parse(pairs: Iterable[tuple[str, str]], params: Iterable[Param], *, strict: bool = True,
          token_allowed: bool = False) -> dict[str, Any]:
    """The values of `params` from (name, value) pairs: checked, converted, absent ones left out.

    `strict` refuses names the route does not take (CoAP: a client of ours never sends one); HTTP routes
    pass strict=False so a dashboard's cache-busting parameter does not break them, but a repeated name and
    a `token` are refused there too."""
    spec = {p.name: p for p in params}
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name == "token" and not token_allowed:
            raise RequestError("a token in the query string is refused (it ends up in proxy logs and browser "
                               "history)", hint="send it as `Authorization: Bearer <token>`")
        param = spec.get(name)
        if name in seen and (param is None or not param.many):
            raise RequestError(f"query {name[:40]!r} given more than once; expected it once")
        seen.add(name)
        if param is None:
            if strict:
                raise RequestError(f"query {name[:40]!r} is not a parameter here; expected "
                                   f"{sorted(spec) or 'none'}")
            continue
        value_read = param.read(value)
        if param.many:
            out.setdefault(name, []).append(value_read)
        else:
            out[name] = value_read
    missing = [p.name for p in spec.values() if p.required and p.name not in out]
    if missing:
        raise RequestError(f"query: missing {', '.join(missing)}")
    return out


def coap_pairs(request: aiocoap.Message) -> list[tuple[str, str]]:
    out = []
    for item in request.opt.uri_query:
        name, _, value = item.partition("=")
        out.append((name, value))
    return out


def coap_query(request: aiocoap.Message, *params: Param) -> dict[str, Any]:
    """The request's Uri-Query options, read by `params` (strict: an unknown or repeated one is 4.00)."""
    return parse(coap_pairs(request), params)


def check_body_size(request: aiocoap.Message, limit: int, what: str) -> None:
    """Refuse a body whose declared size (Size1) or received size so far (this block's end) passes `limit`,
    before aiocoap spools further blocks: a 100 MB push is refused at its first block past the limit."""
    block1 = request.opt.block1
    offset = block1.block_number * block1.size if block1 is not None else 0
    declared = request.opt.size1 or 0
    received = offset + len(request.payload)
    if received > limit or declared > limit:
        raise TooLarge(f"{what} of {max(declared, received)} bytes or more exceeds the limit of {limit}",
                       limit=limit)


JSON_DEPTH = 32  # deeper than any body a route takes; a 4 KB body of brackets is refused, not recursed into


def read_json(raw: bytes, *, max_bytes: int, max_depth: int = JSON_DEPTH, what: str = "body") -> Any:
    """A JSON body within a size and a nesting limit: 413 past the size, 400 for bad or too deep JSON."""
    if len(raw) > max_bytes:
        raise TooLarge(f"{what} of {len(raw)} bytes exceeds the limit of {max_bytes}", limit=max_bytes)
    try:
        value = json.loads(raw)
    except RecursionError:
        raise RequestError(f"{what}: JSON nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"{what}: not valid JSON ({exc})") from None
    stack = [(value, 1)]
    while stack:  # iterative: the check must not recurse on what it checks
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise RequestError(f"{what}: JSON nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value
