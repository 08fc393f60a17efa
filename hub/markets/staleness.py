"""How old a series' last report is, and whether that is older than its reporters usually leave it: what a
forecast, a map band and an early warning say beside their figures when a market has gone silent."""

from __future__ import annotations

import json
from collections.abc import Sequence
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

# The sentence beside a stale series' figures, in the dashboard's words (both languages, one home).
WORDS: dict[str, str] = {lang: words["say.stale_series"] for lang, words in json.loads(
    (Path(__file__).parents[1] / "static" / "words.json").read_text(encoding="utf-8")).items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Freshness:
    last_day: int  # the last day with an accepted report
    today: int  # the day it was judged on
    usual_gap: int  # days between reports the series usually leaves

    @property
    def days(self) -> int:
        """Days since the last report."""
        return max(0, self.today - self.last_day)

    @property
    def after(self) -> int:
        """Days since the last report beyond which the series is stale."""
        return max(STALE_DAYS, self.usual_gap)

    @property
    def stale(self) -> bool:
        return self.days > self.after

    def words(self, lang: str) -> str:
        return WORDS[lang].format(date=date_of(self.last_day).isoformat(), days=self.days)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stale": self.stale, "last_report": date_of(self.last_day).isoformat(),
                               "last_report_day": self.last_day, "days_since": self.days,
                               "stale_after_days": self.after}
        if self.stale:
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


def freshness(report_days: Sequence[int], today: int) -> Freshness:
    """How fresh a series is on `today`, from its report days in ascending order (at least one)."""
    return Freshness(last_day=int(report_days[-1]), today=today, usual_gap=usual_gap(report_days))
