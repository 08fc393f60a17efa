"""Pauses of Python's cycle collector around work that makes many objects and no reference cycles.

The collector runs when allocations outnumber frees by its threshold, and each run walks every tracked object
not yet promoted, then, less often, everything the process holds. MBG reconciling makes millions of rows and no
reference cycles; the walks over them found nothing and took a third of its time. Pauses may overlap, from
several threads (the hub's views and the stored days' settling): the collector comes back when the last one
ends, if it was on when the first began.
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
