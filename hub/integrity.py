"""The hub's store check: record bytes against their ids and leaves, and leaves against the signed checkpoints."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from ledger import LedgerError

from .service import Hub
from .store import RESTORE_HINT, refuse_damaged

log = logging.getLogger("jejak.hub.integrity")

TILE = 64  # leaves per sampled tile: the tree's own tile height, so a tile is one read
CHUNK = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCheck:
    """What a store check looked at and what it found."""

    size: int
    checked: int
    full: bool
    signed_size: int
    roots_ok: bool
    damaged: tuple[tuple[bytes, int], ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.roots_ok and not self.damaged

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "size": self.size, "checked": self.checked, "full": self.full,
                "signed_size": self.signed_size, "roots_ok": self.roots_ok,
                "damaged": [{"device": d.hex(), "seq": s} for d, s in self.damaged],
                "seconds": round(self.seconds, 3)}


def _roots_ok(hub: Hub, *, every: bool) -> bool:
    """Whether the stored leaves still give the roots the hub signed (the last checkpoint, or `every` one)."""
    checkpoints = hub.checkpoints() if every else hub.checkpoints()[-1:]
    for cp in checkpoints:
        try:
            cp.verify(hub.signer.public_key)
            if cp.tree_size > len(hub.tree) or hub.tree.root(cp.tree_size) != cp.root:
                raise LedgerError(f"the stored leaves give another root at tree size {cp.tree_size}")
        except LedgerError as exc:
            log.error("STORE DAMAGED: checkpoint at tree size %d does not match the store: %s; run `jejak hub "
                      "verify --config HUB.toml` and restore the store from a backup or a peer hub",
                      cp.tree_size, exc)
            return False
    return True


def check_store(hub: Hub, *, full: bool = False, budget: int = 1 << 17,
                rng: random.Random | None = None) -> StoreCheck:
    """Check the store's records and leaves; note every damaged record for restore.

    The start-up pass compares the leaves with the last signed root (the tree is rebuilt from them anyway)
    and hashes the records after the last checkpoint plus random tiles of the rest, `budget` records in all;
    a store that small, or leaves that disagree with the root, get the full pass that `jejak hub verify` runs:
    every record against its leaf and id, every checkpoint's root. A damaged record that the start-up pass
    did not sample is still never served: every read checks the bytes it serves.
    """
    started = time.perf_counter()
    size = len(hub.tree)
    latest = hub.latest_checkpoint()
    signed = latest.tree_size if latest is not None else 0
    roots_ok = _roots_ok(hub, every=full)
    full = full or not roots_ok or size <= budget
    if full:
        ranges = [(start, min(start + CHUNK, size)) for start in range(0, size, CHUNK)]
    else:
        # Records past the last checkpoint are under no signed root yet: all of them. Of the rest, random
        # whole tiles (at least 64 of them), so a damaged region of any size is hit with a known chance.
        tail = min(signed, size)
        ranges = [(start, min(start + CHUNK, size)) for start in range(tail, size, CHUNK)]
        tiles = min(max((budget - (size - tail)) // TILE, 64), tail // TILE)
        pick = (rng or random.Random()).sample(range(tail // TILE), tiles)
        ranges += [(t * TILE, (t + 1) * TILE) for t in sorted(pick)]
    damaged: list[tuple[bytes, int]] = []
    checked = 0
    for start, end in ranges:
        damaged += hub.store.damaged_in(start, end)
        checked += end - start
    for device_id, seq in damaged:
        refuse_damaged(hub.store, device_id, seq)
    result = StoreCheck(size=size, checked=checked, full=full, signed_size=signed, roots_ok=roots_ok,
                        damaged=tuple(damaged), seconds=time.perf_counter() - started)
    if result.ok:
        log.info("store check: %d of %d records and the leaves under checkpoint %d are intact (%.2f s)",
                 checked, size, signed, result.seconds)
    else:
        log.error("store check: %d damaged records in %d checked of %d; roots %s; %s", len(damaged), checked,
                  size, "match" if roots_ok else "DO NOT MATCH", RESTORE_HINT)
    return result
