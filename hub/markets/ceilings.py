"""Government price ceilings (HET) and reference prices (HAP) as a configurable table with their regulations:
compliance findings, never reasons to quarantine a price."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .calendar import date_of, day_number
from .errors import BadInputFile

KINDS = ("HET", "HAP")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ceiling:
    commodity: str
    grade: str
    unit: str
    ceiling_idr: int
    kind: str  # "HET" is a legal ceiling; "HAP" a reference price
    regions: tuple[str, ...]  # provinces (admin1); ("*",) for all
    valid_from: int  # local day number
    valid_to: int | None
    source: str  # the regulation that sets the value
    note: str = ""
    url: str = ""  # where the regulation or its announcement can be read

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInputFile(f"ceiling kind: expected one of {list(KINDS)}, got {self.kind!r}")
        if isinstance(self.ceiling_idr, bool) or not isinstance(self.ceiling_idr, int) or self.ceiling_idr < 1:
            raise BadInputFile(f"ceiling_idr: expected a positive int of rupiah, got {self.ceiling_idr!r}")
        if not self.source:
            raise BadInputFile(f"ceiling for {self.commodity}: expected a source, got none",
                               hint="name the regulation so an auditor can check the number")

    def applies(self, region: str, day: int) -> bool:
        if day < self.valid_from or (self.valid_to is not None and day > self.valid_to):
            return False
        return "*" in self.regions or region in self.regions

    def to_dict(self) -> dict[str, Any]:
        return {"commodity": self.commodity, "grade": self.grade, "unit": self.unit,
                "ceiling_idr": self.ceiling_idr, "kind": self.kind, "source": self.source,
                "valid_from": date_of(self.valid_from).isoformat(), "url": self.url}


class CeilingTable:
    """Looks up the ceiling in force for a commodity grade and unit in a province on a day."""

    def __init__(self, entries: list[Ceiling]) -> None:
        self._by_key: dict[tuple[str, str, str], list[Ceiling]] = {}
        for e in entries:
            self._by_key.setdefault((e.commodity, e.grade, e.unit), []).append(e)

    def lookup(self, commodity: str, grade: str, unit: str, region: str, day: int) -> Ceiling | None:
        best = None
        for e in self._by_key.get((commodity, grade, unit), ()):
            # A province-specific entry beats a nationwide one; the newest beats older ones.
            if e.applies(region, day) and (
                best is None or ("*" in best.regions and "*" not in e.regions)
                or (("*" in best.regions) == ("*" in e.regions) and e.valid_from > best.valid_from)
            ):
                best = e
        return best

    def entries(self, commodity: str, grade: str, unit: str) -> tuple[Ceiling, ...]:
        return tuple(self._by_key.get((commodity, grade, unit), ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "ceilings") -> CeilingTable:
        zones = data.get("zones", {})
        out = []
        for i, raw in enumerate(data.get("entries", [])):
            try:
                regions = tuple(zones[raw["zone"]]) if "zone" in raw else tuple(raw.get("regions", ["*"]))
                out.append(Ceiling(
                    commodity=raw["commodity"], grade=raw.get("grade", ""), unit=raw["unit"],
                    ceiling_idr=raw["ceiling_idr"], kind=raw["kind"], regions=regions,
                    valid_from=day_number(raw.get("valid_from", "1970-01-01")),
                    valid_to=day_number(raw["valid_to"]) if raw.get("valid_to") else None,
                    source=raw.get("source", ""), note=raw.get("note", ""), url=raw.get("url", ""),
                ))
            except KeyError as e:
                raise BadInputFile(f"{where} entry {i}: missing field {e.args[0]!r}", where=where) from None
        return cls(out)

    @classmethod
    def load(cls, path: str | Path | None = None) -> CeilingTable:
        """The table in `path`, or the one shipped with Jejak (data/ceilings.json)."""
        if path is None:
            text = resources.files("hub.markets").joinpath("data/ceilings.json").read_text("utf-8")
            where = "hub/markets/data/ceilings.json"
        else:
            text, where = Path(path).read_text("utf-8"), str(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BadInputFile(f"{where}: expected JSON, found an error at line {e.lineno}: {e.msg}") from None
        return cls.from_dict(data, where)
