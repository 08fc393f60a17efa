"""Input values of the market analytics (price observations, sensor readings, field notes) and the adapter
from hub records to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .catalog import COMMODITIES_BY_ID
from .errors import BadObservation
from .units import as_reported, conversion

# Days are counted in Western Indonesia Time (UTC+7), where most pasar rakyat keep their hours; a day that
# started at UTC midnight would split one morning's market across two days.
WIB_OFFSET_S = 7 * 3600
DAY_S = 86400


# How far a reported observation time may lie before the time the hub can vouch for (a device's record time,
# or the arrival of unsigned data) and still be honoured: the validator's staleness limit (an uplink down for
# a weekend); ahead, a clock's usual drift. Older history comes in through `jejak markets import`.
MAX_BACKDATE_S = 3 * DAY_S
MAX_AHEAD_S = 600
LATE_S = 6 * 3600  # observed this long before arrival: flagged as late in what the hub answers


def observed_at(claimed: int | None, vouched: int) -> int:
    """The time a price is filed under: the claimed observation time when within the allowance around the
    time the hub can vouch for, else that time."""
    if claimed is None or not vouched - MAX_BACKDATE_S <= claimed <= vouched + MAX_AHEAD_S:
        return vouched
    return claimed


def day_of(t: int, tz_offset_s: int = WIB_OFFSET_S) -> int:
    """Day number (days since 1970-01-01 in local time) of Unix time `t`."""
    return (t + tz_offset_s) // DAY_S


def _need_str(cls: str, name: str, value: object, *, empty_ok: bool = False) -> None:
    if not isinstance(value, str):
        raise BadObservation(f"{cls}.{name}: expected str, got {type(value).__name__}")
    if not empty_ok and not value:
        raise BadObservation(f"{cls}.{name}: expected a non-empty string, got ''")


def _need_int(cls: str, name: str, value: object, *, minimum: int | None = None,
              optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadObservation(f"{cls}.{name}: expected int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise BadObservation(f"{cls}.{name}: expected at least {minimum}, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceObservation:
    """One reported price: rupiah per unit of a commodity grade at a market, by a reporter, at a time."""

    id: str  # record id in hex, or any unique id for data that did not come from the ledger
    market: str
    commodity: str
    unit: str
    price_idr: int
    time: int  # device time, Unix seconds
    arrived_at: int  # hub arrival time, Unix seconds
    grade: str = ""
    region: str = ""
    reporter: str = ""  # the reporter named in the body, else the signing device
    device: str = ""
    source: str = ""
    # The price as reported when it was quoted in another unit and converted ("Rp 4.500/ons" for Rp 45.000
    # per kg); empty when it was reported per `unit`. The signed record or the imported file holds it too.
    reported: str = ""

    def __post_init__(self) -> None:
        for name in ("id", "market", "commodity", "unit"):
            _need_str("PriceObservation", name, getattr(self, name))
        for name in ("grade", "region", "reporter", "device", "source", "reported"):
            _need_str("PriceObservation", name, getattr(self, name), empty_ok=True)
        _need_int("PriceObservation", "price_idr", self.price_idr, minimum=1)
        _need_int("PriceObservation", "time", self.time, minimum=0)
        _need_int("PriceObservation", "arrived_at", self.arrived_at, minimum=0)

    @property
    def series(self) -> tuple[str, str, str, str]:
        """The series this observation belongs to: one market, one commodity grade, one unit."""
        return (self.market, self.commodity, self.grade, self.unit)

    def to_body(self) -> dict[str, Any]:
        """The body of a "price" record carrying this observation (passes ledger.bodies.validate_body)."""
        body: dict[str, Any] = {
            "market": self.market, "commodity": self.commodity, "unit": self.unit,
            "price_idr": self.price_idr,
        }
        for name in ("grade", "reporter", "region", "source"):
            value = getattr(self, name)
            if value:
                body[name] = value
        return body

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "market": self.market, "region": self.region, "commodity": self.commodity,
            "grade": self.grade, "unit": self.unit, "price_idr": self.price_idr, "time": self.time,
            "arrived_at": self.arrived_at, "reporter": self.reporter, "device": self.device,
            "source": self.source, **({"reported": self.reported} if self.reported else {}),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorReading:
    """A sensor sample at a market: temperature (centi-degrees), humidity (centi-percent), crowd count."""

    id: str
    site: str  # the market id
    time: int
    arrived_at: int
    sensor: str = ""
    temp_cc: int | None = None
    rh_cp: int | None = None
    crowd: int | None = None

    def __post_init__(self) -> None:
        _need_str("SensorReading", "id", self.id)
        _need_str("SensorReading", "site", self.site)
        _need_str("SensorReading", "sensor", self.sensor, empty_ok=True)
        _need_int("SensorReading", "time", self.time, minimum=0)
        _need_int("SensorReading", "arrived_at", self.arrived_at, minimum=0)
        _need_int("SensorReading", "temp_cc", self.temp_cc, optional=True, minimum=-5000)
        _need_int("SensorReading", "rh_cp", self.rh_cp, optional=True, minimum=0)
        _need_int("SensorReading", "crowd", self.crowd, optional=True, minimum=0)
        if self.rh_cp is not None and self.rh_cp > 10000:
            raise BadObservation(f"SensorReading.rh_cp: expected at most 10000 (100 %), got {self.rh_cp}")

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"site": self.site}
        if self.sensor:
            body["sensor"] = self.sensor
        for name in ("temp_cc", "rh_cp", "crowd"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldNote:
    """A reporter's short text note about a market or commodity."""

    id: str
    text: str
    time: int
    arrived_at: int
    market: str = ""
    commodity: str = ""
    author: str = ""

    def __post_init__(self) -> None:
        _need_str("FieldNote", "id", self.id)
        _need_str("FieldNote", "text", self.text, empty_ok=True)
        for name in ("market", "commodity", "author"):
            _need_str("FieldNote", name, getattr(self, name), empty_ok=True)
        _need_int("FieldNote", "time", self.time, minimum=0)
        _need_int("FieldNote", "arrived_at", self.arrived_at, minimum=0)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"text": self.text}
        for name in ("market", "commodity", "author"):
            value = getattr(self, name)
            if value:
                body[name] = value
        return body


