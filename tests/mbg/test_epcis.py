"""EPCIS 2.0 export: valid against GS1's JSON schema, eventIDs equal to the reference hash generator's."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from epcis_event_hash_generator import hash_generator, json_to_py

from hub.mbg import SCENARIOS, InputError, MbgView, event_hash, simulate
from hub.mbg.epcis import pre_hash

# The reference generator uses a deprecated importlib.resources call; that is its business, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:epcis_event_hash_generator")

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "EPCIS-JSON-Schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def _document(scenario: str, seed: int = 1) -> dict[str, Any]:
    day = simulate(scenario, seed=seed, kitchens=1, schools_per_kitchen=2, meals_per_kitchen=400)
    view = MbgView(day.plan)
    for r in day.records:
        view.ingest(r, r.arrived_at)
    return view.epcis_document(day.now, day.date)


def _reference_hashes(doc: dict[str, Any]) -> list[str]:
    # A JSON round trip first: the reference reads documents as parsed JSON, not as our Python objects.
    events = json_to_py.event_list_from_epcis_document_json(json.loads(json.dumps(doc)))
    return hash_generator.epcis_hashes_from_events(events)


def test_format_checks_are_active() -> None:
    # Without the format checkers the schema's "uri" and "date-time" checks would pass anything.
    assert not VALIDATOR.is_valid({"type": "ObjectEvent", "@context": ["x"], "eventTime": "yesterday",
                                   "eventTimeZoneOffset": "+07:00", "action": "OBSERVE", "epcList": []})


@pytest.mark.parametrize("scenario", ["normal", "temperature_drop", "clock_year_off", "short_delivery"])
def test_export_validates_against_gs1_schema(scenario: str) -> None:
    doc = _document(scenario)
    errors = [e.message for e in VALIDATOR.iter_errors(doc)]
    assert errors == []
    types = {e["type"] for e in doc["epcisBody"]["eventList"]}
    assert types == {"ObjectEvent", "AggregationEvent"}
    steps = {e["bizStep"].rsplit("-", 1)[1] for e in doc["epcisBody"]["eventList"]}
    assert {"departing", "arriving", "receiving", "packing", "commissioning", "dispensing"} <= steps
    assert any("sensorElementList" in e for e in doc["epcisBody"]["eventList"])


def test_schema_rejects_a_broken_event() -> None:
    doc = _document("normal")
    broken = copy.deepcopy(doc)
    broken["epcisBody"]["eventList"][0]["action"] = "TELEPORT"
    assert not VALIDATOR.is_valid(broken)
    broken = copy.deepcopy(doc)
    broken["epcisBody"]["eventList"][0]["jejakCount"] = 3  # not a URI: extensions must be namespaced
    assert not VALIDATOR.is_valid(broken)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_event_ids_equal_the_reference_hash_generator(scenario: str) -> None:
    doc = _document(scenario, seed=3)
    events = doc["epcisBody"]["eventList"]
    assert events
    assert [e["eventID"] for e in events] == _reference_hashes(doc)
    assert len({e["eventID"] for e in events}) == len(events)


def test_event_id_changes_with_content_and_not_with_record_time() -> None:
    doc = _document("normal")
    event = doc["epcisBody"]["eventList"][0]
    moved = {**event, "recordTime": "2030-01-01T00:00:00.000Z"}
    assert event_hash(moved) == event["eventID"]
    other = {**event, "bizStep": "https://ref.gs1.org/cbv/BizStep-inspecting"}
    assert event_hash(other) != event["eventID"]
    # The same instant written in UTC is the same event; another instant is not.
    local = dt.datetime.fromisoformat(event["eventTime"])
    same = {**event, "eventTime": local.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}
    assert same["eventTime"] != event["eventTime"] and event_hash(same) == event["eventID"]
    later = {**event, "eventTime": (local + dt.timedelta(seconds=1)).isoformat()}
    assert event_hash(later) != event["eventID"]
    assert pre_hash(event).startswith(f"eventType={event['type']}eventTime=")


def test_hash_refuses_fields_it_does_not_know() -> None:
    with pytest.raises(InputError, match="ilmd"):
        event_hash({"type": "ObjectEvent", "eventTime": "2026-01-12T00:00:00Z", "eventTimeZoneOffset": "+07:00",
                    "action": "ADD", "ilmd": {}})
