"""The one assembly of a hub: store, key, ingest, read models, bridges, HTTP, CoAP, discovery, tiers, checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiocoap
from aiohttp import web

from coap_server import blocks
from coap_server.discovery import Discovery
from coap_server.httpd import BodyPace, guard
from coap_server.limits import Cap
from coap_server.ports import TCP, UDP, PortInUse, claim, serve_coap, start_http_site
from coap_server.routing import Site
from coap_server.sync import add_sync_resources
from coap_server.tcpguard import TcpLimits
from ledger import Ed25519Signer, decode_checkpoint
from ledger.acceptance import SignatureCheck
from ledger.chain import check_signatures
from ledger.errors import CodedError
from ledger.failures import MissingFile
from ledger.sync import Head

from .aggregates import AggregateStore, LmdbAggregates
from .auth import Auth
from .bridges import BridgeRoutes, Bridges, start_bridges, stop_bridges
from .bridges.seedapi import SeedApi
from .chain import ChainRoutes
from .clock import ClockSpec, DeviceClocks, HubClock, parse_clock
from .coap import add_proof_resources, add_summary_resource
from .config import ConfigError, HubConfig
from .http import Events, HubApi
from .integrity import StoreCheck, check_store
from .journal import Journal, Lines, carried_from, carried_over
from .lastsigned import LastSigned
from .markets import WebhookSender
from .markets.routes import MarketRoutes
from .mbg import Plan, PlanError, load_plan
from .mbg.routes import MbgRoutes
from .metrics import HubMetrics
from .security import HubSecurity
from .service import Hub, WrongHubKey
from .store import HubStore, LmdbHubStore, StoreError
from .tiers import TierLinks
from .verify import AheadCheck, CrossLogVerifier
from .views import Views

log = logging.getLogger("jejak.hub")


class KeyFileError(CodedError):
    """The hub's key file is not a regular file, is readable by others, or does not hold a key."""

    code = "KEY_FILE"
    coap = "5.00"
    http = 500
    exit_code = 32


def read_key(path: Path) -> Ed25519Signer | None:
    """The hub's signing key if its file is there, else None; refused if others can read it or it holds no key."""
    if not (path.exists() or path.is_symlink()):
        return None
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {path}: expected a regular file, found a symlink or another kind of file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(f"key file {path} is readable by others (mode {oct(mode)}, expected 0600); "
                           f"run: chmod 600 {path}")
    seed = path.read_bytes()
    if len(seed) != 32:
        raise KeyFileError(f"key file {path}: expected 32 bytes of Ed25519 seed, got {len(seed)}",
                           hint="restore the hub's key from its backup: a new key is a new hub, and the store "
                                "it wrote refuses another")
    return Ed25519Signer.from_seed(seed)


def load_or_create_key(path: Path) -> Ed25519Signer:
    """The hub's signing key: created on first start with mode 0600; refused if others can read it."""
    signer = read_key(path)
    if signer is not None:
        return signer
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Ed25519Signer.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(signer.seed())
        fh.flush()
        os.fsync(fh.fileno())
    return signer


def existing_key(config: HubConfig) -> Ed25519Signer:
    """The key of the hub that `config` describes, for a command that reads that hub (`jejak hub verify`, `jejak hub
    archive`, `jejak enroll qr`): only a hub's first start makes its key, so here a missing one stops the command
    with KEY_FILE, saying which of three it is (no data_dir there, a store without its key, no hub started there
    yet), and nothing in data_dir is made or written."""
    data_dir = Path(config.data_dir)
    key_path = data_dir / "hub.key"
    signer = read_key(key_path)
    if signer is not None:
        return signer
    start = "start the hub first (jejak hub run with this config): its first start makes the key"
    restore = "put back the hub.key this store was written with (from the backup of data_dir)"
    if not data_dir.is_dir():
        found, hint = (f"data_dir {data_dir} does not exist",
                       f"check data_dir in the config (a typo?); if no hub has run with it yet, {start}")
    elif config.store.backend == "postgres":
        found, hint = "no hub has started with this data_dir, or its key was lost", f"{start}; if it has run, {restore}"
    elif config.store_path.exists():
        found, hint = f"the store at {config.store_path} is there without it", restore
    else:
        found, hint = "no hub has started with this data_dir yet", start
    raise KeyFileError(f"no hub key at {key_path}: {found}; this command reads a hub and never makes its key",
                       where="data_dir", hint=hint)


