"""Running a hub: store, key, ingest, checkpoints, CoAP sync, HTTP API and dashboard, discovery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource as resource
from aiohttp import web

from coap_server.sync import add_sync_resources
from ledger import Ed25519Signer
from ledger.errors import CodedError
from ledger.sync import Head

from .coap import add_proof_resources
from .config import HubConfig
from .http import HubApi
from .service import Hub
from .store import HubStore, LmdbHubStore

log = logging.getLogger("jejak.hub")


class KeyFileError(CodedError):
    """The hub's key file is not a regular file, is readable by others, or does not hold a key."""

    code = "KEY_FILE"
    coap = "5.00"
    http = 500
    exit_code = 32


def load_or_create_key(path: Path) -> Ed25519Signer:
    """The hub's signing key: created on first start with mode 0600; refused if others can read it."""
    if path.exists() or path.is_symlink():
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {path}: expected a regular file, found a symlink or another kind of file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(f"key file {path} is readable by others (mode {oct(mode)}, expected 0600); "
                               f"run: chmod 600 {path}")
        seed = path.read_bytes()
        if len(seed) != 32:
            raise KeyFileError(f"key file {path}: expected 32 bytes of Ed25519 seed, got {len(seed)}")
        return Ed25519Signer.from_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Ed25519Signer.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(signer.seed())
        fh.flush()
        os.fsync(fh.fileno())
    return signer


def open_store(config: HubConfig) -> HubStore:
    if config.store.backend == "postgres":
        from .pg import PgHubStore

        return PgHubStore(config.store.dsn, schema=config.name.replace("-", "_"))
    return LmdbHubStore(Path(config.data_dir) / "store", map_size=config.store.map_size)


class HubHolder:
    """The hub as a sync peer: its heads, its logs, and verified ingest of what it is offered."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def heads(self) -> list[Head]:
        return self.hub.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.hub.store.log_range(device_id, start, end)

    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        return self.hub.ingest(device_id, raws).to_json()


@dataclass
class RunningHub:
    hub: Hub
    api: HubApi
    http_port: int
    coap_port: int
    coap: aiocoap.Context
    runner: web.AppRunner
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    security: Any = None  # hub.security.HubSecurity

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def coap_url(self) -> str:
        return f"coap://127.0.0.1:{self.coap_port}"

    @property
    def coap_tcp_url(self) -> str:
        return f"coap+tcp://127.0.0.1:{self.coap_port}"

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for closer in self.closers:
            result = closer()
            if asyncio.iscoroutine(result):
                with contextlib.suppress(Exception):
                    await result
        await self.coap.shutdown()
        await self.runner.cleanup()
        if self.security is not None:
            self.security.close()
        await asyncio.to_thread(self.hub.checkpoint)
        self.hub.store.close()


async def _checkpoint_loop(hub: Hub, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(hub.checkpoint)
        except Exception:
            log.exception("checkpoint failed")


async def start_hub(config: HubConfig, *, clock: Callable[[], int] | None = None,
                    extra_routes: list[Callable[[web.Application], None]] | None = None,
                    hub: Hub | None = None) -> RunningHub:
    """Start every part of a hub and return a handle; `close()` stops it cleanly."""
    if hub is None:
        signer = load_or_create_key(Path(config.data_dir) / "hub.key")
        hub = Hub(open_store(config), signer, clock=clock or (lambda: int(time.time())),
                  auto_approve=config.auto_approve)
    from .security import HubSecurity

    security = HubSecurity(hub, Path(config.data_dir), require_oscore=config.security.oscore,
                           read=config.security.read)
    api = HubApi(hub, operator_tokens=config.operator_tokens, auditor_tokens=config.auditor_tokens,
                 extra=[*(extra_routes or []), security.register])
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    http_site = web.TCPSite(runner, config.http_host, config.http_port)
    await http_site.start()
    http_port = runner.addresses[0][1]
    site = resource.Site()
    site.add_resource([".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader))
    add_sync_resources(site, HubHolder(hub), visible=security.policy.visible)
    add_proof_resources(site, hub)
    transports = ["udp6", "tcpserver"] if config.coap_tcp else ["udp6"]
    for attempt in range(5):
        coap_port = config.coap_port or free_coap_port(config.coap_host)
        try:
            coap = await aiocoap.Context.create_server_context(security.wrap(site), bind=(config.coap_host, coap_port),
                                                               transports=transports)
            break
        except OSError:
            # A port picked here can be taken between the check and the bind; a configured one is an error.
            if config.coap_port or attempt == 4:
                raise
    running = RunningHub(hub=hub, api=api, http_port=http_port, coap_port=coap_port, coap=coap, runner=runner)
    running.security = security
    running.tasks.append(asyncio.create_task(_checkpoint_loop(hub, config.checkpoint_interval)))
    if config.upstream:
        from .tiers import pull_loop

        running.tasks.append(asyncio.create_task(pull_loop(hub, config.upstream, config.checkpoint_interval)))
    if config.mdns:
        from coap_server.discovery import Discovery

        host = config.coap_host if config.coap_host not in ("0.0.0.0", "::") else None
        discovery = Discovery(role="hub", device_id=hub.hub_id, port=coap_port, tcp=config.coap_tcp,
                              addresses=[host or "127.0.0.1"], heads=hub.heads,
                              interfaces=[host] if host else None)
        try:
            await discovery.start()
            running.closers.append(discovery.close)
        except OSError as exc:  # no multicast here: devices reach the hub by its configured address
            log.warning("mDNS announcement failed (%s); the hub is reachable by address only", exc)
    log.info("hub %s: http %s coap %s", hub.hub_id.hex(), running.http_url, running.coap_url)
    return running


def free_coap_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` for CoAP over UDP and over TCP alike (the hub serves both on one port)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue  # taken for TCP (an outgoing connection's port, say): try another
                return port
    raise OSError(f"no port free for both UDP and TCP on {host}")
