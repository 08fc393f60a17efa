"""Waiting in tests: poll a condition until it holds or a deadline passes, instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# A deadline is what an idle machine needs; a busy CI machine (two cores, other work) gets this many times it.
# Waits end as soon as their condition holds, so patience only makes a real failure take longer to report.
PATIENCE = float(os.environ.get("JEJAK_TEST_PATIENCE", "3"))


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


async def wait_for(predicate: Callable[[], T], timeout: float = 10.0, *, what: str = "the condition",
                   step: float = 0.02) -> T:
    """The first truthy value of `predicate()`, polled on the event loop; fails the test after `timeout` s
    (times PATIENCE)."""
    timeout *= PATIENCE
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, value)
        await asyncio.sleep(step)


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, *, what: str = "the condition",
               step: float = 0.05, tolerate: tuple[type[BaseException], ...] = ()) -> T:
    """The same from a thread without a loop; exceptions of the `tolerate` types count as "not yet"."""
    timeout *= PATIENCE
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except tolerate as exc:
            last = exc
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, last)
        time.sleep(step)
