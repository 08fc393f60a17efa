"""Record kinds and the validated shape of each kind's body."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import MalformedRecord

# Kind codes as they appear in the signed payload; names are for people and JSON.
KINDS: dict[str, int] = {
    "key": 0,  # genesis (seq 0) and key rotation: names the signing key
    "scan": 1,  # an NFC tap at a checkpoint (MBG distribution)
    "reading": 2,  # a sensor sample: temperature, humidity, crowd
    "price": 3,  # a market price observation
    "stock": 4,  # a stock movement of raw ingredients
    "note": 5,  # a short field note
    "witness": 6,  # a countersignature of log heads seen from peers
    "attest": 7,  # a hub's attestation of data that arrived unsigned (legacy clients)
    "authority": 8,  # a hub's decision about a device, in the hub's own log (ledger.authority)
}
KIND_NAMES: dict[int, str] = {code: name for name, code in KINDS.items()}

# MBG scan events, in the order a container normally sees them.
SCAN_EVENTS = (
    "cooked", "packed", "departed", "arrived", "received", "served",
    "returned", "damaged", "lost", "sample", "incident",
)
CHECKPOINTS = ("kitchen", "kitchen_exit", "school_gate", "return", "market_stall", "phone")
STOCK_MOVEMENTS = ("receive", "use", "waste", "count")
# What a hub decides about a device: admit it with its genesis key, withdraw that approval or revoke its key
# from a seq on, or accept a key rotation the device signed.
AUTHORITY_ACTIONS = ("approve", "withdraw", "revoke", "rotate")
# Per action, the optional fields that must appear (the rest of them must not): one meaning per entry.
AUTHORITY_FIELDS: dict[str, frozenset[str]] = {
    "approve": frozenset({"key", "site", "role"}), "withdraw": frozenset(), "revoke": frozenset(),
    "rotate": frozenset({"key"}),
}

MAX_TEXT = 512
MAX_LIST = 256


@dataclass(frozen=True, slots=True)
class Field:
    kind: type | tuple[type, ...]
    required: bool = False
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    list_of: type | None = None
    plain: bool = field(init=False, default=False)  # nothing to check beyond the type and text length

    def __post_init__(self) -> None:
        object.__setattr__(self, "plain", self.choices is None and self.minimum is None
                           and self.list_of is None and self.kind is not bytes)


_ID = Field(str)
_REQ_ID = Field(str, required=True)

SCHEMAS: dict[str, dict[str, Field]] = {
    "key": {
        "pubkey": Field(bytes, required=True),  # raw Ed25519 public key, 32 bytes
        "alg": Field(str),  # "Ed25519" (the only one today)
        "reason": Field(str),  # "genesis", "rotation", "restore"
    },
    "scan": {
        "event": Field(str, required=True, choices=SCAN_EVENTS),
        "site": _REQ_ID,  # kitchen or school id where the tap happened
        "checkpoint": Field(str, choices=CHECKPOINTS),
        "staff": _ID,  # staff card uid (personal data: may travel by digest)
        "tags": Field(list, list_of=str),  # container (ompreng) tag uids
        "parent": _ID,  # crate or vehicle the tags were packed into
        "batch": _ID,  # cooking batch id
        "school": _ID,  # destination school for departures
        "count": Field(int, minimum=0),  # portions counted
        "temp_cc": Field(int),  # probe temperature in centi-degrees Celsius
        "cooked_at": Field(int, minimum=0),  # cook-end time (device seconds) for "cooked"
        "text": _ID,  # incident description
        "source": Field(str),  # "nfc", "coap", "legacy-http"
    },
    "reading": {
        "site": _REQ_ID,
        "sensor": _ID,
        "temp_cc": Field(int),  # centi-degrees Celsius
        "rh_cp": Field(int, minimum=0),  # relative humidity in centi-percent
        "crowd": Field(int, minimum=0),  # people counted in the sampling window
    },
    "price": {
        "market": _REQ_ID,
        "commodity": _REQ_ID,
        "grade": _ID,
        "unit": Field(str, required=True),  # "kg", "liter", "butir", ...
        "price_idr": Field(int, required=True, minimum=1),  # rupiah per unit, integer
        "reporter": _ID,
        "region": _ID,
        "source": Field(str),
        "observed_at": Field(int, minimum=0),  # when the price was taken (device seconds), if before the record
    },
    "stock": {
        "site": _REQ_ID,  # kitchen id
        "item": _REQ_ID,
        "movement": Field(str, required=True, choices=STOCK_MOVEMENTS),
        "qty": Field(int, required=True, minimum=0),  # base units (grams, pieces, ml)
        "unit": Field(str, required=True),
        "supplier": _ID,
        "batch": _ID,
        "reason": _ID,
    },
    "note": {
        "site": _ID,
        "market": _ID,
        "commodity": _ID,
        "text": Field(str, required=True),
        "author": _ID,
    },
    "witness": {
        # [[device id, seq, record id], ...] of peers' heads this device has verified
        "heads": Field(list, required=True, list_of=list),
    },
    "attest": {
        "path": Field(str, required=True),  # where it came in: "http:/api/log_scan", "mqtt:pasar/data"
        "sender": Field(str, required=True),  # who sent it, as the hub could tell
        "kind": Field(str, required=True),  # the kind the data would have had if signed
        "data": Field(dict, required=True),  # the data as received, canonicalised
        "received_at": Field(int, required=True, minimum=0),
    },
    "authority": {
        "action": Field(str, required=True, choices=AUTHORITY_ACTIONS),
        "device": Field(bytes, required=True),  # the 16-byte id of the device decided about
        "from_seq": Field(int, required=True, minimum=0),  # the first seq the decision applies to
        "key": Field(bytes),  # approve: the device's genesis key; rotate: the key it rotated to (32 bytes)
        "site": _ID,  # approve: where the device works
        "role": _ID,  # approve: what it is (edge, phone, ...)
    },
}


_REQUIRED: dict[str, frozenset[str]] = {
    kind: frozenset(name for name, spec in schema.items() if spec.required) for kind, schema in SCHEMAS.items()
}


# Per kind, the text and integer fields that need no more than a type, length, choice or minimum check:
# (type, choices, minimum); and the lists of text, which need only their length and their items' (type list).
_FAST: dict[str, dict[str, tuple[type, frozenset[str] | None, int | None]]] = {
    kind: {name: (spec.kind, None if spec.choices is None else frozenset(spec.choices), spec.minimum)
           for name, spec in schema.items()
           if (spec.list_of is None and ((spec.kind is str and spec.minimum is None)
                                         or (spec.kind is int and spec.choices is None)))
           or (spec.kind is list and spec.list_of is str and spec.choices is None and spec.minimum is None)}
    for kind, schema in SCHEMAS.items()
}


def kind_code(name: str) -> int:
    try:
        return KINDS[name]
    except KeyError:
        raise MalformedRecord(
            f"unknown record kind: expected one of {sorted(KINDS)}, got {name!r}"
        ) from None


def kind_name(code: int) -> str:
    try:
        return KIND_NAMES[code]
    except KeyError:
        raise MalformedRecord(
            f"unknown record kind code: expected one of {sorted(KIND_NAMES)}, got {code}"
        ) from None


_JUST_STR = frozenset({str})


def validate_body(kind: str, body: Mapping[str, Any]) -> None:
    """Check `body` against the shape of `kind`; raise MalformedRecord saying what is wrong."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise MalformedRecord(f"unknown record kind: expected one of {sorted(SCHEMAS)}, got {kind!r}")
    if type(body) is not dict and not isinstance(body, Mapping):
        raise MalformedRecord(f"{kind} body: expected a map, got {type(body).__name__}")
    fast = _FAST[kind]
    for name, value in body.items():
        # The common case first: text or a number of exactly the field's type (what a decoder returns) that
        # meets its length, choices and minimum; everything else takes the full check below.
        spec_fast = fast.get(name)
        if spec_fast is not None:
            t, choices, minimum = spec_fast
            if t is str:
                if type(value) is str and len(value) <= MAX_TEXT and (choices is None or value in choices):
                    continue
            elif t is int:
                if type(value) is int and (minimum is None or value >= minimum):
                    continue
            elif (type(value) is list and len(value) <= MAX_LIST and {*map(type, value)} <= _JUST_STR
                  and max(map(len, value), default=0) <= MAX_TEXT):  # a list of text (`tags`), in C loops
                continue
        spec = schema.get(name)
        if spec is None:
            raise MalformedRecord(
                f"{kind} body: unexpected field {name!r}; allowed fields are {sorted(schema)}"
            )
        _check_field(kind, name, spec, value)
    missing = _REQUIRED[kind].difference(body)
    if missing:
        raise MalformedRecord(f"{kind} body: missing required field {sorted(missing)[0]!r}")
    if kind == "authority":
        wanted = AUTHORITY_FIELDS[body["action"]]
        present = set(body) - _REQUIRED[kind]
        if present != wanted:
            raise MalformedRecord(f"authority body: action {body['action']!r} takes the fields "
                                  f"{sorted(_REQUIRED[kind] | wanted)}, got {sorted(body)}")