def open_existing_store(config: HubConfig) -> HubStore:
    """The store of the hub that `config` describes, for a command that reads it: an LMDB store that is not there
    stops the command with STORE_ERROR instead of being made empty (and reported as an intact store of nothing)."""
    if config.store.backend == "lmdb" and not config.store_path.is_dir():
        setting = "store.path" if config.store.path else "data_dir"
        raise StoreError(f"no hub store at {config.store_path}", where=setting,
                         hint=f"check {setting} in the config: a hub's store is made by its first start only")
    return open_store(config)


def refuse_lost_key(store: HubStore, key_path: Path) -> None:
    """Refuse to make a new hub key over a store a hub has already signed: the key was lost (a restore without
    it, say), and a new one would be another hub that the store refuses, with its key file left behind."""
    signed = store.checkpoints()
    if signed:
        hub_id = decode_checkpoint(signed[-1]).hub_id
        raise WrongHubKey(f"key file {key_path} is missing, but this store was written by hub {hub_id.hex()}",
                          where="data_dir",
                          hint="put back the hub.key this store was written with (from the backup of data_dir); a "
                               "new key would be a new hub, which this store refuses")


def preflight(config: HubConfig, *, plan: Plan | None = None, store: bool = True) -> Plan:
    """Check what the hub needs before it writes anything in data_dir, and return the MBG plan it runs with
    (`plan`, else the one `config.mbg_plan` names, read and checked). With `store`, also an existing hub.key
    that must hold and, for the PostgreSQL backend, a server that answers at `store.dsn`.

    A start that stopped on one of these after the key was made left a new hub.key (a new hub) and a store
    behind a typo; here each stops with its own code, naming its setting, and nothing is written."""
    if plan is None:
        if not config.mbg_plan:
            plan = Plan(kitchens=(), schools=())
        else:
            try:
                plan = load_plan(Path(config.mbg_plan))
            except (PlanError, MissingFile) as exc:
                raise type(exc)(f"mbg_plan: {exc.message}", where="mbg_plan", hint=exc.hint) from None
    if store:
        read_key(Path(config.data_dir) / "hub.key")
        if config.store.backend == "postgres":
            _import_pg().connect(config.store.dsn).close()
    return plan


def _import_pg() -> Any:
    """hub.pg, or the CONFIG error that names the extra it needs."""
    try:
        from . import pg
    except ImportError as exc:  # psycopg is the [pg] extra
        raise ConfigError(f"store.backend = 'postgres' needs psycopg, which is not installed ({exc})",
                          where="store.backend",
                          hint="pip install 'jejak[pg]', or set backend = \"lmdb\"") from None
    return pg


def open_store(config: HubConfig) -> HubStore:
    if config.store.backend == "postgres":
        return _import_pg().PgHubStore(config.store.dsn, schema=config.name.replace("-", "_"),
                                       partition_leaves=config.store.partition_leaves)
    return LmdbHubStore(config.store_path, map_size=config.store.map_size)


def open_aggregates(config: HubConfig) -> AggregateStore | None:
    """Where the read models keep their day aggregates: the PostgreSQL store's schema (tables its migrations made),
    or an LMDB environment of its own beside the hub's (hub/aggregates.py says why apart). They are derived from
    the log, so a hub whose aggregates cannot be opened logs it and runs without them."""
    try:
        if config.store.backend == "postgres":
            from .pg import PgAggregates  # the [pg] extra: open_store has checked it is installed

            return PgAggregates(config.store.dsn, schema=config.name.replace("-", "_"))
        return LmdbAggregates(Path(config.data_dir) / "aggregates")
    except StoreError as exc:
        log.error("the read models' day aggregates cannot be opened (%s: %s); past days are answered from the scans "
                  "held only. %s", exc.code, exc.message, exc.hint or "")
        return None


