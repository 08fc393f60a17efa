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

from coap_server.files import replace_file, sync_dir
from ledger import Checkpoint, LedgerError, MerkleTree, decode_checkpoint
from ledger.errors import CodedError

log = logging.getLogger("jejak.hub")

FILE_NAME = "last-checkpoint.json"
OVERRIDE = "jejak hub run --accept-older-store"


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
        self.hub_key = hub_key
        self.accept_older = accept_older

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
            fields = json.loads(text)
            cp = decode_checkpoint(bytes.fromhex(fields["cose"]))
            cp.verify(self.hub_key)
        except LedgerError as exc:
            raise self._bad(f"holds no checkpoint of this hub ({exc.code}: {exc.message})") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self._bad(f"is not the JSON of a signed checkpoint ({type(exc).__name__}: {exc})") from None
        if fields.get("tree_size") != cp.tree_size or fields.get("root") != cp.root.hex():
            raise self._bad(f"says size {fields.get('tree_size')!r} root {fields.get('root')!r}, but its signed "
                            f"checkpoint is of size {cp.tree_size} root {cp.root.hex()}")
        return cp

    def _bad(self, what: str) -> LastCheckpointFileError:
        return LastCheckpointFileError(
            f"{self.path} {what}", where="data_dir",
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
        or another root at that size. With no file, the store's latest checkpoint `stored` is written to it."""
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
            self._set_aside(f"{self._story(tree, signed)}; started with --accept-older-store: this hub will sign "
                            "checkpoints that contradict the ones it signed before")
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
            hint=f"restore a newer copy of the store (one taken after {_when(signed.time)}) and start again; only "
                 f"if none exists, start once with `{OVERRIDE}`, knowing the national hub and auditors will see "
                 "this hub's log rewritten (docs/DEPLOY.md, Backups)")

    def presented(self, tree: MerkleTree, cp: Checkpoint) -> OlderStore:
        """A checkpoint this hub signed that its running `tree` does not hold, presented by an edge that holds
        it (hub/witness.py): the store is older than it, though the file at start said otherwise (the whole
        data_dir, this file with it, was restored). Unless the operator started the hub knowingly with
        `--accept-older-store`, `cp` is kept as the latest signed, so that a restart refuses the store too."""
        if not self.accept_older:
            try:
                self.keep(cp)
            except OSError as exc:
                log.error("the checkpoint of size %d an edge presented could not be kept in %s (%s): a restart "
                          "does not refuse this store", cp.tree_size, self.path, exc)
        return self._older(tree, cp, found="an edge presented it at run time")

    def _set_aside(self, why: str) -> None:
        aside = self.path.with_name(f"{FILE_NAME}.set-aside-{int(time.time())}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, aside)
            sync_dir(self.path.parent)
        log.critical("%s; %s moved to %s", why, self.path.name, aside)


def holds(tree: MerkleTree, cp: Checkpoint) -> bool:
    """The tree has `cp`'s size and, at that size, its root."""
    return cp.tree_size <= len(tree) and tree.root(cp.tree_size) == cp.root
