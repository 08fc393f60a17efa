"""Pauses of Python's cycle collector around work that makes many objects and no reference cycles.

The collector runs when allocations outnumber frees by its threshold, and each run walks every tracked object
not yet promoted, then, less often, everything the process holds. MBG reconciling makes millions of rows and no
reference cycles; the walks over them found nothing and took a third of its time. Pauses may overlap, from
several threads (the hub's views and the stored days' settling): the collector comes back when the last one
ends, if it was on when the first began.

The hub's writer defers the collector instead (`collection_deferred`): its merges come back to back under a
steady stream of pushes, so counting overlapping pauses could keep the collector off for as long as the stream
lasts.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0
_resume = False


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """No cycle collection while the block runs (nor while another thread's pause runs)."""
    global _paused, _resume
    with _lock:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()


@contextmanager
def collection_deferred() -> Iterator[None]:
    """No cycle collection while the block runs, and the collector back on as soon as any such block ends, even
    while another thread's still runs: off for one block at a time, never for a stream of overlapping ones. The
    collection runs at the first allocation after the block; nothing is collected later than that. A collector
    that was off stays off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
