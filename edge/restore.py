"""Check an edge store end to end, and restore a lost or corrupt one from peers' and the hub's replicas.

A device must learn its own head before it appends, or its next record forks its own log. The daemon asks
its hub and its neighbours at start (edge/sync.py: `ask_head`, `fetch_past_head`), which covers an old copy of
the store and a lost one; this command is for a store the daemon does not start on (STORE_CORRUPT), and for
sources the daemon does not know (a neighbour off the LAN). It runs before the daemon starts: it fetches the
device's log from every
source given, verifies it (signatures and links, as any replica), keeps the longest, and only then is the
daemon started, which continues that chain instead of writing a new genesis.

    python -m edge.restore --config edge.toml --check
    python -m edge.restore --config edge.toml --from coap://hub:5683 --from coap://peer:5683
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger import ChainState, LedgerError, verify_chain

from .errors import EdgeError, KeyFileError, StoreCorrupt, StoreError
from .security import EdgeSecurity
from .store import LmdbLogStore


def check_store(path: Path) -> dict[str, Any]:
    """Read every log in the store and verify it: ids, links, signatures. Raises StoreCorrupt."""
    store = LmdbLogStore(path, readonly=True)
    try:
        logs = {}
        for head in store.heads():
            raws = store.log_range(head.device_id, 0, head.length)
            try:
                state = verify_chain(raws)
            except LedgerError as exc:
                raise StoreCorrupt(f"log of device {head.device_id.hex()} in {path} does not verify: {exc}",
                                   hint="move the store aside and restore it with --from") from None
            if state.length != head.length or state.head != head.head:
                raise StoreCorrupt(f"log of device {head.device_id.hex()} in {path}: stored head says "
                                   f"{head.length} records, the records give {state.length}")
            for seq, raw in enumerate(raws):
                if store.locate(hashlib.sha256(raw).digest()) != (head.device_id, seq):
                    raise StoreCorrupt(f"record index of device {head.device_id.hex()} seq {seq} is wrong")
            logs[head.device_id.hex()] = head.length
        return {"ok": True, "logs": logs, "own": (store.own_device() or b"").hex()}
    finally:
        store.close()


async def fetch_log(base: str, device_id: bytes, *, timeout: float = 30.0,
                    credentials: dict[str, Any] | None = None) -> list[bytes]:
    """A device's whole log as the node at `base` (edge or hub) holds it, by GET /sync/records ranges; over OSCORE
    with the context `credentials` has for it (URI pattern -> context), which a node with [security] oscore on
    requires."""
    import aiocoap

    from coap_server.security import install
    from coap_server.sync import get_records

    out: list[bytes] = []
    ctx = await aiocoap.Context.create_client_context()
    install(ctx.client_credentials, credentials or {})
    try:
        while raws := await get_records(ctx, base, device_id, len(out), len(out) + 4096, timeout=timeout):
            out += raws
        return out
    finally:
        await ctx.shutdown()


async def restore_own_log(store: LmdbLogStore, device_id: bytes, sources: Sequence[str], *,
                          credentials: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill an empty store with this device's own log from the longest verified copy among `sources`.

    Every copy is verified as a replica is (signatures from the genesis key, links); a source that is down
    or serves a bad copy is skipped. The store is claimed for the device only after the log is in.
    """
    if store.state(device_id) is not None:
        raise StoreError(f"store at {store.path} already holds this device's log; restore only into an empty "
                         "store", hint="move the old store aside first")
    tried: dict[str, Any] = {}
    best: list[bytes] = []
    for base in sources:
        try:
            raws = await fetch_log(base, device_id, credentials=credentials)
            verify_chain(raws) if raws else None
        except Exception as exc:  # unreachable or serving a bad copy: try the others
            from coap_server.errors import describe_failure

            tried[base] = describe_failure(exc)
            continue
        tried[base] = len(raws)
        if len(raws) > len(best):
            best = raws
    if not best:
        raise StoreError(f"no source had the log of device {device_id.hex()}: {tried}",
                         hint="start the daemon only when a peer or the hub can be reached, or it forks itself")
    got = store.receive_records(device_id, best)
    if got.problem:
        raise StoreError(f"restored log refused: {got.problem}")
    store.claim(device_id)
    state: ChainState | None = store.state(device_id)
    return {"device": device_id.hex(), "restored": got.accepted, "length": state.length if state else 0,
            "sources": tried}


def main(argv: list[str] | None = None) -> int:
    from . import config as cfg
    from . import keys

    p = argparse.ArgumentParser(prog="python -m edge.restore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--check", action="store_true", help="verify the store and exit")
    p.add_argument("--from", dest="sources", action="append", default=[], help="coap://host:port (repeatable)")
    args = p.parse_args(argv)
    try:
        config = cfg.load(args.config)
        path = config.data_path / "store"
        if args.check:
            print(json.dumps(check_store(path)))
            return 0
        # Every refusal comes before the key is read, and none makes one: the log is fetched by this device's
        # key, so a new key would fetch nothing and be left behind looking like the device's own.
        if not args.sources:
            raise StoreError("nothing to restore from", hint="give --from coap://host:port (a peer or the hub)")
        key_path = config.data_path / "device.key"
        if not (key_path.exists() or key_path.is_symlink()):
            raise KeyFileError(f"no device key at {key_path}: restore fetches this device's own log by its key and "
                               "never makes one", where="data_dir",
                               hint="put back the device.key from the backup of the data dir (e.g. "
                                    "/var/backups/jejak-edge); without it the log cannot be fetched as this "
                                    "device's: a new device starts on an empty data_dir instead")
        if (path / "data.mdb").exists():
            raise StoreError(f"{path} exists; restore only into an empty store",
                             hint=f"move it aside first: mv {path} {path}.corrupt")
        key = keys.load_or_create(key_path)
        # The contexts enrollment set up (data_dir/oscore): a hub or peer with [security] oscore on serves a log
        # only over OSCORE. A source in [security] peer_keys is a peer; any other is the hub.
        security = EdgeSecurity(config, key)
        made = not path.exists()
        store = LmdbLogStore(path, map_size=config.limits.map_size)
        try:
            credentials = {pattern: ctx for url in args.sources for pattern, ctx in security.client_entries(
                {url: "edge" if url in security.peer_urls else "hub"}).items()}
            print(json.dumps(asyncio.run(restore_own_log(store, key.device_id, args.sources,
                                                         credentials=credentials))))
        except BaseException:
            store.close()
            if made:  # what a failed restore made would stop the next try as "a store exists": it holds nothing
                shutil.rmtree(path, ignore_errors=True)
            raise
        finally:
            store.close()
            security.close()
        return 0
    except EdgeError as exc:
        print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
