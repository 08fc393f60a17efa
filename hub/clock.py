"""The hub's time: wall time, or a clock set to a past instant (and a pace) for replaying and backfilling days."""

from __future__ import annotations

import argparse
import dataclasses
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
        sim: float = t
        if self.slow_after is not None and t > self.slow_after:  # past it the clock runs `speed` times slower
            sim = self.slow_after + (t - self.slow_after) * self.spec.speed
        self._t0 = self._ticks() - (sim - self.spec.start) / self.spec.speed


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


# A device's clock measured off by about the same offset (within SPAN_SLACK_S) in one boot is one span; at most
# SPANS_KEPT spans a device are kept, and a closed one for SPAN_KEPT_S after it closed (records arriving later
# than that are not timed by it: the analytics window and a sync's longest delay are shorter).
SPAN_SLACK_S = 60
SPANS_KEPT = 8
SPAN_KEPT_S = 45 * 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockSpan:
    """A stretch of hub time over which a device's clock was measured off by `offset_s`: from `since` to `until`
    (None: still so at its last sync), in the boot the device said it was in (`boot`, None if it did not say), on
    requests its OSCORE context proved or not (`proved`). A record of that boot that arrived within the span was
    made by that clock (`DeviceClocks.offset_at`)."""

    offset_s: int
    since: int
    until: int | None
    boot: int | None
    proved: bool

    def line(self, device_id: bytes) -> dict[str, Any]:
        return {"device": device_id.hex(), "offset_s": self.offset_s, "measured_at": self.since,
                "since": self.since, "until": self.until, "boot": self.boot, "proved": self.proved}


@dataclass(frozen=True, slots=True, kw_only=True)
class BootSteps:
    """Where a device's wall clock stepped within its boot `boot`, as it said at a sync (`?steps=`): each `(seq,
    seconds)` names the first record it made after its clock moved by that many seconds (a Raspberry Pi without a
    real-time clock boots at the time it last saved, and NTP sets it right once the network comes, or someone does
    by hand). `offset_s` is its clock's offset measured at that sync, after the last step: a record made before a
    step was made by a clock off by that offset less the steps after it."""

    boot: int
    offset_s: int
    measured_at: int
    steps: tuple[tuple[int, int], ...]  # (seq, seconds), seq increasing
    proved: bool

    def offset_before(self, seq: int) -> int | None:
        """The offset of the clock that made record `seq` of the boot, when a step came after it; None from the
        last step on (the clock measured at the sync made those)."""
        if not self.steps or seq >= self.steps[-1][0]:
            return None
        return self.offset_s - sum(seconds for at, seconds in self.steps if at > seq)

    def line(self, device_id: bytes) -> dict[str, Any]:
        return {"device": device_id.hex(), "boot": self.boot, "steps_offset_s": self.offset_s,
                "measured_at": self.measured_at, "steps": [list(step) for step in self.steps], "proved": self.proved}


def _steps_of(item: dict[str, Any]) -> tuple[bytes, BootSteps]:
    """A kept line of `BootSteps.line` back. Raises KeyError, ValueError or TypeError."""
    steps = tuple((int(at), int(seconds)) for at, seconds in item["steps"])
    return bytes.fromhex(item["device"]), BootSteps(boot=int(item["boot"]), offset_s=int(item["steps_offset_s"]),
                                                    measured_at=int(item["measured_at"]), steps=steps,
                                                    proved=item.get("proved") is True)


def _span_of(item: Any) -> tuple[bytes, ClockSpan]:
    """A kept line back: a dict as `ClockSpan.line` writes it, or an earlier hub's (device, offset, measured at)
    of a clock found off (a span open since then, its boot unknown). Raises KeyError, ValueError or TypeError."""
    if isinstance(item, list):
        device, offset, at = item
        item = {"device": device, "offset_s": offset, "measured_at": at}
    until, boot = item.get("until"), item.get("boot")
    span = ClockSpan(offset_s=int(item["offset_s"]), since=int(item.get("since", item["measured_at"])),
                     until=None if until is None else int(until), boot=None if boot is None else int(boot),
                     proved=item.get("proved") is True)
    return bytes.fromhex(item["device"]), span


def _lines_of(spans: dict[bytes, tuple[ClockSpan, ...]], steps: dict[bytes, BootSteps]) -> list[dict[str, Any]]:
    return ([s.line(d) for d, kept in sorted(spans.items()) for s in kept]
            + [b.line(d) for d, b in sorted(steps.items())])