class HubHolder:
    """The hub as a sync peer: its heads, its logs, and verified ingest of what it is offered (timed)."""

    def __init__(self, hub: Hub, metrics: HubMetrics | None = None, verifier: CrossLogVerifier | None = None) -> None:
        self.hub = hub
        self.metrics = metrics or HubMetrics()
        self.verifier = verifier  # checks pushed ranges' signatures on other cores while they wait

    def heads(self) -> list[Head]:
        return self.hub.heads()

    def heads_page(self, after: bytes, limit: int) -> tuple[list[Head], bytes | None]:
        return self.hub.heads_page(after, limit)

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.hub.store.log_range(device_id, start, end)

    def forked(self, device_ids: Sequence[bytes]) -> list[bytes]:
        """Which of these logs the hub holds as forked: fork evidence on record, records held back until an
        operator resolves it (sync's heads answer tells the copy whose records the hub kept)."""
        return [d for d in device_ids if (info := self.hub.store.get_device(d)) is not None and info.status == "forked"]

    def device_clock(self, device_id: bytes, device_now: int, *, boot: int | None = None,
                     proved: bool = False, steps: tuple[tuple[int, int], ...] = ()) -> None:
        """A device said its time (and its boot, and where its clock stepped in that boot) in its sync request
        (`?now=`, `?boot=`, `?steps=`), on a request its OSCORE context proved or not: the hub keeps how far it is
        from its own clock, and the steps, for a device it knows (MBG's
        device_clock finding and the times of its records, /api/chain/health, /metrics). Not on a replayed clock
        (`[hub] clock` a start and a pace, or following the records): each device plays its own, and no offset
        from it says anything of the device's real clock."""
        spec = getattr(self.hub.clock, "spec", None)
        if isinstance(spec, ClockSpec) and not spec.wall:
            return
        if self.hub.store.get_device(device_id) is not None:
            self.hub.device_clocks.saw(device_id, device_now, self.hub.clock(), boot=boot, proved=proved,
                                       steps=steps)

    def log_length(self, device_id: bytes) -> int:
        state = self.hub.store.chain_state(device_id)
        return state.length if state else 0

    def check_ahead(self, device_id: bytes, raws: Sequence[bytes]) -> SignatureCheck:
        """Signatures of a pushed range checked with the log's key while it waits for its turn: on the worker
        processes when there are some, else on this thread."""
        state = self.hub.store.chain_state(device_id)
        key = state.key if state is not None and state.length else b""
        if not key and raws:  # a new log: its genesis names the key (the merge checks it is the enrolled one)
            device = self.hub.store.get_device(device_id)
            key = device.pubkey if device is not None else b""
        if self.verifier is not None:
            return self.verifier.pushed(device_id, raws, key)
        return AheadCheck.of(raws, key)

    def receive(self, device_id: bytes, raws: Sequence[bytes], *,
                check: SignatureCheck | None = None) -> dict[str, Any]:
        timed = None if check is None else self.metrics.timed_check(check)
        result: dict[str, Any] = self.metrics.ingest(lambda: self.hub.ingest(device_id, raws, check=timed).to_json())
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningHub:
    """Every part of a running hub, as start_hub built it; `close()` stops them in order."""

    hub: Hub
    api: HubApi
    views: Views
    bridges: Bridges | None
    security: HubSecurity
    http_port: int
    coap_port: int
    coap: aiocoap.Context
    runner: web.AppRunner
    tasks: tuple[asyncio.Task[Any], ...]
    discovery: Discovery | None
    store_check: StoreCheck
    verifier: CrossLogVerifier

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
        if self.discovery is not None:
            with contextlib.suppress(Exception):
                await self.discovery.close()
        # No new work from either listener before what serves it closes: HTTP first (/api/status stops answering,
        # the start's order reversed; requests in flight end with the read models still open), then CoAP.
        await self.runner.cleanup()
        await self.coap.shutdown()
        await asyncio.to_thread(self.verifier.close)  # after CoAP: no pushed range starts its workers again
        # The webhook deliveries end, and keep what they told and what waits, before the read models close the
        # store they keep it in (PostgreSQL).
        await self.views.alerts.close()
        await asyncio.to_thread(self.views.close)
        if self.bridges is not None:
            stop_bridges(self.bridges)
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


async def _expiry_loop(expire: Sequence[Callable[[], object]], interval: float) -> None:
    """Drop the enrollment requests and seed-2 registrations that waited for approval too long, every
    `interval` seconds, so their places free up with no enrollment asking and no operator."""
    while True:
        await asyncio.sleep(interval)
        for step in expire:
            try:
                await asyncio.to_thread(step)
            except Exception:
                log.exception("dropping expired pending requests failed")


