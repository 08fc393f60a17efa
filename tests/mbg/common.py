"""Constants shared by the MBG tests: the simulated service day and time units."""

from __future__ import annotations

from hub.mbg.plan import local_midnight

DATE = "2026-01-12"  # a Monday
MIDNIGHT = local_midnight(DATE, 7 * 3600)
H = 3600
M = 60
