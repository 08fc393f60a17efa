"""The bundle schema is strict: a renamed, missing or unknown field or a stray body entry is MALFORMED (issue 17)."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from ledger.bundle import BUNDLE_FIELDS, LOG_FIELDS, verify_bundle
from ledger.errors import MalformedRecord

from .tamper import EXAMPLE, edited, encode

BASE = EXAMPLE.read_bytes()


def test_example_verifies() -> None:
    assert verify_bundle(BASE).exit_code == 0


def _code(data: bytes) -> str | None:
    try:
        problems = verify_bundle(data).all_problems
    except MalformedRecord as exc:
        return exc.code
    return problems[0].code if problems else None


@pytest.mark.parametrize("field", sorted(BUNDLE_FIELDS - {"description"}))
def test_bundle_field_missing_or_renamed(field: str) -> None:
    assert _code(edited(BASE, "", lambda b: b.pop(field)).bundle) == "MALFORMED"
    assert _code(edited(BASE, "", lambda b: b.__setitem__(field + "_", b.pop(field))).bundle) == "MALFORMED"


def test_description_optional_but_not_renamed() -> None:
    # Optional in the schema, but the hub's seal covers the bundle as exported (FORMAT.md §12.3 step 9).
    assert _code(edited(BASE, "", lambda b: b.pop("description")).bundle) == "INVALID_SIGNATURE"
    assert _code(edited(BASE, "", lambda b: b.__setitem__("descriptioN", b.pop("description"))).bundle) == "MALFORMED"


@pytest.mark.parametrize("field", sorted(LOG_FIELDS))
def test_log_field_missing_or_renamed(field: str) -> None:
    assert _code(edited(BASE, "", lambda b: b["logs"][0].pop(field)).bundle) == "MALFORMED"
    assert _code(edited(BASE, "", lambda b: b["logs"][0].__setitem__(field[:-1], b["logs"][0].pop(field))).bundle) == "MALFORMED"


def test_one_bit_rename_of_hub_log() -> None:
    at = BASE.index(b"hub_log")
    flipped = bytearray(BASE)
    flipped[at + 4] ^= 0x02  # "hub_log" -> "hub_nog"
    assert _code(bytes(flipped)) == "MALFORMED"


def test_body_entries_belong_to_detached_records() -> None:
    b = cbor2.loads(BASE)
    li = next(i for i, log in enumerate(b["logs"]) if log["bodies"])
    inline = encode({"site": "x", "event": "served"})
    assert _code(edited(BASE, "", lambda b: b["logs"][li]["bodies"].append([1, inline])).bundle) == "MALFORMED"
    assert _code(edited(BASE, "", lambda b: b["logs"][li]["bodies"].append([99, inline])).bundle) == "MALFORMED"
    assert _code(edited(BASE, "", lambda b: b["logs"][li]["bodies"].append(b["logs"][li]["bodies"][0])).bundle) == "MALFORMED"
    # Dropping a body is a change the hub's seal shows: the hub exports without it when it erases one.
    assert _code(edited(BASE, "", lambda b: b["logs"][li].__setitem__("bodies", [])).bundle) == "INVALID_SIGNATURE"


def test_seal_covers_the_map_as_it_is() -> None:
    # A bundle without the optional description, sealed that way, verifies (FORMAT.md §12.3 step 9).
    assert _code(edited(BASE, "", lambda b: b.pop("description"), resealed=True).bundle) is None


def test_consistency_entry_the_wrong_way_round() -> None:
    def swap(b: dict[str, Any]) -> None:
        first, second, proof = b["consistency"][0]
        b["consistency"][0] = [second, first, proof]
    assert _code(edited(BASE, "", swap, resealed=True).bundle) == "INVALID_PROOF"
