"""The latest checkpoint the hub signed, kept in `data_dir` beside its key and outside its store.

A store restored from an older copy (a `pg_restore` of last week's dump, an LMDB directory copied back) holds a
shorter log than the hub has signed for. Started on it, the hub would take the devices' re-pushed records in a new
order and sign checkpoints at sizes it already signed with other roots: a split view, to the national hub that
follows it and to every auditor holding an older checkpoint. The store cannot tell it was restored; this file,
which a restore of the store leaves as it was, can. The hub refuses to start on a store whose log does not hold
the checkpoint named here (OlderStore), unless the operator starts it knowingly with `--accept-older-store`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coap_server.files import replace_file, sync_dir
from ledger import Checkpoint, LedgerError, MerkleTree, decode_checkpoint
from ledger.errors import CodedError

log = logging.getLogger("jejak.hub")

FILE_NAME = "last-checkpoint.json"
LOST_FILE = "lost-checkpoints.json"
OVERRIDE = "jejak hub run --accept-older-store"
TAKE_BACK = "jejak hub take-back BUNDLE..."


class OlderStore(CodedError):
    """The hub's store holds a shorter log (or another one) than the latest checkpoint this hub signed: it was
    restored from an older copy, and signing on it would show two logs under one key."""

    code = "HUB_STORE_OLDER"
    coap = "5.00"
    http = 500
    exit_code = 89


class LastCheckpointFileError(CodedError):
    """`data_dir/last-checkpoint.json` is not a checkpoint this hub signed: unreadable, not its JSON, a signature
    that does not verify with the hub's key, or fields that disagree with the signed checkpoint."""

    code = "LAST_CHECKPOINT_FILE"
    coap = "5.00"
    http = 500
    exit_code = 90


