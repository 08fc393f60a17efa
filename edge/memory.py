"""Keeping the edge's resident memory flat under load: few C heaps, freed memory handed back, the store's
pages unmapped."""

from __future__ import annotations

import asyncio
import ctypes
import sys
from typing import Protocol

_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None
RELEASE_EVERY_S = 0.5
TRIM_EVERY_S = 2.0


class Releasing(Protocol):
    def release_pages(self) -> None: ...


def limit_arenas(arenas: int = 2) -> None:
    """Let every thread share `arenas` C heaps. glibc gives each thread that allocates a heap of its own (up to
    8 a core), and each keeps what was freed in it; the edge's threads (the LMDB writer, the pool behind
    `asyncio.to_thread`) allocate little, so more heaps only hold more free memory. Call it before any thread
    starts; a C library without mallopt (musl) is left as it is."""
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, arenas)


def trim_heap() -> None:
    """Hand the C heaps' free pages back to the kernel (glibc's malloc_trim), as a long run of requests leaves
    them fragmented; no-op elsewhere."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


async def keep_flat(store: Releasing, every_s: float = RELEASE_EVERY_S, trim_every_s: float = TRIM_EVERY_S) -> None:
    """Every `every_s`, unmap the store's pages (`LmdbLogStore.release_pages`), and every `trim_every_s` trim
    the C heaps, off the event loop. The store's pages come back 64 KB at a time as requests read it, so what
    is mapped in grows with the time between two releases; a release is one madvise, cheap enough to run
    often. Trimming walks every free chunk of the heaps, so it runs less often."""
    loop = asyncio.get_running_loop()
    trim_at = loop.time() + trim_every_s
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(store.release_pages)
        if loop.time() >= trim_at:
            await asyncio.to_thread(trim_heap)
            trim_at = loop.time() + trim_every_s
