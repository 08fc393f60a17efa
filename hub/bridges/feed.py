"""What the analytics read from attested data: the inputs an "attest" record stands for, marked as attested."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger import Record

from ..markets.catalog import COMMODITIES_BY_ID
from ..markets.model import observed_at

ATTESTED = "attested:"  # prefix of the `source` of every input derived from an attestation
GATEWAY = "gateway:"  # prefix of the device of a scan a seed 1 gateway sent: its gateway id follows


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivedInput:
    """Looks like a verified record to the MBG and market adapters, but is derived from an attestation:
    its id is the attest record's id plus a suffix, its device is the hub (for a seed 1 gateway's scan,
    "gateway:" and the gateway's id), its source says "attested:"."""

    kind: str
    body: dict[str, Any]
    id: str
    device: str
    seq: int
    time: int
    boot: int


def trust_of(source: str | None) -> str:
    return "attested" if source and source.startswith(ATTESTED) else "signed"


def derive(record: Record) -> list[DerivedInput]:
    """The scans, prices and readings one attest record carries (empty for anything else)."""
    if record.kind != "attest" or record.body is None:
        return []
    b = record.body
    data, kind, source = b["data"], b["kind"], ATTESTED + b["path"]
    rid, dev = record.id.hex(), record.device
    common: dict[str, Any] = {"device": dev, "seq": record.seq, "boot": record.boot}
    out: list[DerivedInput] = []
    if kind == "scan":
        body = {"event": data["event"], "site": data["site"], "tags": [data["nfc_tag_id"]], "source": source}
        # MBG's clock policy compares the claimed time with the arrival time and flags skew itself. The time is
        # the gateway's clock, so the scan is the gateway's in MBG: a clock finding names it, and one gateway's
        # times are judged in order among its own scans, not among every gateway's.
        if data.get("gateway_id"):
            common["device"] = GATEWAY + data["gateway_id"]
        out.append(DerivedInput(kind="scan", body=body, id=rid, time=data["time"], **common))
    elif kind == "price":
        reporter = data.get("device_id") or b["sender"][:120]
        at = observed_at(data.get("claimed_time"), b["received_at"])
        for commodity, price in data["prices"].items():
            c = COMMODITIES_BY_ID[commodity]
            body = {"market": data["market"], "commodity": commodity, "unit": c.unit, "price_idr": price,
                    "reporter": reporter, "source": source}
            if c.grade:
                body["grade"] = c.grade  # the grade decides which ceiling applies
            if data.get("region"):
                body["region"] = data["region"]
            out.append(DerivedInput(kind="price", body=body, id=f"{rid}:{commodity}", time=at, **common))
        sensed = {k: data[k] for k in ("temp_cc", "rh_cp", "crowd") if k in data}
        if sensed:
            body = {"site": data["market"], "sensor": reporter, **sensed}
            out.append(DerivedInput(kind="reading", body=body, id=f"{rid}:reading", time=at, **common))
    return out