def _check_field(kind: str, name: str, spec: Field, value: Any) -> None:
    # bool is an int in Python; the body never wants a bool where it wants a number.
    if isinstance(value, bool) or not isinstance(value, spec.kind):
        expected = spec.kind.__name__ if isinstance(spec.kind, type) else str(spec.kind)
        raise MalformedRecord(f"{_where(kind, name)}: expected {expected}, got {type(value).__name__}")
    # Most fields are short free text or plain numbers: nothing more to check (this runs for every record).
    if spec.plain and (type(value) is not str or len(value) <= MAX_TEXT):
        return
    _check_value(kind, name, spec, value)


def _where(kind: str, name: str) -> str:
    # Built only when there is an error to report: validation runs for every record verified.
    return f"{kind} body field {name!r}"


def _check_value(kind: str, name: str, spec: Field, value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise MalformedRecord(f"{_where(kind, name)}: text longer than {MAX_TEXT} characters ({len(value)})")
    if spec.choices is not None and value not in spec.choices:
        raise MalformedRecord(f"{_where(kind, name)}: expected one of {list(spec.choices)}, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise MalformedRecord(f"{_where(kind, name)}: expected at least {spec.minimum}, got {value}")
    if spec.list_of is not None:
        if len(value) > MAX_LIST:
            raise MalformedRecord(f"{_where(kind, name)}: more than {MAX_LIST} items ({len(value)})")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, spec.list_of):
                raise MalformedRecord(
                    f"{_where(kind, name)}: expected a list of {spec.list_of.__name__}, "
                    f"found {type(item).__name__}"
                )
            # The text limit holds inside arrays too (`tags`): FORMAT.md §4.
            if isinstance(item, str) and len(item) > MAX_TEXT:
                raise MalformedRecord(f"{_where(kind, name)}: an item is longer than {MAX_TEXT} characters")
            if kind == "witness" and not _is_head(item):
                raise MalformedRecord(f"{_where(kind, name)}: each head must be [16-byte device id, seq, "
                                      "32-byte record id]")
    if ((kind, name) in (("key", "pubkey"), ("authority", "key"))) and len(value) != 32:
        raise MalformedRecord(f"{_where(kind, name)}: expected 32 bytes of Ed25519 public key, got {len(value)}")
    if (kind, name) == ("authority", "device") and len(value) != 16:
        raise MalformedRecord(f"{_where(kind, name)}: expected a 16-byte device id, got {len(value)} bytes")


def _is_head(item: Any) -> bool:
    return (len(item) == 3 and isinstance(item[0], bytes) and len(item[0]) == 16 and type(item[1]) is int
            and item[1] >= 0 and isinstance(item[2], bytes) and len(item[2]) == 32)
