"""Pauses of Python's cycle collector around work that makes many objects and no reference cycles.

The collector runs when allocations outnumber frees by its threshold, and each run walks every tracked object
not yet promoted, then, less often, everything the process holds. The hub's writer keeps a call's records,
bodies and tuples until they are committed, and its read models reconcile days of taps into millions of rows:
neither makes a cycle, and the collector's walks over them found nothing and cost the writer about a tenth of
its time. Pauses may overlap, from several threads: the collector comes back when the last one ends, if it was
on when the first began, and then collects what the pause let pass.
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