def _when(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class LastSigned:
    """Reads, checks and keeps `data_dir/last-checkpoint.json` for the hub whose public key is `hub_key`."""

    def __init__(self, data_dir: Path, hub_key: bytes, *, accept_older: bool = False) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.lost_path = Path(data_dir) / LOST_FILE
        self.hub_key = hub_key
        self.accept_older = accept_older
        self.lost: list[dict[str, Any]] = []  # the checkpoints its operator accepted as lost (`lost-checkpoints.json`)

    def _checkpoint(self, fields: Any) -> Checkpoint:
        """The checkpoint in the JSON `fields` (`Checkpoint.to_json`), its signature verified with the hub's key and
        its size and root as the fields say; LedgerError, ValueError, TypeError, KeyError or AttributeError."""
        cp = decode_checkpoint(bytes.fromhex(fields["cose"]))
        cp.verify(self.hub_key)
        if fields.get("tree_size") != cp.tree_size or fields.get("root") != cp.root.hex():
            raise ValueError(f"says size {fields.get('tree_size')!r} root {fields.get('root')!r}, but its signed "
                             f"checkpoint is of size {cp.tree_size} root {cp.root.hex()}")
        return cp

    def read(self) -> Checkpoint | None:
        """The checkpoint the file names, its signature verified with the hub's key; None when there is no file
        (a first start, or a hub from before the file was kept)."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._bad(f"cannot be read ({exc.strerror})") from None
        try:
            return self._checkpoint(json.loads(text))
        except LedgerError as exc:
            raise self._bad(f"holds no checkpoint of this hub ({exc.code}: {exc.message})") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self._bad(f"is not the JSON of a signed checkpoint ({type(exc).__name__}: {exc})") from None

    def read_lost(self) -> list[dict[str, Any]]:
        """The entries of `lost-checkpoints.json`, each checkpoint in them verified with the hub's key; [] when
        there is no file (no loss was ever accepted)."""
        try:
            text = self.lost_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._bad(f"cannot be read ({exc.strerror})", self.lost_path) from None
        try:
            entries = list(json.loads(text)["lost"])
            for entry in entries:
                self._checkpoint(entry["lost"])
                if entry["kept"] is not None:
                    self._checkpoint(entry["kept"])
                int(entry["accepted_at"]), int(entry["store_size"])
        except LedgerError as exc:
            raise self._bad(f"holds a checkpoint that is not this hub's ({exc.code}: {exc.message})",
                            self.lost_path) from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self._bad(f"is not a list of lost checkpoints ({type(exc).__name__}: {exc})", self.lost_path) from None
        return entries

    def lost_entry(self, cp: Checkpoint) -> dict[str, Any] | None:
        """The entry by which the operator accepted `cp`'s records as lost (its size and root), or None."""
        root = cp.root.hex()
        return next((e for e in self.lost if e["lost"]["tree_size"] == cp.tree_size and e["lost"]["root"] == root),
                    None)

    def accept_lost(self, lost: Checkpoint, tree: MerkleTree, kept: Checkpoint | None) -> None:
        """Record, for good, that the operator accepted the records under `lost` as lost (`--accept-older-store`):
        `lost` and the checkpoint `kept` this hub stands by instead (both signed by it) go in `lost-checkpoints.json`
        beside the store's size, so that `lost` presented again later is answered without stopping the signing."""
        if self.lost_entry(lost) is not None:
            return
        entry = {"lost": lost.to_json(), "kept": kept.to_json() if kept is not None else None,
                 "accepted_at": int(time.time()), "store_size": len(tree)}
        replace_file(self.lost_path, json.dumps({"lost": [*self.lost, entry]}, indent=1).encode() + b"\n")
        self.lost.append(entry)

    def _bad(self, what: str, path: Path | None = None) -> LastCheckpointFileError:
        return LastCheckpointFileError(
            f"{path or self.path} {what}", where="data_dir",
            hint=f"the hub writes this file at each checkpoint it signs and checks its store against it at start; "
                 f"if the store is the newest copy there is, start once with `{OVERRIDE}` to set the file aside "
                 "(the store is not checked at that start; the next checkpoint writes the file again)")

    def keep(self, cp: Checkpoint) -> None:
        """Write `cp` as the latest signed checkpoint: a temporary file, fsync'd, renamed over the old one."""
        data = json.dumps({"hub": cp.hub_id.hex(), "tree_size": cp.tree_size, "root": cp.root.hex(),
                           "time": cp.time, "cose": cp.raw.hex()}, indent=1).encode() + b"\n"
        replace_file(self.path, data)

    def hold(self, tree: MerkleTree, stored: Checkpoint | None) -> None:
        """Refuse (OlderStore) a store whose `tree` does not hold the checkpoint the file names: a smaller tree,
        or another root at that size. With no file, the store's latest checkpoint `stored` is written to it.
        The checkpoints accepted as lost before are read from `lost-checkpoints.json`."""
        try:
            self.lost = self.read_lost()
        except LastCheckpointFileError as exc:
            if not self.accept_older:
                raise
            self._set_aside(f"{exc.message}; started with --accept-older-store", self.lost_path)
            self.lost = []
        try:
            signed = self.read()
        except LastCheckpointFileError as exc:
            if not self.accept_older:
                raise
            self._set_aside(f"{exc.message}; started with --accept-older-store")
            signed = None
        if signed is not None and not holds(tree, signed):
            if not self.accept_older:
                raise self._older(tree, signed)
            kept = stored if stored is not None and holds(tree, stored) else None
            self.accept_lost(signed, tree, kept)
            self._set_aside(f"{self._story(tree, signed)}; started with --accept-older-store: this hub will sign "
                            f"checkpoints that contradict the ones it signed before (the checkpoint is recorded as "
                            f"lost in {self.lost_path})")
            signed = None
        if signed is None and stored is not None and holds(tree, stored):
            self.keep(stored)

    def _story(self, tree: MerkleTree, signed: Checkpoint, found: str = "") -> str:
        held = (f"holds {len(tree)} records" if len(tree) < signed.tree_size else
                f"holds another log (its root at size {signed.tree_size} is {tree.root(signed.tree_size).hex()[:16]}"
                f", not the signed {signed.root.hex()[:16]})")
        return (f"this hub's store {held}, but this hub signed a checkpoint of {signed.tree_size} records at "
                f"{_when(signed.time)} (root {signed.root.hex()[:16]}..., {found or f'kept in {self.path}'}): the "
                "store was restored from an older copy")

    def _older(self, tree: MerkleTree, signed: Checkpoint, found: str = "") -> OlderStore:
        return OlderStore(
            f"{self._story(tree, signed, found)}. Signing on it would give "
            "other roots for sizes already signed, a split view to the national hub that follows this one and to "
            "every auditor holding an earlier checkpoint", where="store",
            hint=f"restore a newer copy of the store (one taken after {_when(signed.time)}) and start again, or "
                 f"take the lost records back from audit bundles this hub exported since the copy (`{TAKE_BACK}`); "
                 f"only if neither exists, start once with `{OVERRIDE}`, knowing the national hub and auditors "
                 "will see this hub's log rewritten (docs/DEPLOY.md, Backups)")

    def presented(self, tree: MerkleTree, cp: Checkpoint, latest: Checkpoint | None) -> OlderStore:
        """A checkpoint this hub signed that its running `tree` does not hold, presented by an edge that holds
        it (hub/witness.py): the store is older than it, though the file at start said otherwise (the whole
        data_dir, this file with it, was restored). Unless the operator started the hub knowingly with
        `--accept-older-store`, `cp` is kept as the latest signed, so that a restart refuses the store too; with
        it, `cp` is recorded as lost, `latest` kept instead."""
        if self.accept_older:
            try:
                self.accept_lost(cp, tree, latest)
            except OSError as exc:
                log.error("the checkpoint of size %d an edge presented could not be recorded as lost in %s (%s): a "
                          "restart without --accept-older-store stops signing when it is presented again",
                          cp.tree_size, self.lost_path, exc)
        else:
            try:
                self.keep(cp)
            except OSError as exc:
                log.error("the checkpoint of size %d an edge presented could not be kept in %s (%s): a restart "
                          "does not refuse this store", cp.tree_size, self.path, exc)
        return self._older(tree, cp, found="an edge presented it at run time")

    def lost_answer(self, tree: MerkleTree, cp: Checkpoint, entry: dict[str, Any]) -> OlderStore:
        """The answer to an edge presenting `cp`, whose records the operator accepted as lost (`entry`): the edge
        sets it aside and holds this hub's next checkpoint; signing goes on."""
        return OlderStore(
            f"this hub's log of {len(tree)} records does not hold the checkpoint of {cp.tree_size} records it signed "
            f"at {_when(cp.time)} (root {cp.root.hex()[:16]}...): its operator accepted those records as lost at "
            f"{_when(int(entry['accepted_at']))}, when the store was restored from an older copy holding "
            f"{entry['store_size']} ({self.lost_path.name})", where="store",
            hint="set the checkpoint aside and hold this hub's next one; records this node holds that the hub "
                 "lacks are pushed again by the sync")

    def _set_aside(self, why: str, path: Path | None = None) -> None:
        path = path or self.path
        aside = path.with_name(f"{path.name}.set-aside-{int(time.time())}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, aside)
            sync_dir(path.parent)
        log.critical("%s; %s moved to %s", why, path.name, aside)


def holds(tree: MerkleTree, cp: Checkpoint) -> bool:
    """The tree has `cp`'s size and, at that size, its root."""
    return cp.tree_size <= len(tree) and tree.root(cp.tree_size) == cp.root