def build_views(hub: Hub, config: HubConfig, *, events: Events, plan: Plan | None) -> Views:
    """The read models the dashboard and the public API answer from, fed by the hub's record listener and, once
    started, refilled from the store in the background."""
    if plan is None:
        plan = load_plan(Path(config.mbg_plan)) if config.mbg_plan else Plan(kitchens=(), schools=())
    subscribers = config.subscribers()
    sender = (WebhookSender(max_attempts=config.webhook_attempts, timeout_s=config.webhook_timeout_s)
              if subscribers else None)
    return Views(hub, plan=plan, events=events, market_config=config.markets,
                 kitchen_regions=config.mbg_kitchen_regions, subscribers=subscribers, sender=sender,
                 keep_days=config.mbg_keep_days, refill=True, state_dir=Path(config.data_dir) / "alerts",
                 webhook_retry=config.webhook_retry, aggregates=open_aggregates(config))


async def _serve_coap(config: HubConfig, hub: Hub, security: HubSecurity, metrics: HubMetrics,
                      verifier: CrossLogVerifier) -> tuple[aiocoap.Context, int]:
    site = Site()
    site.add_resource([".well-known", "core"], blocks.WellKnownCore(site.get_resources_as_linkheader))
    add_sync_resources(site, HubHolder(hub, metrics, verifier), visible=security.policy.visible)
    add_proof_resources(site, hub)
    add_summary_resource(site, hub, security.policy.visible)
    for attempt in range(5):
        coap_port = config.coap_port or free_coap_port(config.coap_host)
        try:
            coap = await serve_coap(security.wrap(site), host=config.coap_host, port=coap_port,
                                    tcp=config.coap_tcp, setting="coap_port",
                                    tcp_limits=TcpLimits(connections=config.coap_tcp_connections,
                                                         per_address=config.coap_tcp_per_address,
                                                         idle_s=config.coap_tcp_idle_s),
                                    tcp_setting="coap_tcp_connections, coap_tcp_per_address",
                                    tally=metrics.refused_connections)
            return coap, coap_port
        except PortInUse:
            # A port picked here can be taken between the check and the bind; a configured one is an error.
            if config.coap_port or attempt == 4:
                raise
    raise AssertionError("unreachable")


async def _announce(config: HubConfig, hub: Hub, coap_port: int) -> Discovery | None:
    host = config.coap_host if config.coap_host not in ("0.0.0.0", "::") else None
    discovery = Discovery(role="hub", device_id=hub.hub_id, port=coap_port, tcp=config.coap_tcp,
                          addresses=[host or "127.0.0.1"], heads=hub.heads, interfaces=[host] if host else None)
    try:
        await discovery.start()
    except OSError as exc:  # no multicast here: devices reach the hub by its configured address
        log.warning("mDNS announcement failed (%s); the hub is reachable by address only", exc)
        return None
    return discovery


async def start_hub(config: HubConfig, *, clock: Callable[[], int] | None = None, hub: Hub | None = None,
                    plan: Plan | None = None, accept_older_store: bool = False,
                    routes: Sequence[Callable[[web.Application], None]] = ()) -> RunningHub:
    """Build and start the whole hub that `config` describes: store and key, the Hub service, the domain read
    models (MBG plan, markets, alerts, webhooks), the bridges, the HTTP API and dashboard, CoAP, mDNS, tiers
    and the checkpoint loop. `close()` on the result stops it cleanly.

    What a caller may inject instead of the config's: `clock` (the hub's time, else `config.clock`: wall time,
    or a past instant for replay and backfill, hub/clock.py), `hub` (a Hub service already open over its store and key), `plan` (the MBG plan, else
    loaded from `config.mbg_plan`), and `routes` (the caller's own HTTP routes, e.g. the demo's progress).

    A store that does not hold the latest checkpoint this hub signed (`data_dir/last-checkpoint.json`, written at
    each one) was restored from an older copy: the start stops with HUB_STORE_OLDER, unless `accept_older_store`
    (`jejak hub run --accept-older-store`), which logs it CRITICAL, sets the file aside and goes on.
    """
    # Every port first, before the store opens: a second hub on the same ports stops here, touching nothing.
    claim(config.http_host, config.http_port, [TCP], setting="http_port")
    claim(config.coap_host, config.coap_port, [UDP, TCP] if config.coap_tcp else [UDP], setting="coap_port")
    # Then every file and service it needs, before the first write in data_dir (the key on a first start).
    plan = await asyncio.to_thread(preflight, config, plan=plan, store=hub is None)
    # What has started is stopped again, in reverse order, if a later part fails (a port taken since the claim, a
    # broker or journal refused): a caller that goes on in the same process finds the store and ports free.
    async with contextlib.AsyncExitStack() as started:
        running = await _start_parts(config, started, clock=clock, hub=hub, plan=plan, routes=routes,
                                     accept_older_store=accept_older_store)
        started.pop_all()
    log.info("hub %s: http %s coap %s", running.hub.hub_id.hex(), running.http_url, running.coap_url)
    return running