MarketInput = PriceObservation | SensorReading | FieldNote


def from_record(record: Any, arrived_at: int) -> MarketInput | None:
    """Turn a verified hub record into a market input; None for kinds that markets do not use or for a
    purged body (its digest is all the hub still has, and a digest carries no price)."""
    body = record.body
    if body is None or record.kind not in ("price", "reading", "note"):
        return None
    rid = record.id.hex() if isinstance(record.id, bytes | bytearray) else str(record.id)
    device = record.device
    if record.kind == "price":
        unit, price, reported = body["unit"], body["price_idr"], ""
        c = COMMODITIES_BY_ID.get(body["commodity"])
        if c is not None and unit != c.unit:
            # A board's "Rp 4.500/ons" joins the commodity's series per kg; a unit that cannot be converted
            # raises BadUnit (the record stays in the log as signed; the price counts nowhere).
            per = conversion(unit, c)
            unit, price, reported = c.unit, per.price(price), as_reported(price, unit)
        return PriceObservation(
            id=rid, market=body["market"], commodity=body["commodity"], grade=body.get("grade", ""),
            unit=unit, price_idr=price, arrived_at=arrived_at, reported=reported,
            # A phone posting a backlog over CoAP names when each price was taken; the record's time is
            # when the edge signed it.
            time=observed_at(body.get("observed_at"), record.time),
            region=body.get("region", ""), reporter=body.get("reporter") or device, device=device,
            source=body.get("source", ""),
        )
    if record.kind == "reading":
        return SensorReading(
            id=rid, site=body["site"], sensor=body.get("sensor", ""), time=record.time,
            arrived_at=arrived_at, temp_cc=body.get("temp_cc"), rh_cp=body.get("rh_cp"),
            crowd=body.get("crowd"),
        )
    return FieldNote(
        id=rid, text=body["text"], market=body.get("market") or body.get("site", ""),
        commodity=body.get("commodity", ""), author=body.get("author") or device, time=record.time,
        arrived_at=arrived_at,
    )
