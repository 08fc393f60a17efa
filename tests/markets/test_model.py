"""Market inputs from real ledger records, and record bodies the generator makes."""

from __future__ import annotations

import dataclasses

import pytest

from hub.markets.errors import BadObservation
from hub.markets.model import FieldNote, PriceObservation, SensorReading, from_record
from ledger.bodies import validate_body
from ledger.chain import ChainBuilder


def test_price_record_becomes_observation(chain: ChainBuilder) -> None:
    body = {"market": "pasar-senen", "commodity": "cabai-merah", "unit": "kg", "price_idr": 45_000,
            "region": "DKI Jakarta"}
    rec = chain.append("price", body)
    obs = from_record(rec, 1_717_200_060)
    assert isinstance(obs, PriceObservation)
    assert obs.price_idr == 45_000 and obs.arrived_at == 1_717_200_060 and obs.time == rec.time
    assert obs.reporter == rec.device  # no reporter in the body: the signing device reported it
    assert obs.id == rec.id.hex()
    assert obs.to_body() == {**body, "reporter": rec.device}


def test_reading_and_note_records(chain: ChainBuilder) -> None:
    r = from_record(chain.append("reading", {"site": "pasar-senen", "temp_cc": 3125, "rh_cp": 8010,
                                             "crowd": 420}), 5)
    assert isinstance(r, SensorReading) and r.temp_cc == 3125 and r.crowd == 420
    n = from_record(chain.append("note", {"text": "cabai langka", "market": "pasar-senen"}), 5)
    assert isinstance(n, FieldNote) and n.market == "pasar-senen" and n.text == "cabai langka"


def test_other_kinds_and_purged_bodies_are_skipped(chain: ChainBuilder) -> None:
    rec = chain.append("stock", {"site": "sppg-1", "item": "beras", "movement": "receive", "qty": 5, "unit": "g"})
    assert from_record(rec, 1) is None
    price = chain.append("price", {"market": "m", "commodity": "c", "unit": "kg", "price_idr": 1})
    assert from_record(price, 1) is not None
    # A body purged under the data protection law leaves only its digest: no price to analyse.
    assert from_record(dataclasses.replace(price, body=None), 1) is None


def test_observation_refuses_bad_values() -> None:
    with pytest.raises(BadObservation, match="price_idr: expected at least 1, got 0"):
        PriceObservation(id="x", market="m", commodity="c", unit="kg", price_idr=0, time=1, arrived_at=1)
    with pytest.raises(BadObservation, match="expected int, got float"):
        PriceObservation(id="x", market="m", commodity="c", unit="kg", price_idr=1.5, time=1, arrived_at=1)


def test_generated_bodies_pass_the_ledger_schema(synth) -> None:
    n = 0
    for _, body in synth.price_bodies():
        validate_body("price", body)
        n += 1
        if n > 2000:
            break
    for _, body in list(synth.reading_bodies())[:200]:
        validate_body("reading", body)
    for note in synth.notes[:50]:
        validate_body("note", note.to_body())
    assert n > 2000


def test_a_signed_price_keeps_its_observation_time_within_the_allowance(chain: ChainBuilder) -> None:
    # A phone posts yesterday's prices over CoAP: the edge signs them now, the body says when they were taken.
    body = {"market": "pasar-senen", "commodity": "cabai-merah", "unit": "kg", "price_idr": 45_000}
    rec = chain.append("price", {**body, "observed_at": 1_717_200_000 - 86_400})
    validate_body("price", rec.body)
    assert from_record(rec, 1_717_200_060).time == 1_717_200_000 - 86_400
    # Outside the allowance (a week back, or after the record was signed) the record's own time counts.
    old = chain.append("price", {**body, "observed_at": 1_717_200_000 - 7 * 86_400})
    assert from_record(old, 1_717_200_060).time == old.time
    ahead = chain.append("price", {**body, "observed_at": 1_717_200_000 + 3600})
    assert from_record(ahead, 1_717_200_060).time == ahead.time
