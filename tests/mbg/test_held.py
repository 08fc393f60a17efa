"""HeldScan: the compact form of a scan in the analytics window gives back the scan that came in."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.mbg.events import ScanEvent
from hub.mbg.held import HeldScan, pack_tags, record_key, tag_chunks, unpack_tags

texts = st.text(min_size=1, max_size=140)
tags = st.lists(st.one_of(texts, st.binary(min_size=1, max_size=63).map(bytes.hex),
                          st.binary(min_size=1, max_size=63).map(lambda b: b.hex().upper())), max_size=40)
# No deadline: the machine running the suite is shared, and a slow example is not a wrong one.
ROUND_TRIP = settings(deadline=None, derandomize=True, max_examples=200)
optional = st.one_of(st.none(), st.integers(min_value=0, max_value=2**64))


@ROUND_TRIP
@given(tags)
def test_tags_round_trip(values: list[str]) -> None:
    assert unpack_tags(pack_tags(tuple(values))) == tuple(values)


# A delivery's containers: UIDs of one length and case, the list packed and read in one pass.
same_uids = st.tuples(st.integers(min_value=1, max_value=63), st.booleans()).flatmap(
    lambda w: st.lists(st.binary(min_size=w[0], max_size=w[0]).map(
        lambda b: b.hex().upper() if w[1] else b.hex()), max_size=40))


@ROUND_TRIP
@given(st.one_of(tags, same_uids))
def test_a_tag_list_packs_as_its_tags_packed_one_by_one(values: list[str]) -> None:
    alone = [pack_tags((v,)) for v in values]
    packed = pack_tags(tuple(values))
    if all(type(p) is bytes for p in alone):
        assert packed == b"".join(alone)  # type: ignore[arg-type]
        assert tag_chunks(packed) == alone
    assert unpack_tags(packed) == tuple(values)


@ROUND_TRIP
@given(record_id=st.one_of(texts, st.binary(min_size=32, max_size=32).map(bytes.hex)),
       device_time=st.integers(min_value=-(2**70), max_value=2**70), lag=st.integers(min_value=-(2**40), max_value=2**40),
       seq=st.integers(min_value=0, max_value=2**64), count=optional,
       temp_cc=st.one_of(st.none(), st.integers(min_value=-(2**40), max_value=2**40)), cooked_at=optional,
       tags=tags, staff=st.one_of(st.none(), texts))
def test_a_held_scan_unpacks_to_the_scan(record_id: str, device_time: int, lag: int, seq: int, count: int | None,
                                         temp_cc: int | None, cooked_at: int | None, tags: list[str],
                                         staff: str | None) -> None:
    scan = ScanEvent(record_id=record_id, device="dev", seq=seq, boot=2, device_time=device_time,
                     arrived_at=device_time + lag, event="packed", site="K1", checkpoint="kitchen", staff=staff,
                     tags=tuple(tags), parent="TRK1", batch="B1", school="S1", count=count, temp_cc=temp_cc,
                     cooked_at=cooked_at, source="nfc")
    shared: dict[object, object] = {}
    held = HeldScan(scan, shared, record_key(scan.record_id))
    assert held.unpack() == scan and held.record_id == scan.record_id and held.arrived_at == scan.arrived_at
    assert held.unpack({}) == scan
    # The same tag list and tap context of another scan of the day are held once.
    again = HeldScan(scan, shared, record_key(scan.record_id))
    assert again.tags is held.tags and again.extra is held.extra


def test_a_sha256_record_id_is_held_as_its_bytes() -> None:
    rid = "ab" * 32
    assert record_key(rid) == bytes.fromhex(rid) and record_key("r1") == "r1" and record_key("AB" * 32) == "AB" * 32


def _packed_one_by_one(tags: tuple[str, ...]) -> bytes | tuple[str, ...]:
    """What pack_tags's docstring says, a tag at a time: upper-case UID, lower-case UID, else UTF-8."""
    out = b""
    for tag in tags:
        upper = re.fullmatch(r"(?:[0-9A-F]{2}){1,63}", tag)
        if upper or re.fullmatch(r"(?:[0-9a-f]{2}){1,63}", tag):
            out += bytes([(0 if upper else 64) + len(tag) // 2]) + bytes.fromhex(tag)
        elif len(tag.encode()) > 127:
            return tags
        else:
            out += bytes([128 + len(tag.encode())]) + tag.encode()
    return out


# Lists of one case, with UIDs of digits only among them (they count as upper-case) and odd lengths.
hex_tags = st.lists(st.one_of(st.from_regex(r"[0-9]{1,10}", fullmatch=True),
                              st.binary(min_size=1, max_size=63).map(bytes.hex),
                              st.from_regex(r"[0-9a-f]{1,9}", fullmatch=True)), max_size=12)


@ROUND_TRIP
@given(st.one_of(tags, same_uids, hex_tags))
def test_a_tag_list_packs_as_the_format_says(values: list[str]) -> None:
    assert pack_tags(tuple(values)) == _packed_one_by_one(tuple(values))


def test_lower_case_uids_pack_in_one_pass_and_digits_only_stay_upper_case() -> None:
    assert pack_tags(("e0040150a1b2c3d4", "04a1")) == b"\x48\xe0\x04\x01\x50\xa1\xb2\xc3\xd4\x42\x04\xa1"
    assert pack_tags(("e0040150a1b2c3d4", "0401")) == b"\x48\xe0\x04\x01\x50\xa1\xb2\xc3\xd4\x02\x04\x01"
    assert unpack_tags(pack_tags(("e0040150a1b2c3d4", "0401"))) == ("e0040150a1b2c3d4", "0401")
