"""The edge's wall clock, watched for steps within one boot.

A Raspberry Pi has no real-time clock: it boots at the time it last saved (fake-hwclock), and NTP sets it right
once the network comes, or a technician does by hand. The records signed before were dated by a clock off by that
step. The watch notes each step (the wall clock moving against the boot-time clock, which only ticks), the log
writer notes the first record dated after it (`GroupCommit.steps`), and the sync tells the hub (`?steps=`), which
dates the records before a step by the clock as it was then (hub/clock.py, `BootSteps`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# The wall clock moved this far against the boot-time clock between two readings: a step. NTP slews smaller
# differences (at most 0.5 ms a second), and a step this small moves no record's time in any analytics.
STEP_S = 60


def _boottime() -> float:
    """Seconds since boot, suspended time included (as the wall clock counts it), never set."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class ClockWatch:
    """The wall clock in whole Unix seconds (a drop-in for `lambda: int(time.time())`), and how far it has stepped
    in all since the watch began (`moved`). Read from the event loop and from threads."""

    def __init__(self, wall: Callable[[], float] = time.time, ticks: Callable[[], float] | None = None,
                 step_s: float = STEP_S) -> None:
        self._wall = wall
        self._ticks = ticks or (_boottime if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic)
        self.step_s = step_s
        self._drift: float | None = None  # wall less ticks at the last reading
        self._moved = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        now = self._wall()
        drift = now - self._ticks()
        with self._lock:
            if self._drift is not None and abs(drift - self._drift) >= self.step_s:
                self._moved += drift - self._drift
            self._drift = drift
        return int(now)

    def moved(self) -> float:
        """Seconds the wall clock has stepped in all (forward positive), as its readings so far found: read right
        after a reading, what the clock had stepped by when it gave that time."""
        with self._lock:
            return self._moved
