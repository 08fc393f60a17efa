"""The hub's time: wall time, or a clock set to a past instant (and a pace) for replaying and backfilling days."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .journal import Lines
from .store import StoreError

log = logging.getLogger("jejak.hub")

MAX_STEP_S = 86_400
# With a pace, a record moves the clock only if most of the devices heard within a day of the replay agree:
# its time is at most QUORUM_LEAD_S ahead of the median of what they say now (each one's newest record time,
# carried forward at the pace since). Asked of QUORUM_DEVICES or more; HEARD_DEVICES are remembered at most.
QUORUM_DEVICES = 3
QUORUM_LEAD_S = 300
HEARD_DEVICES = 256
CLOCK_HELP = ("'wall' (default), or '<ISO instant> [xSPEED] [records]': start at that instant (e.g. "
              "2026-03-02T05:30+07:00) and run SPEED times as fast as the wall clock (default x1); with 'records' "
              "the clock stands still unless a SPEED is given and moves forward to each accepted record's own "
              "time, so a past day pushed in bulk is judged as it happened (with a SPEED, only as far as most "
              "devices agree: one device's fast clock does not move it)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockSpec:
    """What a `clock` setting says. `start` None is wall time."""

    start: int | None = None
    speed: float = 1.0
    follow_records: bool = False

    @property
    def wall(self) -> bool:
        return self.start is None and not self.follow_records


def parse_clock(text: str) -> ClockSpec:
    """'wall' | '<ISO 8601 instant with offset> [xSPEED] [records]' -> ClockSpec."""
    words = text.split()
    if not words or words == ["wall"]:
        return ClockSpec()
    try:
        instant = dt.datetime.fromisoformat(words[0])
    except ValueError:
        raise ValueError(f"clock: expected 'wall' or an ISO instant first, got {words[0]!r}: {CLOCK_HELP}") from None
    if instant.tzinfo is None:
        raise ValueError(f"clock: {words[0]!r} has no UTC offset; add one, e.g. +07:00 for WIB")
    speed: float | None = None
    follow = False
    for word in words[1:]:
        if word == "records" and not follow:
            follow = True
        elif word.startswith("x") and speed is None:
            try:
                speed = float(word[1:])
            except ValueError:
                speed = -1.0
            if not speed >= 0:
                raise ValueError(f"clock: expected a speed like x60, got {word!r}: {CLOCK_HELP}")
        else:
            raise ValueError(f"clock: unexpected {word!r}: {CLOCK_HELP}")
    if speed is None:
        speed = 0.0 if follow else 1.0
    return ClockSpec(start=int(instant.timestamp()), speed=speed, follow_records=follow)


class HubClock:
    """A callable giving the hub's time in whole Unix seconds.

    Wall time by default. With a start it runs from that instant at `speed` times the wall clock, and at 1x
    again after `slow_after` (the demo plays its school day fast, then lets the evening pass in real time).
    With `follow_records` it never stands behind the newest record time the hub accepted (`saw`), unless it
    has a pace and that time is one device's alone: a device whose clock runs hours fast does not drag the
    day forward for the others (their deliveries would look late and their schools' look missing). `set(t)`
    pins it at `t` (tests; `set(None)` lets it run again). Monotonic in between: never goes back on its own.
    """

    def __init__(self, spec: ClockSpec | None = None, *, slow_after: int | None = None,
                 wall: Callable[[], float] = time.time, ticks: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec or ClockSpec()
        self.slow_after = slow_after
        self._wall, self._ticks = wall, ticks
        self._t0 = ticks()
        self._newest = self.spec.start or 0
        self._pinned: int | None = None
        self._lock = threading.Lock()
        self._heard: OrderedDict[bytes, tuple[int, float]] = OrderedDict()  # device: (newest time, ticks heard)

    def __call__(self) -> int:
        if self._pinned is not None:
            return self._pinned
        start = self.spec.start
        if start is None:
            now = int(self._wall())
        else:
            sim = start + (self._ticks() - self._t0) * self.spec.speed
            if self.slow_after is not None and sim > self.slow_after and self.spec.speed > 0:
                sim = self.slow_after + (sim - self.slow_after) / self.spec.speed
            now = int(sim)
        return max(now, self._newest) if self.spec.follow_records else now

    def saw(self, record_time: int, device: bytes | None = None) -> None:
        """A record made at `record_time` (by `device`) was accepted: a clock that follows records moves up to
        it. A time more than a day ahead of the clock is a device's wrong clock, not time passing, and moves
        nothing; with a pace, neither does a time well ahead of what most devices heard say (`_outvoted`).

        Without a pace there is no telling a fast clock from a device whose backlog comes first: a day
        backfilled one device after another moves the clock to each one's times in turn."""
        if not self.spec.follow_records or record_time - self() > MAX_STEP_S:
            return
        with self._lock:
            if device is not None and self.spec.speed > 0 and self._outvoted(device, record_time):
                return
            self._newest = max(self._newest, record_time)

    def _outvoted(self, device: bytes, record_time: int) -> bool:
        """Note that `device` said `record_time`; whether that is more than QUORUM_LEAD_S ahead of the median of
        what the devices heard within a day say now. Under the lock."""
        ticks = self._ticks()
        newest, _ = self._heard.pop(device, (record_time, ticks))
        self._heard[device] = (max(newest, record_time), ticks)
        while len(self._heard) > HEARD_DEVICES:
            self._heard.popitem(last=False)
        if record_time <= self._newest:  # it would not move the clock: nothing to vote on
            return False
        # Each device's newest time, carried forward at the pace since it was heard: a device idle since its
        # last tap still says what time it is.
        says = sorted(t + (ticks - at) * self.spec.speed for t, at in self._heard.values()
                      if (ticks - at) * self.spec.speed <= MAX_STEP_S)
        return len(says) >= QUORUM_DEVICES and record_time > says[len(says) // 2] + QUORUM_LEAD_S

    def set(self, t: int | None) -> None:
        """Pin the clock at `t` (None: run again from where its spec says)."""
        self._pinned = t

    def skip_to(self, t: int) -> None:
        """Run on from `t` at the same pace (the demo's --once jumps to the end of its day)."""
        if self.spec.start is None or self.spec.speed <= 0:
            raise ValueError("clock: only a clock started at an instant with a speed can skip ahead")
        self._t0 = self._ticks() - (t - self.spec.start) / self.spec.speed


def clock_setting(text: str) -> str:
    """An argparse type for --clock: the text, checked now so a bad one is a usage error naming the form."""
    try:
        parse_clock(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


@dataclass(frozen=True, slots=True)
class DeviceClock:
    """What a device's clock said when it last synced: its offset from the hub's clock (device now minus hub now,
    at the request; the request's latency, milliseconds on a LAN, makes it that much early) and the hub time."""

    offset_s: int
    measured_at: int


def _lines_of(kept: dict[bytes, DeviceClock]) -> list[dict[str, Any]]:
    return [{"device": d.hex(), "offset_s": c.offset_s, "measured_at": c.measured_at} for d, c in sorted(kept.items())]


class DeviceClocks:
    """Each device's clock as measured at its last sync (sync's heads request says the device's time). Thread-safe;
    at most `cap` devices, the longest unheard dropped first. `limit_s` is how far off a clock may be before it is
    said (the MBG plan's `[clock] max_skew_s`, set by the read models). With `path`, the clocks found off are kept
    in that file as they change, so a restarted hub says what it said before; the others are known again at each
    device's next round. A hub whose store keeps journals (PostgreSQL) keeps them there instead (`keep_in`)."""

    def __init__(self, cap: int = 100_000, limit_s: int = 900, path: Path | None = None) -> None:
        self.cap, self.limit_s, self.path = cap, limit_s, path
        self._lock = threading.Lock()
        self._clocks: OrderedDict[bytes, DeviceClock] = OrderedDict()
        self._kept: dict[bytes, DeviceClock] = {}
        self._lines: Lines | None = None
        if path is not None:
            self._kept = self._read(path)
            self._clocks.update(self._kept)

    @staticmethod
    def _read(path: Path) -> dict[bytes, DeviceClock]:
        """The off clocks kept in `path`; none when it is missing or not ours (it only says what is wrong)."""
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
            return {bytes.fromhex(d): DeviceClock(offset_s=int(o), measured_at=int(t)) for d, o, t in items}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("the device clocks kept in %s cannot be read (%s); each device's clock is known again at "
                        "its next sync", path, exc)
            return {}

    def file_items(self) -> list[dict[str, Any]]:
        """The off clocks the file `path` holds (read at start, written since), as the lines `keep_in` keeps: for
        carrying the file over."""
        return _lines_of(self._kept)

    def keep_in(self, lines: Lines) -> None:
        """Keep the off clocks in `lines` (the hub's store) from now on, instead of the file: what they hold is
        known at once, as the file's was at start."""
        kept: dict[bytes, DeviceClock] = {}
        try:
            for item in lines.read():
                kept[bytes.fromhex(item["device"])] = DeviceClock(offset_s=int(item["offset_s"]),
                                                                  measured_at=int(item["measured_at"]))
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("the device clocks kept in %s cannot be read (%s); each device's clock is known again at "
                        "its next sync", lines.where, exc)
            kept = {}
        with self._lock:
            for device_id, clock in kept.items():
                if device_id not in self._clocks:  # a clock measured since start is newer
                    self._clocks[device_id] = clock
            self._kept, self._lines = kept, lines

    def _keep(self, device_id: bytes, clock: DeviceClock) -> None:
        """Write the off clocks when this device's changed: it went off, came right, or moved by a minute."""
        was = self._kept.get(device_id)
        off = abs(clock.offset_s) > self.limit_s
        if (was.offset_s // 60 if was else None) == (clock.offset_s // 60 if off else None):
            return
        kept = {**self._kept, device_id: clock} if off else {d: c for d, c in self._kept.items() if d != device_id}
        try:
            if self._lines is not None:
                self._lines.rewrite(_lines_of(kept))
            else:
                assert self.path is not None
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(json.dumps(sorted([d.hex(), c.offset_s, c.measured_at] for d, c in kept.items())),
                               encoding="utf-8")
                os.replace(tmp, self.path)
            self._kept = kept
        except (OSError, StoreError) as exc:
            log.warning("the device clocks could not be kept in %s (%s); a restart knows them again at each "
                        "device's next sync", self._lines.where if self._lines is not None else self.path, exc)

    def saw(self, device_id: bytes, device_now: int, hub_now: int) -> DeviceClock:
        clock = DeviceClock(offset_s=device_now - hub_now, measured_at=hub_now)
        with self._lock:
            self._clocks.pop(device_id, None)
            self._clocks[device_id] = clock
            while len(self._clocks) > self.cap:
                self._clocks.popitem(last=False)
            if self.path is not None or self._lines is not None:
                self._keep(device_id, clock)
        return clock

    def off(self, limit_s: int | None = None) -> list[tuple[bytes, DeviceClock]]:
        """The devices whose clock was off by more than `limit_s` (default `self.limit_s`) either way at their last
        sync, by device id."""
        limit_s = self.limit_s if limit_s is None else limit_s
        with self._lock:
            return sorted((d, c) for d, c in self._clocks.items() if abs(c.offset_s) > limit_s)