async def _start_parts(config: HubConfig, started: contextlib.AsyncExitStack, *, clock: Callable[[], int] | None,
                       hub: Hub | None, plan: Plan | None, accept_older_store: bool,
                       routes: Sequence[Callable[[web.Application], None]]) -> RunningHub:
    """`start_hub` past its checks: each part started is entered in `started`, which stops it if a later one
    fails."""
    metrics = HubMetrics()
    if hub is None:
        key_path = Path(config.data_dir) / "hub.key"
        signer = read_key(key_path)
        store = open_store(config)
        started.callback(store.close)
        if signer is None:  # a first start, or a key lost: the store says which before a new key is made
            refuse_lost_key(store, key_path)
            signer = load_or_create_key(key_path)
        hub = Hub(store, signer, clock=clock or HubClock(parse_clock(config.clock)),
                  auto_approve=config.auto_approve, pending=config.pending,
                  check=metrics.timed_check(check_signatures),
                  last_signed=LastSigned(Path(config.data_dir), signer.public_key, accept_older=accept_older_store),
                  device_clocks=DeviceClocks(path=Path(config.data_dir) / "device-clocks.json"))
    if hub.auto_approve:
        log.warning("auto_approve is ON: any key that sends an enrollment request is approved at once, with no "
                    "operator's decision; keep it off outside demos (SECURITY.md)")
    # Before anything reads or serves it: a damaged record is noted for restore and never served.
    store_check = await asyncio.to_thread(check_store, hub)
    proxies = frozenset(config.http_proxies)
    auth = Auth(operator_tokens=config.operator_tokens, auditor_tokens=config.auditor_tokens, proxies=proxies)
    events = Events(streams=Cap(total=config.event_streams, per_address=config.event_streams_per_client),
                    proxies=proxies, keepalive_s=config.event_keepalive_s, tally=metrics.refused_connections)
    views = build_views(hub, config, events=events, plan=plan)
    # Closed in reverse: the webhook deliveries end, and keep what they told, before the store they keep it in.
    started.callback(views.close)
    started.push_async_callback(views.alerts.close)
    metrics.watch(hub, store_path=config.store_path if config.store.backend == "lmdb" else None,
                  derive_seconds=lambda: views.derive_seconds, refill=lambda: views.refill_progress,
                  redelivery=views.alerts.redelivery)
    await asyncio.to_thread(_clocks_in_store, hub, views)
    markets = MarketRoutes(views, auth=auth, imports=Path(config.data_dir) / "imports",
                           decisions=await asyncio.to_thread(_decisions_journal, config, views),
                           kept_imports=views.aggregates.imports() if views.aggregates is not None else None)
    await asyncio.to_thread(markets.restore_decisions)
    await asyncio.to_thread(markets.replay_imports)
    domain_routes = [ChainRoutes(views).register, MbgRoutes(views).register, markets.register]
    bridges = None
    if config.bridges.enabled:
        bridges = Bridges(hub, config.bridges, views=views,
                          state_dir=config.bridges.state_dir or str(Path(config.data_dir) / "bridges"))
        await start_bridges(bridges)
        started.callback(stop_bridges, bridges)
        # The bridges serve seed 2's public API (prices, impact, alerts, forecasts) from the same read models.
        domain_routes.append(BridgeRoutes(bridges, auth=auth, markets=markets).register)
        # Seed 2's WebSockets carry the dashboard's live events: one event source, two transports.
        domain_routes.append(SeedApi(bridges, auth=auth, events=events).register)
    security = HubSecurity(hub, Path(config.data_dir), require_oscore=config.security.oscore,
                           read=config.security.read, peer_hubs=config.security.peer_hubs, client=auth.client)
    started.callback(security.close)
    verifier = CrossLogVerifier()  # signatures of pulled and pushed ranges, on worker processes
    started.callback(verifier.close)
    tiers = TierLinks(hub, config.upstream, security.upstream_contexts(config.upstream), verifier=verifier)
    if config.upstream:
        metrics.watch_regions(hub, tiers.states, tiers.signed_at)
    api = HubApi(hub, auth=auth, events=events, exports=Path(config.data_dir) / "exports",
                 routes=[*domain_routes, security.register, metrics.register, tiers.register, *routes])
    # CoAP (UDP and TCP) is bound before HTTP accepts a connection: /api/status answering is what a health check,
    # a readiness probe or an operator takes for "the hub is up", so by then a device's push is taken too.
    coap, coap_port = await _serve_coap(config, hub, security, metrics, verifier)
    started.push_async_callback(coap.shutdown)
    runner = web.AppRunner(api.app(), access_log=None)
    started.push_async_callback(runner.cleanup)
    await runner.setup()
    guard(runner, Cap(total=config.http_connections, per_address=config.http_connections_per_address,
                      shared=proxies), setting="http_connections, http_connections_per_address",
          pace=BodyPace(grace_s=config.http_body_grace_s, min_rate=config.http_body_min_rate),
          pace_setting="http_body_grace_s (or lower http_body_min_rate)", tally=metrics.refused_connections)
    await start_http_site(web.TCPSite(runner, config.http_host, config.http_port), host=config.http_host,
                          port=config.http_port, setting="http_port")
    http_port = runner.addresses[0][1]
    tasks = [asyncio.create_task(_checkpoint_loop(hub, config.checkpoint_interval))]
    expiring: list[tuple[Callable[[], object], int]] = [(hub.expire_pending, hub.pending.expire_s)]
    if bridges is not None:
        expiring.append((bridges.expire_pending, config.bridges.pending_expire_s))
    # Looked at a few times within the shortest wait, and at least hourly.
    tasks.append(asyncio.create_task(_expiry_loop([step for step, _ in expiring],
                                                  min(3600.0, max(1.0, min(s for _, s in expiring) / 4)))))
    if config.upstream:
        tasks.append(asyncio.create_task(tiers.run(config.checkpoint_interval)))
    for task in tasks:
        started.callback(task.cancel)
    discovery = await _announce(config, hub, coap_port) if config.mdns else None
    views.start()  # the refill from the store runs on in its own thread: start-up does not wait for it
    return RunningHub(hub=hub, api=api, views=views, bridges=bridges, security=security, http_port=http_port,
                      coap_port=coap_port, coap=coap, runner=runner, tasks=tuple(tasks), discovery=discovery,
                      store_check=store_check, verifier=verifier)


def _clocks_in_store(hub: Hub, views: Views) -> None:
    """The devices' clocks found off, kept in the store where it keeps journals (PostgreSQL: a hub on a fresh
    data_dir still names the clocks it named), carrying over once what data_dir's file held (blocking)."""
    clocks = hub.device_clocks
    in_store = views.aggregates.journal("device-clocks.json") if views.aggregates is not None else None
    if in_store is not None and clocks.path is not None:
        clocks.keep_in(carried_from(in_store, clocks.path, clocks.file_items))


def _decisions_journal(config: HubConfig, views: Views) -> Lines:
    """The operators' quarantine decisions: in the store where it keeps journals (PostgreSQL: a hub that moves
    host, or starts on a fresh data_dir, keeps them), carrying over once what data_dir's file held; else that
    file (blocking)."""
    file = Journal(Path(config.data_dir) / "quarantine" / "decisions.jsonl")
    in_store = views.aggregates.journal("quarantine/decisions.jsonl") if views.aggregates is not None else None
    return file if in_store is None else carried_over(in_store, file)


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
