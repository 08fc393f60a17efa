"""The edge daemon: keys, store, group commit, inputs and the CoAP server, supervised, with clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import aiocoap
import cbor2

from coap_server.discovery import Discovery, Peer
from coap_server.exchanges import DedupBudget
from coap_server.limits import Cap
from coap_server.logs import setup_logging
from coap_server.ports import TCP, UDP, claim, serve_coap, start_http_site
from coap_server.resources import LogSite, ServerLimits, Submitted, build_site
from coap_server.sync import add_sync_resources
from firmware import hal
from ledger import ChainState, Record, device_id_for
from ledger.cbor import canonical

from . import keys as keyfile
from .clockwatch import ClockWatch
from .config import EdgeConfig
from .errors import EdgeError
from .hardware import Buses, FeedbackPlayer, ReaderLoop, SensorLoop, not_answering, open_indicator
from .inputs import (
    SimReader,
    SimSensor,
    TapInput,
    make_machine,
    run_sensor,
    run_sim_reader,
    run_ticker,
    store_reading,
)
from .memory import keep_flat, limit_arenas
from .metrics import EdgeState, Metrics, prometheus, resident_bytes
from .pairing import Pairing, load_or_create_secret, paired
from .security import EdgeSecurity, GuardedHolder, SecureSyncAgent
from .store import LAYOUT_VERSION, GroupCommit, LmdbLogStore
from .sync import ReplicaQuota, SyncAgent
from .systemd import notify, pet_watchdog, watchdog_interval
from .witness import HeldCheckpointResource, HubWitness

log = logging.getLogger("jejak.edge")


class ShuttingDown(EdgeError):
    """The daemon is stopping and takes nothing more; the client retries against it after restart."""

    code = "SHUTTING_DOWN"
    coap = "5.03"
    http = 503
    retry_after_s = 5


class Supervisor:
    """Runs named tasks; a task that crashes is restarted after an exponential back-off."""

    def __init__(self, metrics: Metrics, *, base: float = 0.5, cap: float = 30.0) -> None:
        self.metrics = metrics
        self.base, self.cap = base, cap
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        self.tasks[name] = asyncio.create_task(self._guard(name, factory), name=name)

    async def _guard(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        delay = self.base
        while True:
            started = time.monotonic()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # it failed while being stopped (in a finally, say): a restart would undo the stop
                self.metrics.restarts[name] += 1
                log.exception("task %s crashed; restarting in %.1f s", name, delay)
            if time.monotonic() - started > 60:
                delay = self.base  # it ran well for a while: start the back-off over
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cap)

    async def stop(self, *, grace: float = 5.0, attempts: int = 3) -> None:
        """Cancel every task and wait for them to end, at most `grace` seconds per cancel.

        A task still running after its grace is cancelled again: code can drop a cancel (asyncio.wait_for on
        Python 3.11 does when what it awaits completes in the same step), and one dropped cancel must not hold
        the shutdown forever. asyncio.wait, unlike awaiting the task, never takes the caller's own cancel for
        the task's.
        """
        tasks = list(self.tasks.values())
        self.tasks.clear()
        pending = {task for task in tasks if not task.done()}
        for _ in range(attempts):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            log.error("tasks still running after %d cancels: %s", attempts, sorted(t.get_name() for t in pending))
        for task in tasks:
            if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                log.error("task %s failed while stopping", task.get_name(), exc_info=exc)


def free_udp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EdgeDaemon:
    """One running edge node. `await start()`, then `await close()` (also what SIGTERM does)."""

    def __init__(self, config: EdgeConfig, *, clock: Callable[[], int] | None = None,
                 buses: Buses | None = None) -> None:
        self.config = config
        # The wall clock, watched for steps (edge/clockwatch.py); an injected clock (a replayed day) is its own.
        self.clock = clock or ClockWatch()
        self.buses = buses or Buses()  # the board's own I2C/SPI/UART and pins, or fakes in tests
        self.feedback: FeedbackPlayer | None = None
        self.reader: ReaderLoop | None = None
        self.sensors: dict[str, SensorLoop] = {}
        self.counters = Metrics()
        self.supervisor = Supervisor(self.counters)
        self.store: LmdbLogStore | None = None
        self.commit: GroupCommit | None = None
        self.tap: TapInput | None = None
        self.key: keyfile.DeviceKey | None = None
        self.boot = 0
        self.coap: aiocoap.Context | None = None
        self.coap_port = 0
        self.site: Any = None
        self.logs_resource: LogSite | None = None
        self._http: Any = None
        self.pairing: Pairing | None = None  # the HTTP bridges' pairing check, when HTTP is on
        self.http_port = 0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[bytes, asyncio.Future[Submitted]] = {}
        self._recent: dict[bytes, tuple[float, Submitted]] = {}
        self.stopped = asyncio.Event()
        self.sync: SyncAgent | None = None
        self.holder: GuardedHolder | None = None
        self.discovery: Discovery | None = None
        self.security: EdgeSecurity | None = None

    # -- life cycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        data = cfg.data_path
        # Ports first, before the store opens: a second daemon on the same ports stops here, touching nothing.
        claim(cfg.coap.host, cfg.coap.port, [UDP], setting="coap.port")
        if cfg.http.enabled:
            claim(cfg.http.host, cfg.http.port, [TCP], setting="http.port")
        data.mkdir(parents=True, exist_ok=True)
        # A key file lost beside a store its device claimed stops here (WRONG_DEVICE), before a new key is made.
        self.key = keyfile.load_or_create(data / "device.key", store=data / "store")
        self.store = LmdbLogStore(data / "store", map_size=cfg.limits.map_size)
        # Damage at rest is found before a peer or the hub asks; a damaged record is never served to them.
        await asyncio.to_thread(self.store.check)
        own = self.store.state(self.key.device_id)
        self.boot = keyfile.next_boot(data / "boot", at_least=(own.boot + 1) if own else 0)
        # Security hook (edge/security.py): revocations, OSCORE contexts and the access policy.
        self.security = EdgeSecurity(cfg, self.key)
        self.commit = GroupCommit(self.store, self.key, clock=self.clock, boot=self.boot,
                                  max_batch=cfg.limits.max_batch, max_pending=cfg.limits.max_pending,
                                  moved=self.clock.moved if isinstance(self.clock, ClockWatch) else None)
        # A store may be an old copy (a card restored from a backup): nothing is signed until the hub has said
        # how far this device's log goes, or [sync] head_wait_s has passed without an answer.
        held = self._hub_to_ask() and cfg.sync.head_wait_s > 0
        state = await self.commit.start(held=held)
        self.store.add_listener(self._grew)

        self.feedback = FeedbackPlayer(self._open_indicator(), offline=self._offline)
        # The daemon's clock also stamps cook-end times, so they agree with the records' own time.
        self.tap = TapInput(make_machine(cfg.site, cfg.checkpoint), self._append_tap, self.counters,
                            indicator=self._indicate, wall=self.clock)
        limits = ServerLimits(max_submit_bytes=cfg.limits.max_submit_bytes,
                              max_submit_items=cfg.limits.max_submit_items,
                              range_records=cfg.limits.range_records, range_bytes=cfg.limits.range_bytes,
                              observers=cfg.limits.coap_observers,
                              observers_per_address=cfg.limits.coap_observers_per_address)
        self.site, self.logs_resource = build_site(self, limits,
                                                   tap=self.tap.tap if (self.tap and cfg.sim.enabled) else None,
                                                   tally=self.counters.refused_connections)
        # Peers push to us and pull from us through the same quota the sync agent uses.
        quota = ReplicaQuota(self.store, max_records=cfg.sync.replica_records, own=self.key.device_id,
                             max_logs=cfg.limits.replica_logs, max_bytes=cfg.limits.replica_bytes)
        for entry in cfg.security.peer_keys:  # neighbours the site named: their logs may use the share kept for them
            quota.vouch(device_id_for(bytes.fromhex(entry.rpartition(" ")[2])))
        self.holder = self.security.holder(quota)
        add_sync_resources(self.site, self.holder, visible=self.security.policy.visible)
        self.coap_port = cfg.coap.port or free_udp_port(cfg.coap.host)
        # udp6 only: aiocoap's default would also listen on TCP 5683 (DESIGN.md pitfalls).
        self.coap = await serve_coap(self.security.wrap(self.site), host=cfg.coap.host, port=self.coap_port,
                                     tcp=False, setting="coap.port",
                                     budget=DedupBudget(lifetime_s=cfg.limits.coap_dedup_lifetime_s,
                                                        entries=cfg.limits.coap_dedup_entries,
                                                        per_peer=cfg.limits.coap_dedup_per_peer))
        if cfg.http.enabled:
            await self._start_http()

        if self.tap is not None:
            tap = self.tap
            self.supervisor.spawn("tap-ticker", lambda: run_ticker(tap))
            if cfg.sim.enabled and cfg.sim.tap_interval_ms:
                reader = SimReader(seed=cfg.sim.seed, staff=cfg.checkpoint.staff[0] if cfg.checkpoint.staff
                                   else "5a000001", containers=cfg.sim.containers)
                self.supervisor.spawn("sim-reader", lambda: run_sim_reader(tap, reader, cfg.sim.tap_interval_ms))
            if cfg.reader.driver != "sim":
                self.reader = ReaderLoop(cfg.reader, self.buses, tap.tap, fault=self._fault)
                self.supervisor.spawn("reader", self.reader.run)
        for sensor_cfg in cfg.sensors:
            if sensor_cfg.driver == "sim":
                sensor = SimSensor(sensor_cfg, cfg.sim.seed)
                self.supervisor.spawn(f"sensor-{sensor_cfg.name}",
                                      partial(run_sensor, sensor, cfg.site, self._append, self.counters, self.tap))
                continue

            async def store(values: dict[str, int], sc: Any = sensor_cfg) -> None:
                await store_reading(sc, values, cfg.site, self._append, self.counters, self.tap)

            loop = self.sensors[sensor_cfg.name] = SensorLoop(sensor_cfg, self.buses, store, fault=self._fault)
            self.supervisor.spawn(f"sensor-{sensor_cfg.name}", loop.run)
        log_store = self.store
        self.supervisor.spawn("memory", lambda: keep_flat(log_store))
        await self._start_sync(held=held)
        if held:
            self.supervisor.spawn("head", self._sign_after_hub)
        if (interval := watchdog_interval()) is not None:
            self.supervisor.spawn("watchdog", lambda: pet_watchdog(interval, self.healthy))
        notify("READY=1")
        log.info("ready", extra={"fields": {
            "device": self.key.device_id.hex(), "coap_port": self.coap_port, "http_port": self.http_port,
            "seq": state.length, "boot": self.boot, "site": cfg.site, "role": cfg.checkpoint.role,
            "head_held": held}})

    def _clock_steps(self) -> list[tuple[int, int]]:
        """Where the wall clock stepped in this boot: (the first record signed after it, seconds)."""
        return self.commit.told_steps() if self.commit is not None else []

    def _hub_to_ask(self) -> bool:
        """Whether a hub can confirm this device's head at start: one is configured, or mDNS finds the one this
        edge enrolled with; and with OSCORE on, this edge holds a context with it (not enrolled: as before)."""
        cfg, sec = self.config, self.security
        assert sec is not None
        known = bool(cfg.hub.address) or (cfg.sync.mdns and sec.hub_key is not None)
        return known and (not sec.require or sec.hub_ctx is not None)

    async def _sign_after_hub(self) -> None:
        """Release the held commits once the hub has answered for this device's head, or after [sync] head_wait_s
        without an answer, or at once when the hub's host refused the connection and the neighbours asked meanwhile
        have answered (offline: said once). A hub that holds more than the store is waited for until its records
        are in, however long, and a neighbour while it sends them: a record signed before would fork the log."""
        agent, commit, store, key = self.sync, self.commit, self.store, self.key
        assert agent is not None and commit is not None and store is not None and key is not None
        wait = self.config.sync.head_wait_s
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await agent.head_decided.wait()
        if not agent.head_settled.is_set() and agent.head_stale:
            log.warning("a node holds more of this device's log than this store and they are still being fetched "
                        "(%s): records wait until they are in", agent.head_error or "in progress")
            await agent.fetched()
        if not agent.head_settled.is_set():
            fix = ("if this store is an old copy (a card restored from a backup, a store copied back), stop the "
                   "edge until the hub answers, or its new records fork the log (docs/DEPLOY.md)")
            fetched = sum(c.fetched for c in agent.neighbours.values())
            log.warning("head not confirmed by the hub: no answer after %.1f s (%s); records are signed on the "
                        "local head (%d records, %d of them fetched from neighbours) and the edge works offline; %s",
                        time.monotonic() - started, agent.head_error or "no answer yet",
                        store.log_length(key.device_id), fetched, fix, extra={"fields": {"fix": fix}})
        own = store.state(key.device_id)
        if own is not None and own.boot >= self.boot:  # records fetched from the hub were made after this boot's count
            self.boot = await asyncio.to_thread(keyfile.next_boot, self.config.data_path / "boot",
                                                at_least=own.boot + 1)
        state = await commit.release(boot=self.boot)
        agent.head_decided.set()  # signing: a neighbour's longer copy would now be a fork, not a catch-up
        log.info("signing records from seq %d", state.length,
                 extra={"fields": {"seq": state.length, "boot": self.boot, "head": agent.head_status()}})

    async def _start_sync(self, *, held: bool) -> None:
        """Replicate with peers and push to the hub: configured addresses, and whatever mDNS finds. `held`: no
        record is signed until the head is settled (`_sign_after_hub`)."""
        cfg, store = self.config.sync, self.store
        assert store is not None and self.key is not None
        assert self.security is not None and self.holder is not None
        self.sync = self.security.agent(self.holder, hubs=[self.config.hub.address] if self.config.hub.address else [],
                                        peers=cfg.peers, interval=cfg.interval_s, blocked=store.blocked,
                                        own=self.key.device_id if self._hub_to_ask() else None, wall=self.clock,
                                        boot=lambda: self.boot, steps=self._clock_steps)
        agent = self.sync
        if (witness := self._witness()) is not None:  # its neighbours compare the hub checkpoint it holds with theirs
            assert self.site is not None
            self.site.add_resource(["checkpoint"], HeldCheckpointResource(witness))
        if not held:  # records are signed already: neighbours' copies are not fetched into the own log
            agent.head_decided.set()
        self.supervisor.spawn("sync", agent.run)
        if not cfg.mdns:
            return
        host = self.config.coap.host
        security = self.security
        announce = cfg.announce or (host if host not in ("::", "0.0.0.0", "") and ":" not in host else "127.0.0.1")

        def seen(change: str, peer: Peer) -> None:
            if change == "removed":
                agent.remove(peer.coap_url)
            elif security.admit(peer.role, peer.device, peer.coap_url):  # an announcement proves nothing
                # One hub target per hub id and a bounded number of peers (`SyncAgent.add`): announcing more
                # slows nothing down.
                agent.add(peer.coap_url, "hub" if peer.role == "hub" else "edge", device=peer.device)

        self.discovery = Discovery(role="edge", device_id=self.key.device_id, port=self.coap_port,
                                   addresses=[announce], heads=store.heads, on_change=seen,
                                   interfaces=list(cfg.interfaces) or None)
        try:
            await self.discovery.start()
        except OSError as exc:  # no multicast on this network: configured peers and hub still work
            log.warning("mDNS unavailable (%s); syncing with configured addresses only", exc)
            self.discovery = None

    async def close(self) -> None:
        """Stop inputs, answer what is queued (it is committed first), then close the server and store."""
        if self._closing:
            await self.stopped.wait()
            return
        self._closing = True
        notify("STOPPING=1")
        try:
            if self.discovery is not None:
                with contextlib.suppress(Exception):
                    await self.discovery.close()
            await self.supervisor.stop()
            if self.commit is not None and self.commit.held and self.sync is not None and self.sync.head_stale:
                # Signed now they would fork the log: the hub or a neighbour holds records past this store's head
                # not fetched yet.
                refused = self.commit.refuse_held(ShuttingDown("the daemon stopped while it fetched this device's "
                                                               "records from the hub or a neighbour; nothing was "
                                                               "signed"))
                if refused:
                    log.warning("%d appends that waited for the hub's records were not signed", refused)
            if self.tap is not None:
                with contextlib.suppress(Exception):
                    await self.tap.close()
            if self.feedback is not None:
                self.feedback.close()
            if self.commit is not None:
                await self.commit.close()
            if self.coap is not None:
                await self.coap.shutdown()
            if self._http is not None:
                await self._http.cleanup()
            if self.security is not None:
                self.security.close()  # writes OSCORE sequence numbers and replay windows back
            if self.store is not None:
                self.store.close()
            log.info("stopped", extra={"fields": {"records": dict(self.counters.records)}})
        finally:
            self.stopped.set()  # a second close() waits for this one, and must not wait forever if it failed

    async def _start_http(self) -> None:
        from aiohttp import web

        from coap_server.httpd import BodyPace, guard

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(text=self.metrics_text(), content_type="text/plain")

        async def status(_: web.Request) -> web.Response:
            return web.json_response(self.status())

        self.pairing = Pairing(load_or_create_secret(self.config.data_path))
        app = web.Application(middlewares=[paired(self.pairing)], client_max_size=64 * 1024)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/status", status)
        self._mount_bridges(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        limits = self.config.limits
        guard(runner, Cap(total=limits.http_connections, per_address=limits.http_connections_per_address),
              setting="limits.http_connections, limits.http_connections_per_address",
              pace=BodyPace(grace_s=limits.http_body_grace_s, min_rate=limits.http_body_min_rate),
              pace_setting="limits.http_body_grace_s (or lower limits.http_body_min_rate)",
              tally=self.counters.refused_connections)
        site = web.TCPSite(runner, self.config.http.host, self.config.http.port)
        await start_http_site(site, host=self.config.http.host, port=self.config.http.port, setting="http.port")
        self._http = runner
        self.http_port = runner.addresses[0][1]

    def _mount_bridges(self, app: Any) -> None:
        """Seed 1's POST /api/log_scan and the phone check-in page (edge/legacy.py) on the HTTP endpoint."""
        from .legacy import mount

        mount(app, self)

    async def healthy(self, timeout: float) -> bool:
        """What the systemd watchdog asks: the loop runs (this answers), and the commit path still commits."""
        return not self._closing and self.commit is not None and await self.commit.alive(timeout)

    # -- feedback at the reader -----------------------------------------------------------------------

    def _open_indicator(self) -> hal.Indicator | None:
        fb = self.config.feedback
        if fb.driver == "log":
            return None
        try:
            return open_indicator(fb, self.buses)
        except hal.DriverError as exc:
            log.error(not_answering("LEDs and buzzer", fb.driver, fb.bus(), exc) + "; feedback goes to the log only")
            return None

    def _offline(self) -> bool:
        after = self.config.feedback.offline_after_s
        if not after or self.sync is None:
            return False
        unreached = self.sync.hub_unreached_s(time.time())
        return unreached is not None and unreached > after

    def _indicate(self, shown: dict[str, Any]) -> None:
        """A tap's outcome, after its record is durable: beep and light, and the log line."""
        if self.feedback is not None:
            shown["status"] = self.feedback.status_for(shown["status"])
            self.feedback.show(shown["status"], shown.get("reason", ""))
        log.info("feedback", extra={"fields": {"feedback": shown}})

    def _fault(self, reason: str) -> None:
        """A device stopped answering: the person at the reader hears it, the log already says what to check."""
        self.counters.error(reason.upper())
        if self.feedback is not None:
            self.feedback.show(hal.FAULT, reason)

    # -- appends ---------------------------------------------------------------------------------------

    def _grew(self, device_id: bytes, state: ChainState) -> None:
        """Store listener (writer thread): wake the observers of that log's head on the event loop."""
        loop, logs = self._loop, self.logs_resource
        if loop is not None and logs is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(logs.notify, device_id)
                if self.sync is not None:
                    loop.call_soon_threadsafe(self.sync.trigger)

    async def _append(self, kind: str, body: dict[str, Any]) -> Record:
        if self._closing or self.commit is None:
            raise ShuttingDown("the daemon is shutting down; nothing new is accepted")
        return await self.commit.append(kind, body)

    async def _append_tap(self, kind: str, body: dict[str, Any]) -> Record:
        if self.commit is None:
            raise ShuttingDown("the daemon is not running")
        # Someone stands at the reader waiting for the beep: the record goes ahead of submitted batches.
        return await self.commit.append(kind, body, urgent=True)

    async def submit(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[Submitted]:
        """CoAP submissions: one commit for the request; identical ones within the window fold."""
        if self._closing or self.commit is None:
            raise ShuttingDown("the daemon is shutting down; nothing new is accepted")
        if self.security is not None:
            self.security.policy.check_items(items)  # submitted scans name allowed staff cards
        now = time.monotonic()
        window = self.config.limits.duplicate_window_s
        self._forget(now, window)
        digests = [hashlib.sha256(cbor2.dumps(canonical([k, b]))).digest() for k, b in items]
        answers: list[Submitted | None] = [None] * len(items)
        waits: list[tuple[int, asyncio.Future[Submitted]]] = []
        fresh: list[int] = []
        for i, digest in enumerate(digests):
            seen = self._recent.get(digest) if window else None
            if seen is not None and now - seen[0] < window:
                answers[i] = Submitted(id=seen[1].id, seq=seen[1].seq, duplicate=True)
            elif digest in self._inflight:
                waits.append((i, self._inflight[digest]))
            else:
                fresh.append(i)
                if window:
                    self._inflight[digest] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        try:
            records = await self.commit.append_many([(items[i][0], items[i][1], False) for i in fresh]) \
                if fresh else []
        except BaseException as exc:
            for i in fresh:
                fut = self._inflight.pop(digests[i], None)
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # retrieved here, so an unwaited one is not reported as lost
            self.counters.error(getattr(exc, "code", "INTERNAL"))
            raise
        self.counters.records["coap"] += len(records)
        if records:
            self.counters.ack_latency.observe(time.perf_counter() - started)
        for i, record in zip(fresh, records, strict=True):
            answer = Submitted(id=record.id, seq=record.seq)
            answers[i] = answer
            fut = self._inflight.pop(digests[i], None)
            if fut is not None:
                fut.set_result(answer)
                self._recent[digests[i]] = (now, answer)
        for i, fut in waits:
            first = await fut
            answers[i] = Submitted(id=first.id, seq=first.seq, duplicate=True)
        folded = len(items) - len(fresh)
        self.counters.duplicates += folded
        return [a for a in answers if a is not None]

    def _forget(self, now: float, window: int) -> None:
        if len(self._recent) > 4096 or (self._recent and len(self._recent) % 64 == 0):
            for digest in [d for d, (t, _) in self._recent.items() if now - t >= window]:
                del self._recent[digest]
        if len(self._recent) > 65536:
            self._recent.clear()

    # -- the Backend the CoAP resources read -------------------------------------------------------

    def own_device(self) -> bytes | None:
        return self.key.device_id if self.key else None

    def state(self, device_id: bytes) -> ChainState | None:
        assert self.store is not None
        return self.store.state(device_id)

    def logs(self) -> list[dict[str, Any]]:
        assert self.store is not None
        return [info.to_cbor_map() for info in self.store.logs()]

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        assert self.store is not None
        return self.store.log_range(device_id, start, end)

    def status(self) -> dict[str, Any]:
        assert self.store is not None and self.key is not None and self.commit is not None
        own = self.store.state(self.key.device_id)
        usage = self.store.usage()
        return {
            "device": self.key.device_id.hex(), "site": self.config.site, "name": self.config.name,
            "role": self.config.checkpoint.role, "boot": self.boot, "layout": LAYOUT_VERSION,
            "clock_steps": [{"seq": seq, "seconds": seconds} for seq, seconds in self._clock_steps()],
            "uptime_s": int(time.monotonic() - self.counters.started),
            "own": {"length": own.length if own else 0, "head": own.head.hex() if own else ""},
            "logs": len(self.store.heads()), "forked": sorted(d.hex() for d in self.store.blocked()),
            "damaged": {d.hex(): seqs for d, seqs in self.store.damaged().items()},  # awaiting a good copy
            "store": usage, "pending": self.commit.pending, "commit": dict(self.commit.stats),
            "last_error": self.commit.last_error, "records": dict(self.counters.records),
            "errors": dict(self.counters.errors), "duplicates": self.counters.duplicates,
            "taps": dict(self.tap.machine.stats) if self.tap else {},
            "reader": {"driver": self.config.reader.driver, "bus": self.config.reader.bus(),
                       "connected": self.reader.connected.is_set() if self.reader else None,
                       "opened": self.reader.opened if self.reader else 0, "lost": self.reader.lost if self.reader else 0},
            "sensors": {name: {"failures": loop.failures} for name, loop in self.sensors.items()},
            "feedback": self.feedback.shown[-8:] if self.feedback else [],
            "observers": self.logs_resource.observer_count if self.logs_resource else 0,
            "restarts": dict(self.counters.restarts), "rss_bytes": resident_bytes(),
            "coap_port": self.coap_port, "closing": self._closing,
            "sync": self.sync.status() if self.sync else [],
            "head": {**(self.sync.head_status() if self.sync else {"state": "no_hub"}), "held": self.commit.held},
            "peers": sorted(p.coap_url for p in self.discovery.peers.values()) if self.discovery else [],
            "security": self.security.status() if self.security else {},
            "hub_witness": witness.status() if (witness := self._witness()) else {"state": "no_hub_key"},
        }

    def metrics_text(self) -> str:
        assert self.store is not None and self.commit is not None and self.key is not None
        usage = self.store.usage()
        own = self.store.state(self.key.device_id)
        return prometheus(self.counters, EdgeState(
            log_length=own.length if own else 0, logs=len(self.store.heads()), forked_logs=len(self.store.blocked()),
            pending=self.commit.pending, commits=self.commit.stats["commits"], store_used_bytes=usage["used_bytes"],
            store_map_bytes=usage["map_size"], boot=self.boot, head_unconfirmed=self._head_unconfirmed(),
            coap_observers=self.logs_resource.observer_count if self.logs_resource else 0,
            hub_split_view=(witness := self._witness()) is not None and witness.evidence is not None,
            hub_store_older=witness is not None and witness.hub_store_older is not None))

    def _witness(self) -> HubWitness | None:
        return self.sync.witness if isinstance(self.sync, SecureSyncAgent) else None

    def _head_unconfirmed(self) -> bool:
        """A hub this edge asks has not confirmed its head since start (unreached, still fetching, or forked)."""
        state = self.sync.head_status()["state"] if self.sync else "no_hub"
        return state not in ("confirmed", "no_hub", "unknown_to_hub")

    def metrics(self) -> str:  # the name the CoAP Backend protocol uses
        return self.metrics_text()


async def serve(config: EdgeConfig, clock: Callable[[], int] | None = None) -> int:
    """Run until SIGTERM or SIGINT, then shut down cleanly."""
    daemon = EdgeDaemon(config, clock=clock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await daemon.start()
    except EdgeError:
        await daemon.close()
        raise
    await stop.wait()
    log.info("signal received: shutting down")
    await daemon.close()
    return 0


def run(config: EdgeConfig, clock: Callable[[], int] | None = None) -> int:
    setup_logging("edge", level=config.log.level, fmt=config.log.format)
    limit_arenas()
    return asyncio.run(serve(config, clock))
