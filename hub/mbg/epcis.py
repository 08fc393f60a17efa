"""Export of MBG scans as GS1 EPCIS 2.0 JSON-LD events, with eventIDs from the canonical event hash."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .analysis import Timed
from .errors import InputError
from .plan import Plan, format_offset

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
CBV_BIZSTEP = "https://ref.gs1.org/cbv/BizStep-"
CBV_DISP = "https://ref.gs1.org/cbv/Disp-"
GS1_VOC = "https://gs1.org/voc/"

# scan event -> (bizStep, disposition, action). CBV 2.0 has no "lost": a container nobody can find has
# status "unknown"; an incident is an inspection that found the food non-conformant.
MAPPING: dict[str, tuple[str, str | None, str]] = {
    "cooked": ("commissioning", "active", "ADD"),
    "packed": ("packing", "container_closed", "ADD"),
    "departed": ("departing", "in_transit", "OBSERVE"),
    "arrived": ("arriving", "in_transit", "OBSERVE"),
    "received": ("receiving", "in_progress", "OBSERVE"),
    "served": ("dispensing", "dispensed", "OBSERVE"),
    "returned": ("receiving", "returned", "OBSERVE"),
    "damaged": ("inspecting", "damaged", "OBSERVE"),
    "lost": ("inspecting", "unknown", "OBSERVE"),
    "sample": ("sampling", None, "OBSERVE"),
    "incident": ("inspecting", "non_conformant", "OBSERVE"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class EpcisIds:
    """How Jejak names things in EPCIS. Without a GS1 company prefix the ids are private URNs."""

    base: str = "urn:jejak:"

    def container(self, tag: str) -> str:
        return f"{self.base}ompreng:{quote(tag, safe='')}"

    def parent(self, parent: str) -> str:
        return f"{self.base}carrier:{quote(parent, safe='')}"

    def site(self, site: str) -> str:
        return f"{self.base}site:{quote(site, safe='')}"

    def read_point(self, site: str, checkpoint: str | None) -> str:
        return self.site(site) + (f":{checkpoint}" if checkpoint else "")

    def batch(self, batch: str) -> str:
        return f"{self.base}batch:{quote(batch, safe='')}"

    def meals(self, kitchen_or_school: str) -> str:
        return f"{self.base}meal:{quote(kitchen_or_school, safe='')}"

    def device(self, device: str) -> str:
        return f"{self.base}device:{quote(device, safe='')}"


def iso_time(t: int, offset_s: int = 0) -> str:
    """Unix seconds -> ISO 8601 with milliseconds in the given offset ('Z' for UTC)."""
    tz = dt.timezone(dt.timedelta(seconds=offset_s))
    text = dt.datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if offset_s == 0 else text


def _decimal(cc: int) -> float | int:
    # JSON-LD wants a number; whole degrees stay integers so no float formatting is involved.
    return cc // 100 if cc % 100 == 0 else cc / 100


def scan_event(t: Timed, plan: Plan, ids: EpcisIds = EpcisIds()) -> dict[str, Any]:
    """One scan as an EPCIS 2.0 ObjectEvent or AggregationEvent, eventID included.

    The event names the containers the tap observed for the first time at its site (`Timed.fresh`): a
    container tapped again is one event, as it is one container in the counts.
    """
    s = t.scan
    tags = t.fresh
    biz, disp, action = MAPPING[s.event]
    offset = plan.site_offset(s.site)
    ev: dict[str, Any] = {}
    aggregate = s.event == "packed" and s.parent is not None and bool(tags)
    ev["type"] = "AggregationEvent" if aggregate else "ObjectEvent"
    ev["eventTime"] = iso_time(t.time, offset)
    ev["eventTimeZoneOffset"] = format_offset(offset)
    ev["recordTime"] = iso_time(s.arrived_at)
    if aggregate:
        ev["parentID"] = ids.parent(s.parent)  # type: ignore[arg-type]
        ev["childEPCs"] = [ids.container(tag) for tag in tags]
    else:
        ev["epcList"] = [ids.container(tag) for tag in tags]
    quantity = t.portions(tags)
    if quantity is not None:
        epc_class = ids.batch(s.batch) if s.batch else ids.meals(t.school or s.site)
        ev["childQuantityList" if aggregate else "quantityList"] = [{"epcClass": epc_class, "quantity": quantity}]
    ev["action"] = action
    ev["bizStep"] = CBV_BIZSTEP + biz
    if disp is not None:
        ev["disposition"] = CBV_DISP + disp
    ev["readPoint"] = {"id": ids.read_point(s.site, s.checkpoint)}
    ev["bizLocation"] = {"id": ids.site(s.site)}
    if s.temp_cc is not None:
        ev["sensorElementList"] = [{
            "sensorMetadata": {"time": iso_time(t.time, offset), "deviceID": ids.device(s.device)},
            "sensorReport": [{"type": GS1_VOC + "Temperature", "value": _decimal(s.temp_cc), "uom": "CEL"}],
        }]
    ev["eventID"] = event_hash(ev)
    return ev


def document(events: Iterable[dict[str, Any]], *, created_at: int) -> dict[str, Any]:
    """An EPCISDocument holding `events`."""
    return {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": iso_time(created_at),
        "epcisBody": {"eventList": list(events)},
    }


# --- canonical event hash ------------------------------------------------------------------------------
# The pre-hash string of the EPCIS event hash algorithm (GS1 EPCIS 2.0 section 8.9 / CBV 2.0 "ni" event
# ids): fields in a fixed order, name=value pairs concatenated without separators, repeated values sorted,
# times in UTC with milliseconds, and the SHA-256 as a "ni" URI. Only the fields this module emits are
# handled; anything else is refused rather than hashed wrongly.

_SENSOR_META = ("time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod",
                "bizRules")
_SENSOR_REPORT = ("type", "exception", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod", "time",
                  "microorganism", "chemicalSubstance", "value", "component", "stringValue", "booleanValue",
                  "hexBinaryValue", "uriValue", "minValue", "maxValue", "meanValue", "sDev", "percRank",
                  "percValue", "uom", "coordinateReferenceSystem")
_QUANTITY = ("epcClass", "quantity", "uom")
_HANDLED = {"type", "eventTime", "eventTimeZoneOffset", "recordTime", "eventID", "parentID", "epcList", "childEPCs",
            "quantityList", "childQuantityList", "action", "bizStep", "disposition", "readPoint", "bizLocation",
            "sensorElementList"}


def _utc(text: str) -> str:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        raise InputError(f"event hash: boolean field {name!r} is not handled")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        raise InputError(f"event hash: expected text or number in {name!r}, got {type(value).__name__}")
    if "time" in name.lower() and "offset" not in name.lower():
        return _utc(value)
    return value.strip()


def _fields(obj: dict[str, Any], order: tuple[str, ...]) -> str:
    return "".join(f"{name}={_value(name, obj[name])}" for name in order if name in obj and obj[name] != "")


def pre_hash(event: dict[str, Any]) -> str:
    """The canonical pre-hash string of an event this module produced."""
    unknown = sorted(set(event) - _HANDLED)
    if unknown:
        raise InputError(f"event hash: fields {unknown} are not handled by this exporter")
    out = [f"eventType={event['type']}"]
    for name in ("eventTime", "eventTimeZoneOffset", "parentID"):
        if name in event:
            out.append(f"{name}={_value(name, event[name])}")
    for name in ("epcList", "childEPCs"):
        if event.get(name):
            out.append(name + "".join(sorted(f"epc={_value('epc', e)}" for e in event[name])))
    for name in ("quantityList", "childQuantityList"):
        if event.get(name):
            out.append(name + "".join(sorted("quantityElement" + _fields(q, _QUANTITY) for q in event[name])))
    for name in ("action", "bizStep", "disposition"):
        if name in event:
            out.append(f"{name}={_value(name, event[name])}")
    for name in ("readPoint", "bizLocation"):
        if name in event:
            out.append(f"{name}id={_value('id', event[name]['id'])}")
    if event.get("sensorElementList"):
        elements = []
        for el in event["sensorElementList"]:
            text = "sensorElement"
            if el.get("sensorMetadata"):
                text += "sensorMetadata" + _fields(el["sensorMetadata"], _SENSOR_META)
            text += "".join(sorted("sensorReport" + _fields(r, _SENSOR_REPORT) for r in el.get("sensorReport", ())))
            elements.append(text)
        out.append("sensorElementList" + "".join(sorted(elements)))
    return "".join(out)


def event_hash(event: dict[str, Any]) -> str:
    """eventID of an event: 'ni:///sha-256;<hex>?ver=CBV2.0' over its canonical pre-hash string."""
    digest = hashlib.sha256(pre_hash(event).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"
