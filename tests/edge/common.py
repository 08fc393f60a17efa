"""Helpers shared by the edge and CoAP tests: configs on tmp dirs, an in-process daemon, peer logs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from coap_server.client import EdgeClient
from edge.config import CoapConfig, EdgeConfig, Limits, SimConfig
from edge.daemon import EdgeDaemon
from ledger import ChainBuilder, Ed25519Signer


def edge_config(data_dir: Path, **changes: object) -> EdgeConfig:
    """Loopback, any free port, simulated reader driven only by /sim/tap, no sensors."""
    base: dict[str, object] = {"data_dir": str(data_dir), "coap": CoapConfig(host="127.0.0.1", port=0),
                               "sim": SimConfig(tap_interval_ms=0), "sensors": (), "site": "sppg-test"}
    base.update(changes)
    return EdgeConfig(**base)  # type: ignore[arg-type]


def small_limits(**changes: int) -> Limits:
    return Limits(**changes)


@contextlib.asynccontextmanager
async def running(config: EdgeConfig) -> AsyncIterator[tuple[EdgeDaemon, EdgeClient]]:
    daemon = EdgeDaemon(config, clock=lambda: 1_763_900_000)
    await daemon.start()
    client = EdgeClient(f"coap://127.0.0.1:{daemon.coap_port}", timeout=10)
    try:
        async with client:
            yield daemon, client
    finally:
        await daemon.close()


def peer_log(seed: int, n: int) -> tuple[Ed25519Signer, list]:
    """A peer device's log: genesis and n notes."""
    signer = Ed25519Signer.from_seed(seed.to_bytes(32, "big"))
    builder = ChainBuilder(signer, clock=lambda: 1_763_900_000, boot=1)
    return signer, [builder.genesis()] + [builder.append("note", {"text": f"peer {seed} note {i}"})
                                          for i in range(n)]
