"""Taking the records a hub lost back from audit bundles it exported before the loss (`jejak hub take-back`).

A store restored from an older copy lacks the records the hub took after the copy, and the hub refuses to sign
on it (hub/lastsigned.py): the checkpoints it signed cover those records in its log's order. An audit bundle the
hub exported after the copy holds them with a receipt each, and a receipt names the record's place in the log.
So bundles give the lost tail in the log's order, and `Hub.take_back` merges it again, each record verified
again, once the tail gives the root the hub signed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from ledger import Checkpoint, ForkDetected, decode_bundle, device_id_for, verify_bundle

from .lastsigned import holds
from .service import Hub, TailRefused


@dataclass(frozen=True, slots=True)
class TakenBack:
    """What `take_back_from` did: the records merged again, the largest checkpoint of the hub's that the log holds
    again, the lost checkpoint, and whether the log holds that one again (`whole`)."""

    taken: int
    checkpoint: Checkpoint
    lost: Checkpoint
    whole: bool

    def to_json(self) -> dict[str, object]:
        return {"taken": self.taken, "whole": self.whole, "tree_size": self.checkpoint.tree_size,
                "root": self.checkpoint.root.hex(), "lost_tree_size": self.lost.tree_size,
                "lost_root": self.lost.root.hex()}


def leaves_from(bundles: Iterable[tuple[str, bytes]], hub_key: bytes, start: int
                ) -> tuple[dict[int, tuple[bytes, bytes]], list[Checkpoint]]:
    """The `(device id, record)` at each leaf index from `start` on that the bundles (name, bytes) hold, as their
    receipts place them, and the bundles' checkpoints. Each bundle is verified whole with the hub's key pinned
    first: one with any problem but the forks it carries as the hub's evidence (FORMAT.md §8) is refused
    (RESTORE_TAIL, naming its first problem)."""
    hub_id = device_id_for(hub_key)
    leaves: dict[int, tuple[bytes, bytes]] = {}
    checkpoints: list[Checkpoint] = []
    for name, data in bundles:
        places: dict[bytes, int] = {}
        report = verify_bundle(data, hub_key=hub_key, placed=places.__setitem__)
        problems = report.all_problems  # the forks the hub holds evidence of are about devices, not this bundle
        if len(problems) != len(report.forks) or not all(isinstance(p, ForkDetected) for p in problems):
            first = next((p for p in problems if not isinstance(p, ForkDetected)), problems[0])
            raise TailRefused(f"{name} does not verify as a bundle of this hub: {first.code}: {first.message}",
                              hint=f"jejak-verify --hub-key {hub_key.hex()} {name} says all of it; take the "
                                   "records back from bundles that verify")
        bundle = decode_bundle(data)
        logs = [(hub_id, bundle.hub_log), *((log.device_id, log.records) for log in bundle.logs)]
        for device_id, raws in logs:
            for raw in raws:
                index = places.get(hashlib.sha256(raw).digest(), -1)  # a bundle that verified places them all
                if index >= start:
                    leaves[index] = (device_id, raw)
        checkpoints.extend(report.checkpoints)
    return leaves, checkpoints


def take_back_from(hub: Hub, lost: Checkpoint, bundles: Iterable[tuple[str, bytes]], *,
                   dry_run: bool = False) -> TakenBack:
    """Merge back into `hub`'s log, restored from an older copy, the records from its size to the checkpoint
    `lost` it signed, taken from audit bundles it exported (`leaves_from`). When the bundles' records stop
    short of `lost` (exported before it was signed), the log is taken as far as the largest checkpoint of theirs
    that they reach, which still leaves the hub short of `lost` (`TakenBack.whole` is false); when they go past
    it (`lost` is older than the last checkpoint signed, whose keeping failed), as far as they reach. RESTORE_TAIL when
    the bundles hold no leaf from the log's size on, or the tail they give is refused (`Hub.take_back`). With
    `dry_run`, everything is checked up to the tail's root and nothing is written: what would be taken back."""
    size = len(hub.tree)
    if holds(hub.tree, lost):
        return TakenBack(taken=0, checkpoint=lost, lost=lost, whole=True)
    leaves, checkpoints = leaves_from(bundles, hub.signer.public_key, size)
    reach = size
    while reach in leaves:
        reach += 1
    target = max((cp for cp in [lost, *checkpoints] if size < cp.tree_size <= reach),
                 key=lambda cp: cp.tree_size, default=None)
    if target is None:
        held = f"from leaf {size} to {reach - 1}" if reach > size else f"not leaf {size}, where this log ends"
        raise TailRefused(f"this log holds {size} records and lost those up to the checkpoint of {lost.tree_size}; "
                          f"the bundles hold {held}, which reaches no checkpoint signed after the copy",
                          hint="take the records back from a bundle exported after the copy of the store was "
                               "taken (a whole export: `jejak export` with no --site)")
    taken = hub.take_back(target, [leaves[i] for i in range(size, target.tree_size)], dry_run=dry_run)
    whole = holds(hub.tree, lost) if not dry_run else target.tree_size >= lost.tree_size
    return TakenBack(taken=target.tree_size - size, checkpoint=taken, lost=lost, whole=whole)
