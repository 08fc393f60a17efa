"""The edge as a witness of its hub: after a sync it presents the hub's latest checkpoint it holds and takes the
next one only if the pinned key signed it and it extends the held one (FORMAT.md §10.2).

A hub that shows this edge a log other than the one it signed before (a forged checkpoint, a smaller one, one
its consistency proof does not join to the held one) is a split view: both checkpoints are kept in
`data_dir/hub-evidence.json`, said once at ERROR as HUB_SPLIT_VIEW, and the held checkpoint stays. A hub that
answers HUB_STORE_OLDER found by this edge's checkpoint that it runs on an older copy of its data_dir: it stops
signing until its operator acts, and this edge sets its checkpoint aside and follows the hub's next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiocoap
from aiocoap.numbers.codes import Code

from coap_server import blocks
from coap_server.errors import NotFound, describe_failure, error_response
from coap_server.files import replace_file
from coap_server.sync import SyncFailed, consistency_answer, held_checkpoint, present_checkpoint
from ledger import Checkpoint, LedgerError, decode_checkpoint
from ledger.errors import SplitView
from ledger.follow import (
    SplitViewEvidence,
    Step,
    decode_consistency_answer,
    decode_witness_answer,
    follow,
    proof_needed,
    witness,
)

from .errors import EdgeError

log = logging.getLogger("jejak.edge.witness")

HELD = "hub-checkpoint.json"
EVIDENCE = "hub-evidence.json"
OLDER = "hub-checkpoint.older-store.json"


class HubSplitView(EdgeError):
    """The hub showed this edge a checkpoint that does not extend the one it showed before: not signed by the
    pinned key, smaller, or not joined to it by its consistency proof. Both are kept in hub-evidence.json."""

    code = "HUB_SPLIT_VIEW"
    coap = "5.00"
    http = 500


class HubWitness:
    """Holds the latest checkpoint of the hub (key `hub_key`) this edge verified, in `data`, and checks the
    next one at most once every `every` seconds, after a sync with the hub went through."""

    def __init__(self, data: Path, hub_key: bytes, *, every: float, timeout: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.data, self.hub_key, self.every, self.timeout, self.monotonic = data, hub_key, every, timeout, monotonic
        self.held = self._read_held()
        self.evidence = self._read_evidence()
        self.hub_store_older: str | None = None  # the hub's message, while it answers HUB_STORE_OLDER
        self.last_error: str | None = None
        self.checked = 0  # answers verified since start
        self.compared = 0  # neighbours' held checkpoints found consistent with the held one since start
        self._next = 0.0
        self._next_from: dict[str, float] = {}  # per neighbour: when its held checkpoint is asked for again

    def _read_held(self) -> Checkpoint | None:
        path = self.data / HELD
        try:
            cp = decode_checkpoint(bytes.fromhex(json.loads(path.read_text())["cose"]))
            cp.verify(self.hub_key)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, LedgerError) as exc:
            # Another hub's (enrolled again), or damaged: what it held cannot be checked against this hub.
            aside = path.with_name(f"{HELD}.set-aside-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            log.warning("%s holds no checkpoint of the pinned hub (%s); moved to %s, the hub's next checkpoint is "
                        "held from now on", path, getattr(exc, "code", type(exc).__name__), aside.name)
            return None
        return cp

    def _read_evidence(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.data / EVIDENCE).read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return {"code": HubSplitView.code, "message": f"{EVIDENCE} is unreadable; look at it"}

    async def after_sync(self, ctx: aiocoap.Context, hub: str) -> None:
        """Present the held checkpoint to `hub` and judge its answer, if `every` seconds passed since the last
        time: one request (FORMAT.md §10.2)."""
        now = self.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        held = self.held
        try:
            answer = await present_checkpoint(ctx, hub, held.raw if held else b"", timeout=self.timeout)
        except SyncFailed as exc:
            if exc.code == "HUB_STORE_OLDER" and held is not None:
                await self._older(hub, held, exc)
            else:
                self.last_error = f"{exc.code}: {exc.message}"
            return
        except Exception as exc:  # unreachable now: the next sync asks again
            self.last_error = describe_failure(exc)
            return
        self.last_error = None
        self.hub_store_older = None
        shown: Checkpoint | None = None
        proof: tuple[bytes, ...] = ()
        try:
            shown, proof = decode_witness_answer(answer)
            step = witness(held, shown, proof, self.hub_key)
        except LedgerError as exc:
            await self._split(hub, held, shown, proof, answer, exc)
            return
        self.checked += 1
        if step in (Step.FIRST, Step.ADVANCED):
            await self._keep(shown)

    async def compare(self, ctx: aiocoap.Context, peer: str, hub: str | None) -> None:
        """After a sync with the neighbour at `peer`, at most once every `every` seconds: ask it for the checkpoint
        of this hub it holds and check that it and the held one are one log (FORMAT.md §10.2, edges witness each
        other's view): the same root at one size, else the consistency proof between their sizes, asked of the
        `hub`. A hub that showed each edge another view, each consistent in itself, is a split view here; the
        neighbour's checkpoint is its word only until the pinned key's signature on it is checked, and one of
        another hub, or none, is passed over. One that extends the held checkpoint is held from then on."""
        now = self.monotonic()
        held = self.held
        if held is None or self.evidence is not None or now < self._next_from.get(peer, 0.0):
            return
        self._next_from[peer] = now + self.every
        proof: tuple[bytes, ...] = ()
        theirs: Checkpoint | None = None
        try:
            raw = await held_checkpoint(ctx, peer, timeout=self.timeout)
            if raw is None:
                return
            theirs = decode_checkpoint(raw)
            theirs.verify(self.hub_key)
        except LedgerError as exc:  # another hub's, or not a checkpoint: nothing the pinned hub signed
            log.info("neighbour %s holds no checkpoint of this edge's hub (%s)", peer, exc.code)
            return
        except Exception as exc:  # unreachable now: asked again after a later sync
            log.info("neighbour %s did not say which hub checkpoint it holds (%s)", peer, describe_failure(exc))
            return
        need = proof_needed([held], theirs)
        try:
            if need is not None:
                if hub is None:
                    return
                proof = decode_consistency_answer(
                    await consistency_answer(ctx, hub, *need, timeout=self.timeout), *need)
            step = follow([held], theirs, proof, self.hub_key)
        except SplitView as exc:
            await self._split(hub or "", held, theirs, proof, raw, exc, via=peer)
            return
        except LedgerError as exc:  # a proof answer of the wrong shape proves nothing, either way
            self.last_error = f"consistency proof from {hub}: {exc.code}: {exc.message}"
            return
        except Exception as exc:  # the hub is unreachable, or refuses (sizes it does not hold): asked again later
            self.last_error = f"consistency proof from {hub}: {describe_failure(exc)}"
            log.info("hub %s gave no consistency proof between the checkpoint held here (size %d) and neighbour %s's "
                     "(size %d): %s", hub, held.tree_size, peer, theirs.tree_size, self.last_error)
            return
        self.compared += 1
        if step is Step.ADVANCED:
            await self._keep(theirs)

    async def _keep(self, cp: Checkpoint) -> None:
        text = json.dumps({**cp.to_json(), "kept_at": int(time.time())}, indent=1) + "\n"
        try:
            await asyncio.to_thread(replace_file, self.data / HELD, text.encode())
        except OSError as exc:
            self.last_error = f"{HELD} could not be written: {exc.strerror}"
            log.warning("the hub's checkpoint of size %d is verified but %s", cp.tree_size, self.last_error)
        self.held = cp

    async def _split(self, hub: str, held: Checkpoint | None, shown: Checkpoint | None, proof: tuple[bytes, ...],
                     answer: bytes, exc: LedgerError, *, via: str | None = None) -> None:
        """Keep the evidence of a split view: `shown` came from the hub, or with `via` from that neighbour, which
        holds it from the hub."""
        evidence: dict[str, Any] = {
            "code": HubSplitView.code, "cause": exc.code, "message": exc.message, "hub": hub, "via": via,
            "hub_id": held.hub_id.hex() if held else None, "time": int(time.time()),
            "held": held.to_json() if held else None, "shown": shown.to_json() if shown else None,
            "proof": [p.hex() for p in proof], "answer": answer.hex() if shown is None else None,
            # FORMAT.md §10.1, which anyone holding the hub's key can check (`verify_split_view`).
            "split_view": exc.evidence.encode().hex() if isinstance(exc, SplitView)
            and isinstance(exc.evidence, SplitViewEvidence) else None}
        if self.evidence is not None:
            log.info("hub %s still shows a checkpoint that does not extend the held one (%s); the first evidence "
                     "is kept in %s", hub, exc.code, EVIDENCE)
            return
        self.evidence = evidence
        # Said before the file is written: a daemon stopped while it writes has the state and the file, and the
        # line too.
        fix = ("keep hub-evidence.json and give it to the hub's operator and the auditors: the hub signed two views "
               "of its log (or something answers in its place); once they have explained it, remove the file")
        whom = "this edge" if via is None else f"the neighbour {via}"
        log.error("%s: hub %s showed %s a log that does not extend the one it signed before: %s: %s; the held "
                  "checkpoint (size %s) stays, both are kept in %s; fix: %s", HubSplitView.code, hub, whom, exc.code,
                  exc.message, held.tree_size if held else "none", self.data / EVIDENCE, fix,
                  extra={"fields": {"code": HubSplitView.code, "cause": exc.code, "fix": fix}})
        try:
            await asyncio.to_thread(replace_file, self.data / EVIDENCE, (json.dumps(evidence, indent=1) + "\n").encode())
        except OSError as exc_io:
            log.error("%s could not be written (%s): the evidence is only in this log line: %s", EVIDENCE,
                      exc_io.strerror, json.dumps(evidence))

    async def _older(self, hub: str, held: Checkpoint, exc: SyncFailed) -> None:
        """The hub found by the held checkpoint that it runs on an older copy of its data: it stops signing. The
        held checkpoint is set aside (it names records the hub lost) and the hub's next one is held after its
        operator acts."""
        text = json.dumps({**held.to_json(), "hub_said": f"{exc.code}: {exc.message}"}, indent=1) + "\n"
        try:
            await asyncio.to_thread(replace_file, self.data / OLDER, text.encode())
            await asyncio.to_thread((self.data / HELD).unlink, True)
        except OSError as exc_io:
            log.warning("the checkpoint the hub no longer holds could not be set aside (%s)", exc_io.strerror)
        self.held = None
        self.hub_store_older = exc.message
        log.warning("hub %s runs on an older copy of its data than the checkpoint of size %d this edge held, and "
                    "stopped signing (HUB_STORE_OLDER: %s); the checkpoint is kept in %s and the hub's next one is "
                    "held once its operator has acted (docs/DEPLOY.md, Backups)", hub, held.tree_size,
                    exc.message, self.data / OLDER, extra={"fields": {"code": exc.code}})

    def status(self) -> dict[str, Any]:
        """For `/status`: the state, the held checkpoint and any evidence kept."""
        state = ("split_view" if self.evidence is not None else "hub_store_older" if self.hub_store_older
                 else "held" if self.held is not None else "none")
        return {"state": state, "held": {"tree_size": self.held.tree_size, "root": self.held.root.hex(),
                                         "time": self.held.time} if self.held else None,
                "checked": self.checked, "compared": self.compared, "last_error": self.last_error,
                "hub_store_older": self.hub_store_older,
                "evidence": str(self.data / EVIDENCE) if self.evidence is not None else None,
                "evidence_cause": self.evidence.get("cause") if self.evidence else None}


class HeldCheckpointResource(blocks.Resource):
    """GET /checkpoint on an edge: the checkpoint of its hub it holds (COSE_Sign1 bytes, FORMAT.md §10.2), so that
    its neighbours compare it with theirs (`HubWitness.compare`); 4.04 when it holds none."""

    def __init__(self, witness: HubWitness) -> None:
        super().__init__()
        self.witness = witness

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        held = self.witness.held
        if held is None:
            return error_response(NotFound("this edge holds no checkpoint of its hub yet"))
        return aiocoap.Message(code=Code.CONTENT, content_format=60, payload=held.raw)
