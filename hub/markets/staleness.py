"""How old a series' last report is, and whether that is older than its reporters usually leave it: what a
forecast, a map band and an early warning say beside their figures when a market has gone silent, or when its
reports arrive but are held in quarantine waiting for an operator's decision (held, not stale)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .calendar import date_of

# A series is stale once its last report is more than this many days old, or more than its usual gap when
# that is longer (a market reported weekly). Jakarta's enumerators leave two days over a Sunday and three
# over a Sunday next to a holiday; four or more happen only over the long closures (Imlek, Lebaran) and
# when a market goes silent.
STALE_DAYS = 3
USUAL_GAP_DAYS = 90  # the gaps the usual one is read from: the last quarter's
USUAL_GAP_SHARE = 0.95  # the usual gap: the one 95 % of the gaps are no longer than

# The sentences beside a stale or held series' figures, in the dashboard's words (both languages, one home).
_DASHBOARD_WORDS = json.loads((Path(__file__).parents[1] / "static" / "words.json").read_text(encoding="utf-8"))
WORDS: dict[str, str] = {lang: words["say.stale_series"] for lang, words in _DASHBOARD_WORDS.items()}
HELD_WORDS: dict[str, str] = {lang: words["say.held_series"] for lang, words in _DASHBOARD_WORDS.items()}
# A series' run of held reports told to a webhook subscriber, and its end.
HELD_RUN_WORDS: dict[str, str] = {lang: words["say.held_run"] for lang, words in _DASHBOARD_WORDS.items()}
HELD_ENDED_WORDS: dict[str, str] = {lang: words["say.held_run_ended"] for lang, words in _DASHBOARD_WORDS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldRun:
    """A series' reports held in quarantine, waiting for a decision, on the reported days after its last accepted
    one: the market reports, but nothing it said counts yet."""

    first_day: int  # the first of those days
    last_day: int  # the latest of them
    days: int  # reported days in the run, each holding a report waiting for a decision
    reports: int  # reports waiting for a decision on those days

    def words(self, lang: str) -> str:
        return HELD_WORDS[lang].format(reports=self.reports, date=date_of(self.first_day).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {"held_reports": self.reports, "held_days": self.days,
                "held_since": date_of(self.first_day).isoformat(), "held_since_day": self.first_day}


@dataclass(frozen=True, slots=True, kw_only=True)
class Freshness:
    last_day: int  # the last day with an accepted report
    today: int  # the day it was judged on
    usual_gap: int  # days between reports the series usually leaves
    run: HeldRun | None = None  # its reports since the last accepted one that wait for a decision

    @property
    def days(self) -> int:
        """Days since the last report."""
        return max(0, self.today - self.last_day)

    @property
    def after(self) -> int:
        """Days since the last report beyond which the series is stale."""
        return max(STALE_DAYS, self.usual_gap)

    @property
    def held(self) -> bool:
        """The market still reports, but its reports since the last accepted one wait in quarantine: what the
        figures lack is an operator's decision, not a report."""
        return self.run is not None and self.today - self.run.last_day <= self.after

    @property
    def stale(self) -> bool:
        return self.days > self.after and not self.held

    def words(self, lang: str) -> str:
        if self.held:
            assert self.run is not None
            return self.run.words(lang)
        return WORDS[lang].format(date=date_of(self.last_day).isoformat(), days=self.days)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stale": self.stale, "held": self.held,
                               "last_report": date_of(self.last_day).isoformat(),
                               "last_report_day": self.last_day, "days_since": self.days,
                               "stale_after_days": self.after}
        if self.held:
            assert self.run is not None
            out.update(self.run.to_dict())
        if self.stale or self.held:
            out["words"] = {lang: self.words(lang) for lang in WORDS}
        return out


def usual_gap(report_days: Sequence[int]) -> int:
    """The gap between consecutive report days that 95 % of the last quarter's gaps do not exceed (1 when
    there are fewer than two reports to measure)."""
    if len(report_days) < 2:
        return 1
    days = np.asarray(report_days, np.int64)
    days = days[days >= days[-1] - USUAL_GAP_DAYS]
    gaps = np.diff(days)
    if not len(gaps):
        return 1
    return int(np.quantile(gaps, USUAL_GAP_SHARE, method="higher"))


def held_run(reported: Mapping[int, int], after_day: int) -> HeldRun | None:
    """The run of reported days after `after_day` (the last accepted one) that each hold reports waiting for a
    decision, counted back from the latest reported day; `reported` gives each reported day's count of such
    reports (0 for a day reported but not waiting: its reports were decided). None when the latest has none."""
    first = last = None
    days = reports = 0
    for day in sorted((d for d in reported if d > after_day), reverse=True):
        if not reported[day]:
            break
        first, last = day, last if last is not None else day
        days += 1
        reports += reported[day]
    if first is None or last is None:
        return None
    return HeldRun(first_day=first, last_day=last, days=days, reports=reports)


def freshness(report_days: Sequence[int], today: int, run: HeldRun | None = None) -> Freshness:
    """How fresh a series is on `today`, from its report days in ascending order (at least one) and the run of
    its reports held since, if any."""
    return Freshness(last_day=int(report_days[-1]), today=today, usual_gap=usual_gap(report_days), run=run)