class DeviceClocks:
    """Each device's clock as measured at its last sync (sync's heads request says the device's time, and its
    boot). Thread-safe; at most `cap` devices, the longest unheard dropped first. `limit_s` is how far off a clock
    may be before it is said (the MBG plan's `[clock] max_skew_s`, set by the read models).

    The stretches of time over which a device's clock was off (`ClockSpan`) are kept, so that its records are
    timed by the hub's measure of its clock (`offset_at`). With `path` they are kept in that file as they
    change, so a restarted hub says and corrects what it did before; the clocks found right are known again at
    each device's next round. A hub whose store keeps journals (PostgreSQL) keeps them there instead
    (`keep_in`)."""

    def __init__(self, cap: int = 100_000, limit_s: int = 900, path: Path | None = None) -> None:
        self.cap, self.limit_s, self.path = cap, limit_s, path
        self._lock = threading.Lock()
        self._clocks: OrderedDict[bytes, DeviceClock] = OrderedDict()
        # Replaced, never changed in place: `offset_at` reads them without the lock.
        self._spans: dict[bytes, tuple[ClockSpan, ...]] = {}
        self._steps: dict[bytes, BootSteps] = {}  # each device's steps in its latest boot that said any
        self._lines: Lines | None = None
        if path is not None:
            self._spans, self._steps = self._read(path)
            self._clocks.update(self._open(self._spans))

    @staticmethod
    def _open(spans: dict[bytes, tuple[ClockSpan, ...]]) -> dict[bytes, DeviceClock]:
        """The clocks off at their last sync, by the spans still open."""
        return {d: DeviceClock(offset_s=kept[-1].offset_s, measured_at=kept[-1].since)
                for d, kept in sorted(spans.items()) if kept and kept[-1].until is None}

    @staticmethod
    def _kept_of(items: Any, where: Any) -> tuple[dict[bytes, tuple[ClockSpan, ...]], dict[bytes, BootSteps]]:
        spans: dict[bytes, list[ClockSpan]] = {}
        steps: dict[bytes, BootSteps] = {}
        try:
            for item in items:
                if isinstance(item, dict) and "steps" in item:
                    device_id, said = _steps_of(item)
                    steps[device_id] = said
                else:
                    device_id, span = _span_of(item)
                    spans.setdefault(device_id, []).append(span)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            log.warning("the device clocks kept in %s cannot be read (%s); each device's clock is known again at "
                        "its next sync", where, exc)
            return {}, {}
        return {d: tuple(sorted(kept, key=lambda s: s.since)) for d, kept in spans.items()}, steps

    @classmethod
    def _read(cls, path: Path) -> tuple[dict[bytes, tuple[ClockSpan, ...]], dict[bytes, BootSteps]]:
        """The spans and steps kept in `path`; none when it is missing or not ours (it only says what is wrong)."""
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, {}
        except (OSError, ValueError) as exc:
            log.warning("the device clocks kept in %s cannot be read (%s); each device's clock is known again at "
                        "its next sync", path, exc)
            return {}, {}
        return cls._kept_of(items if isinstance(items, list) else [None], path)

    def file_items(self) -> list[dict[str, Any]]:
        """The spans and steps the file `path` holds (read at start, written since), as the lines `keep_in` keeps:
        for carrying the file over."""
        return _lines_of(self._spans, self._steps)

    def keep_in(self, lines: Lines) -> None:
        """Keep the spans and steps in `lines` (the hub's store) from now on, instead of the file: what they hold
        is known at once, as the file's was at start."""
        kept, steps = self._kept_of(lines.read(), lines.where)
        with self._lock:
            for device_id, clock in self._open(kept).items():
                if device_id not in self._clocks:  # a clock measured since start is newer
                    self._clocks[device_id] = clock
            self._spans, self._steps, self._lines = {**kept, **self._spans}, {**steps, **self._steps}, lines

    def _track(self, device_id: bytes, clock: DeviceClock, boot: int | None, proved: bool) -> None:
        """Open a span when the device's clock goes off, or moves by more than SPAN_SLACK_S, or the device booted
        again; close it when the clock comes right. Written when a span opens or closes."""
        kept = self._spans.get(device_id, ())
        last = kept[-1] if kept and kept[-1].until is None else None
        off = abs(clock.offset_s) > self.limit_s
        if last is None and not off:
            return
        if (last is not None and off and abs(clock.offset_s - last.offset_s) <= SPAN_SLACK_S and last.boot == boot
                and last.proved == proved):
            return  # the same span goes on
        at = clock.measured_at
        if not proved and kept and at - max(kept[-1].since, kept[-1].until or 0) < SPAN_SLACK_S:
            return  # anyone may say an unproved time: it changes a device's spans at most once a minute
        spans = [s for s in kept if s.until is None or s.until >= at - SPAN_KEPT_S]
        if last is not None:
            spans[-1] = dataclasses.replace(last, until=at)
        if off:
            spans.append(ClockSpan(offset_s=clock.offset_s, since=at, until=None, boot=boot, proved=proved))
        changed = {**self._spans, device_id: tuple(spans[-SPANS_KEPT:])}
        while len(changed) > self.cap:
            del changed[next(iter(changed))]
        self._spans = changed
        self._write()

    def _track_steps(self, device_id: bytes, clock: DeviceClock, boot: int, steps: tuple[tuple[int, int], ...],
                     proved: bool) -> None:
        """Keep the steps a device said of its boot `boot` with the offset measured with them; written when they
        change (other steps, another boot, or an offset moved by more than SPAN_SLACK_S)."""
        known = self._steps.get(device_id)
        if (known is not None and known.boot == boot and known.steps == steps and known.proved == proved
                and abs(known.offset_s - clock.offset_s) <= SPAN_SLACK_S):
            return
        if not proved and known is not None and clock.measured_at - known.measured_at < SPAN_SLACK_S:
            return  # as for spans: an unproved sayer changes them at most once a minute
        said = BootSteps(boot=boot, offset_s=clock.offset_s, measured_at=clock.measured_at, steps=steps,
                         proved=proved)
        changed = {**self._steps, device_id: said}
        while len(changed) > self.cap:
            del changed[next(iter(changed))]
        self._steps = changed
        self._write()

    def _write(self) -> None:
        lines = _lines_of(self._spans, self._steps)
        try:
            if self._lines is not None:
                self._lines.rewrite(lines)
            elif self.path is not None:
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(json.dumps(lines), encoding="utf-8")
                os.replace(tmp, self.path)
        except (OSError, StoreError) as exc:
            log.warning("the device clocks could not be kept in %s (%s); a restart knows them again at each "
                        "device's next sync", self._lines.where if self._lines is not None else self.path, exc)

    def saw(self, device_id: bytes, device_now: int, hub_now: int, *, boot: int | None = None,
            proved: bool = False, steps: tuple[tuple[int, int], ...] = ()) -> DeviceClock:
        """A device said its time (and its boot, and where its clock stepped in that boot) at `hub_now`, on a
        request its OSCORE context proved or not."""
        clock = DeviceClock(offset_s=device_now - hub_now, measured_at=hub_now)
        with self._lock:
            self._clocks.pop(device_id, None)
            self._clocks[device_id] = clock
            while len(self._clocks) > self.cap:
                self._clocks.popitem(last=False)
            self._track(device_id, clock, boot, proved)
            if steps and boot is not None:
                self._track_steps(device_id, clock, boot, steps, proved)
        return clock

    def off(self, limit_s: int | None = None) -> list[tuple[bytes, DeviceClock]]:
        """The devices whose clock was off by more than `limit_s` (default `self.limit_s`) either way at their last
        sync, by device id."""
        limit_s = self.limit_s if limit_s is None else limit_s
        with self._lock:
            return sorted((d, c) for d, c in self._clocks.items() if abs(c.offset_s) > limit_s)

    def offset_at(self, device_id: bytes, boot: int, device_time: int, arrived_at: int,
                  seq: int | None = None) -> int | None:
        """The offset of the device's clock that made a record of boot `boot`, dated `device_time` by it, that
        arrived at `arrived_at`: for record `seq` made before a step its device said of that boot (`BootSteps`),
        the offset of the clock before the step; else that of the span the arrival falls in, if the span's boot
        is the record's (or unknown). Steps or a span measured on requests that no OSCORE context proved (anyone on
        the network may say a device's time) time only the records their offset explains: dated that far off from
        their arrival, within `limit_s`. None: the record is timed as the analytics' clock policy says."""
        said = self._steps.get(device_id) if seq is not None else None
        if said is not None and said.boot == boot and seq is not None and (off := said.offset_before(seq)) is not None:
            return off if said.proved or abs(device_time - arrived_at - off) <= self.limit_s else None
        kept = self._spans.get(device_id)
        if not kept:
            return None
        for span in reversed(kept):
            if span.since - 1 <= arrived_at and (span.until is None or arrived_at <= span.until):
                if span.boot is not None and span.boot != boot:
                    return None
                if not span.proved and abs(device_time - arrived_at - span.offset_s) > self.limit_s:
                    return None
                return span.offset_s
        return None
