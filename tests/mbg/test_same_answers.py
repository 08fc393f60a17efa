"""Every simulated scenario over two days, asked as its records arrive, gives the answers recorded in
`fixtures/answers.json`: deliveries, findings, food-safety violations, container timelines and the summary,
byte for byte. The fixture was written before the containers of one delivery were reconciled together
(hub.mbg.analysis works a trip's findings out once for every container with the same taps)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.mbg import SCENARIOS, MbgView
from hub.mbg.analysis import timeline_of
from hub.mbg.plan import local_midnight
from hub.mbg.sim import simulate_days

FIXTURE = Path(__file__).parent / "fixtures" / "answers.json"
# When to ask, in hours after each day's local midnight: trucks on the road and timers running, deliveries
# settling, the day closed.
ASK_AT_H = (9.5, 11.0, 13.0, 20.0)


def _answers(view: MbgView, now: int, dates: list[str]) -> dict[str, Any]:
    a = view.analysis(now)
    return {
        "days": {d: {"deliveries": [x.to_dict() for x in view.deliveries(now, d)],
                     "findings": [f.to_dict() for f in view.findings(now, d)],
                     "violations": [v.to_dict() for v in view.violations(now, d)]} for d in dates},
        "findings": [f.to_dict() for f in view.findings(now)],
        "timelines": [timeline_of(t).to_dict() for _, t in sorted(a.trips.items())],
        "summary": view.summary(now),
    }


def case_digest(scenario: str) -> str:
    """Two days of `scenario` taken in in arrival order, asked about at each of ASK_AT_H on each day."""
    sims = simulate_days(2, scenario=scenario, seed=3, kitchens=2, schools_per_kitchen=3, meals_per_kitchen=600)
    records = sorted((r for s in sims for r in s.records), key=lambda r: (r.arrived_at, r.device, r.seq))
    asks = sorted(local_midnight(s.date, 7 * 3600) + int(h * 3600) for s in sims for h in ASK_AT_H)
    view = MbgView(sims[0].plan)
    out = []
    i = 0
    for now in asks:
        while i < len(records) and records[i].arrived_at <= now:
            view.ingest(records[i], records[i].arrived_at)
            i += 1
        out.append(_answers(view, now, [s.date for s in sims]))
    assert view.rejected == []
    text = json.dumps(out, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_answers_are_the_recorded_ones(scenario: str) -> None:
    recorded = json.loads(FIXTURE.read_text())
    assert case_digest(scenario) == recorded[scenario], f"{scenario}: answers differ from {FIXTURE.name}"


if __name__ == "__main__":  # writes the fixture: only when a change of answers is meant
    FIXTURE.write_text(json.dumps({s: case_digest(s) for s in SCENARIOS}, indent=1) + "\n")
    sys.stdout.write(f"wrote {FIXTURE}\n")
