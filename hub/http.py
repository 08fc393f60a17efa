"""The hub's HTTP JSON API (with its OpenAPI description), live events, and the dashboard's static files."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from coap_server.errors import Internal, RequestError, TooLarge, TooManyStreams
from coap_server.errors import NotFound as RouteNotFound
from coap_server.httpd import closed, read_at_most
from coap_server.limits import Cap, Slots
from coap_server.params import Param, read_json
from ledger import Checkpoint, ForkEvidence, Record, decode_record
from ledger.errors import CodedError
from ledger.sync import decode_records

from . import apidoc
from .auth import Auth, access_middleware, client_address, http_query, private_answers, rule_of, template_of
from .paging import device_page, page_query
from .service import Hub, HubError, NotEnrolled, NotFound
from .webverify import standalone_page

log = logging.getLogger("jejak.hub.http")
RECORD_ID = Param(name="record", kind="hex", size=32)
STATIC = Path(__file__).parent / "static"
EXPORT_KEEP_S = 24 * 3600  # how long an exported bundle stays resumable
# A bundle may be as large as the store, and each export with other options (a description is enough) is a file
# of its own: the newest EXPORTS_KEPT are kept, and at most EXPORT_WRITERS are written at once (the others wait),
# so a reader's token cannot fill the hub's disk with copies of its store.
EXPORTS_KEPT = 8
EXPORT_WRITERS = 2
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def coded(exc: BaseException) -> CodedError:
    """The typed error to answer with: `exc` itself; BAD_REQUEST for a route's own parsing; INTERNAL else."""
    if isinstance(exc, CodedError):
        return exc
    if isinstance(exc, ValueError | KeyError | TypeError):
        return RequestError(f"bad request: {exc}")
    log.error("internal error answering a request: %r", exc, exc_info=exc)
    return Internal("internal error; the hub's log has the details")


DECISION_BYTES = 16 * 1024  # an operator's decision: who, why, what (the why is kept to 2,000 characters)


async def read_decision(request: web.Request, fields: tuple[str, ...], expected: str) -> dict[str, Any]:
    """An operator's decision: a JSON object whose `fields` are text, not blank. BAD_REQUEST saying `expected`
    for anything else (not JSON, nested too deep, another shape), TOO_LARGE past DECISION_BYTES."""
    raw = await read_at_most(request, DECISION_BYTES)
    try:
        value = read_json(raw, max_bytes=DECISION_BYTES, what="decision")
    except TooLarge:
        raise
    except RequestError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) and value[k].strip() for k in fields):
        raise RequestError(expected)
    return value


def error_response(exc: BaseException, *, body: dict[str, Any] | None = None) -> web.Response:
    """The one HTTP rendering of an error: its declared status and {"error": {code, message[, where, hint]}}.

    `body` replaces the JSON body where a route must answer in a legacy system's own shape (the bridges);
    the status and headers still come from the error's class."""
    err = coded(exc)
    if body is None:
        body = {"error": err.to_dict()}
    headers = {}
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(err.retry_after_s)
    if err.http == 401:  # RFC 9110 §15.5.2: a 401 names the scheme the client should use
        headers["WWW-Authenticate"] = "Bearer"
    return web.json_response(body, status=err.http, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if _cut_short(request, exc):
            return error_response(exc)
        if exc.status < 400 or exc.content_type == "application/json":
            raise  # redirects, and the bridges' own legacy bodies
        return _http_error(request, exc)
    except ConnectionResetError:  # its client left while the body came: no answer reaches it, no error to log
        raise  # (the connection's handler notes it, coap_server/httpd.py)
    except Exception as exc:  # typed errors answer as they declare; see coded() for the rest
        _cut_short(request, exc)
        return error_response(exc, body=_legacy_body(request, exc))


def _cut_short(request: web.Request, exc: BaseException) -> bool:
    """A route that fails after its streamed answer began (an export, the event stream) cannot answer again: a
    second status line and body would be read as part of the first answer. Its connection is closed instead,
    so the client sees the answer end before its last chunk, and the error goes to the log. The answer then
    returned is never written: the closed transport refuses it and aiohttp takes that as a reset."""
    if request.writer is None or request.writer.output_size == 0:
        return False
    err = coded(exc)
    log.warning("%s %s failed after its answer began (%s: %s); connection closed", request.method, request.path,
                err.code, err.message, exc_info=err.code == "INTERNAL")
    if request.transport is not None:
        request.transport.close()
    return True


def _legacy_body(request: web.Request, exc: BaseException) -> dict[str, Any] | None:
    """A refusal made before a bridge route's own handler (its access rule, a repeated parameter) in that
    legacy system's shape, as its clients and its OpenAPI entry expect; None for Jejak's own routes."""
    template = template_of(request.match_info.route.resource) if request.match_info.route else None
    doc = apidoc.ROUTES.get((request.method, template or ""))
    if doc is None or doc.errors not in ("seed1", "seed2"):
        return None
    err = coded(exc)
    return {"error" if doc.errors == "seed1" else "detail": err.message, "code": err.code}


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no such route, wrong method, body too large) in the one error body."""
    if exc.status == 404:
        return error_response(RouteNotFound(f"no route {request.method} {request.path}",
                                            hint="GET /api/openapi.json lists every route"))
    if exc.status == 413:
        return error_response(TooLarge(f"request body over the hub's limit: {exc.text}"))
    code = "METHOD_NOT_ALLOWED" if exc.status == 405 else "BAD_REQUEST"
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return web.json_response({"error": {"code": code, "message": exc.text or exc.reason}}, status=exc.status,
                             headers=headers)


class Events:
    """Fan-out of live events to Server-Sent Events subscribers; slow subscribers drop old events.

    Every event gets an id `<boot>-<n>` and the last `keep` events are kept, so a dashboard that lost its
    connection asks for what it missed (`Last-Event-ID`) and gets it replayed; an id from another boot of the
    hub, or older than what is kept, gets a `resync` event instead (the page reloads its data). Events are
    built while someone watches and for `linger_s` after the last one left, the time a dropped connection
    takes to come back. An open stream with nothing to send writes a comment every `keepalive_s`, which keeps
    proxies from closing it as idle.
    """

    def __init__(self, *, keep: int = 1000, linger_s: float = 300.0, streams: Cap = Cap(total=200, per_address=8),
                 proxies: frozenset[str] = frozenset(), keepalive_s: float = 15.0,
                 tally: MutableMapping[str, int] | None = None) -> None:
        # At most `streams` subscribers (both transports) at once, in all and from one client, the refusals
        # counted in `tally` (/metrics); a client behind one of `proxies` is the last address of the
        # X-Forwarded-For the proxy adds.
        self.streams = Slots(streams, "event streams", log=log, setting="event_streams, event_streams_per_client",
                             tally=tally)
        self.keepalive_s = keepalive_s
        self._proxies = proxies
        self._queues: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self._strict: dict[asyncio.Queue[tuple[str, dict[str, Any]]], Callable[[int], None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.boot = secrets.token_hex(4)
        self._n = 0
        self._ring: deque[tuple[int, dict[str, Any]]] = deque(maxlen=keep)
        self._linger_s = linger_s
        self._left_at: float | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def watched(self) -> bool:
        """Whether anyone subscribes (or did a moment ago): events are only built for a dashboard that is open."""
        if self._queues:
            return True
        return self._left_at is not None and time.monotonic() - self._left_at < self._linger_s

    def publish(self, event: dict[str, Any]) -> None:
        if self._loop is None or not self.watched:
            return
        self._loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: dict[str, Any]) -> None:
        self._n += 1
        self._ring.append((self._n, event))
        item = (f"{self.boot}-{self._n}", event)
        for q in list(self._queues):
            if q.full():
                cut = self._strict.get(q)
                if cut is not None:
                    # A strict subscriber that fell `maxsize` events behind is cut off rather than kept: the
                    # hub holds no backlog for it and its transport is closed by `cut`.
                    self.unsubscribe(q)
                    cut(q.qsize())
                    continue
                q.get_nowait()
            q.put_nowait(item)

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def subscribe(self, last_id: str | None = None, *, maxsize: int = 1000,
                  on_overflow: Callable[[int], None] | None = None) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        """A queue of (id, event); with `last_id` (Last-Event-ID) it starts with the events after that one.

        A subscriber that falls `maxsize` events behind loses its oldest ones (the dashboard reloads what it
        missed), or, with `on_overflow`, is unsubscribed and `on_overflow(events behind)` is called on the
        event loop (WebSocket clients, which cannot ask for what they missed). Delivery never waits for a
        subscriber either way."""
        q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=maxsize)
        if on_overflow is not None:
            self._strict[q] = on_overflow
        if last_id:
            boot, _, n = last_id.partition("-")
            first = self._ring[0][0] if self._ring else self._n + 1
            # ASCII digits of a count this hub could have reached: "²" passes isdigit() and int() refuses it,
            # as it refuses 5,000 digits, and the stream, already answered 200, ended without a word.
            if boot != self.boot or not (n.isascii() and n.isdigit() and len(n) <= 19) or int(n) + 1 < first:
                q.put_nowait((f"{self.boot}-{self._n}", {"type": "resync", "reason": "missed events are gone"}))
            else:
                for i, event in self._ring:
                    if i > int(n) and not q.full():
                        q.put_nowait((f"{self.boot}-{i}", event))
        self._queues.add(q)
        return q

    @contextlib.contextmanager
    def stream_of(self, request: web.Request, refused: type[CodedError] = TooManyStreams) -> Iterator[str]:
        """A place for `request`'s live stream while the block runs (its client's address), else `refused`
        raised before anything is answered: 503 with Retry-After."""
        client = self.client(request)
        why = self.streams.take(client)
        if why is not None:
            raise refused(f"too many live event streams: {why}; try again later")
        try:
            yield client
        finally:
            self.streams.give(client)

    def client(self, request: web.Request) -> str:
        """Whom a request comes from (`hub.auth.client_address`)."""
        return client_address(request, self._proxies)

    def unsubscribe(self, q: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        self._queues.discard(q)
        self._strict.pop(q, None)
        if not self._queues:
            self._left_at = time.monotonic()


class HubApi:
    """Routes for operators, auditors and the public; the domains' route modules come in as `routes`."""

    def __init__(self, hub: Hub, *, auth: Auth, events: Events, exports: Path,
                 routes: Sequence[Callable[[web.Application], None]] = ()) -> None:
        self.hub = hub
        self.auth = auth
        self.exports = exports  # exported bundles, kept a day so a cut download resumes (Range) on the same bytes
        self._export_writers = asyncio.Semaphore(EXPORT_WRITERS)
        self.events = events
        self._streams: set[asyncio.Task[Any]] = set()  # live event streams' handlers, ended at shutdown
        self.routes = tuple(routes)
        hub.listeners.on_records.append(self._on_records)
        hub.listeners.on_checkpoint.append(self._on_checkpoint)

    def _on_records(self, records: list[Record], arrived_at: int) -> None:
        if not self.events.watched:
            return
        for rec in records[-50:]:
            self.events.publish({"type": "record", "record": rec.to_json(), "arrived_at": arrived_at})

    def _on_checkpoint(self, cp: Checkpoint) -> None:
        self.events.publish({"type": "checkpoint", "checkpoint": cp.to_json()})

    def require(self, request: web.Request, *roles: str) -> None:
        self.auth.require(request, *roles)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[errors_middleware, access_middleware(self.auth)],
                              client_max_size=4 * 1024 * 1024)
        app.on_shutdown.append(self._end_streams)
        r = app.router
        r.add_get("/api/status", self.status)
        r.add_get("/api/openapi.json", self.openapi)
        r.add_get("/api/devices", self.devices)
        r.add_get("/api/devices/{device}", self.device)
        r.add_get("/api/devices/{device}/records", self.records)
        r.add_post("/api/enroll", self.enroll)
        r.add_post("/api/devices/{device}/approve", self.approve)
        r.add_post("/api/devices/{device}/revoke", self.revoke)
        r.add_post("/api/devices/{device}/reject", self.reject)
        r.add_post("/api/devices/reject", self.reject_source)
        r.add_post("/api/devices/{device}/resolve-fork", self.resolve)
        r.add_get("/api/heads", self.heads)
        r.add_get("/api/forks", self.forks)
        r.add_get("/api/checkpoints", self.checkpoints)
        r.add_get("/api/checkpoints/latest", self.latest)
        r.add_post("/api/checkpoints", self.sign_now)
        r.add_get("/api/proofs/inclusion/{record}", self.inclusion)
        r.add_get("/api/proofs/consistency", self.consistency)
        r.add_post("/api/ingest/{device}", self.ingest)
        r.add_get("/api/export", self.export)
        r.add_get("/api/export/files/{name}", self.export_file)
        r.add_get("/api/events", self.stream)
        for register in self.routes:
            register(app)
        if STATIC.is_dir():
            r.add_get("/", self.index)
            r.add_get("/verify", self.verify_page)
            r.add_static("/static/", STATIC)
        app.on_startup.append(self._bind)
        app.on_response_prepare.append(private_answers)
        return app

    async def _bind(self, app: web.Application) -> None:
        self.events.bind(asyncio.get_running_loop())

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def verify_page(self, request: web.Request) -> web.Response:
        """The offline bundle verifier, as the one file an auditor can save and use without the hub."""
        page = await asyncio.to_thread(standalone_page)
        return web.Response(text=page, content_type="text/html")

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self.hub.status))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_spec(request.app))

    async def devices(self, request: web.Request) -> web.Response:
        """A page of the devices the hub knows (?limit=&after=, like the chain's health), each with its log; to an
        operator or auditor, also the address each one's enrollment request came from."""
        after, limit = page_query(request.query.items())
        source = self.auth.role(request) in ("operator", "auditor")
        return web.json_response(await asyncio.to_thread(self._devices_page, after, limit, source))

    def _devices_page(self, after: bytes, limit: int, source: bool) -> dict[str, Any]:
        page = device_page(self.hub.store, after=after, limit=limit)
        out = []
        for standing in page.standings:
            state = standing.state
            item = standing.device.to_json(source=source)
            item.update({"length": state.length if state else 0, "head": state.head.hex() if state else None,
                         "last_time": state.time if state else None,
                         "damaged": list(standing.damaged)})  # seqs awaiting restore from an edge or peer
            out.append(item)
        return {"devices": out, "device_count": self.hub.store.device_count(), "next": page.next}

    def _device_id(self, request: web.Request) -> bytes:
        try:
            device_id = bytes.fromhex(request.match_info["device"])
        except ValueError:
            raise HubError("device id must be 32 hex characters") from None
        if len(device_id) != 16:
            raise HubError("device id must be 32 hex characters")
        return device_id

    async def device(self, request: web.Request) -> web.Response:
        device_id = self._device_id(request)
        d = self.hub.store.get_device(device_id)
        if d is None:
            raise NotEnrolled(f"device {device_id.hex()} is not enrolled")
        state = self.hub.store.chain_state(device_id)
        item = d.to_json(source=self.auth.role(request) in ("operator", "auditor"))
        item["length"] = state.length if state else 0
        item["damaged"] = self.hub.store.damaged().get(device_id, [])
        return web.json_response(item)

    async def records(self, request: web.Request) -> web.Response:
        """A range of one device's records with their bodies (auditor or operator)"""
        device_id = self._device_id(request)
        q = http_query(request)
        start = q.get("from", 0)
        end = min(q.get("to", start + 100), start + 1000)
        raws = self.hub.store.log_range(device_id, start, end)
        return web.json_response({"records": [decode_record(r).to_json() for r in raws]})

    async def enroll(self, request: web.Request) -> web.Response:
        device = await asyncio.to_thread(self.hub.enroll, await request.read(), source=self.auth.client(request))
        return web.json_response(device.to_json(), status=201)

    async def approve(self, request: web.Request) -> web.Response:
        self.require(request, "operator")
        device = await asyncio.to_thread(self.hub.approve, self._device_id(request))  # signs and writes the store
        return web.json_response(device.to_json())

    async def revoke(self, request: web.Request) -> web.Response:
        self.require(request, "operator")
        from_seq = http_query(request).get("from")
        device = await asyncio.to_thread(self.hub.revoke, self._device_id(request), from_seq)
        return web.json_response(device.to_json())

    async def reject(self, request: web.Request) -> web.Response:
        self.require(request, "operator")
        dropped = await asyncio.to_thread(self.hub.reject, self._device_id(request))
        return web.json_response({"rejected": [d.to_json(source=True) for d in dropped]})

    async def reject_source(self, request: web.Request) -> web.Response:
        """Every enrollment request waiting that was sent from an address or network (a flood of made-up keys)"""
        self.require(request, "operator")
        dropped = await asyncio.to_thread(self.hub.reject, source=http_query(request)["source"])
        return web.json_response({"rejected": [d.to_json(source=True) for d in dropped]})

    async def resolve(self, request: web.Request) -> web.Response:
        self.require(request, "operator")
        device = await asyncio.to_thread(self.hub.resolve_fork, self._device_id(request))
        return web.json_response(device.to_json())

    async def heads(self, request: web.Request) -> web.Response:
        # Every device's log read from the store: off the event loop, as every read of all devices (public).
        heads = await asyncio.to_thread(self.hub.heads)
        return web.json_response({"heads": [{"device": h.device_id.hex(), "length": h.length,
                                             "head": h.head.hex()} for h in heads]})

    async def forks(self, request: web.Request) -> web.Response:
        """Forks the hub holds evidence of; the evidence itself (two records) for auditors and operators"""
        reader = self.auth.role(request) in ("auditor", "operator")
        out = []
        for device_id, raw in await asyncio.to_thread(self.hub.store.forks):
            ev = ForkEvidence.from_cbor(raw)
            item = {"device": device_id.hex(), "seq": ev.seq, "first": ev.first.id.hex(),
                    "second": ev.second.id.hex()}
            if reader:
                item["evidence"] = raw.hex()
            out.append(item)
        return web.json_response({"forks": out})

    async def checkpoints(self, request: web.Request) -> web.Response:
        return web.json_response({"checkpoints": [c.to_json() for c in self.hub.checkpoints()[-100:]]})

    async def latest(self, request: web.Request) -> web.Response:
        cp = self.hub.latest_checkpoint()
        if cp is None:
            raise NotFound("no checkpoint signed yet")
        return web.json_response(cp.to_json())

    async def sign_now(self, request: web.Request) -> web.Response:
        self.require(request, "operator")
        cp = await asyncio.to_thread(self.hub.checkpoint, force=True)
        assert cp is not None
        return web.json_response(cp.to_json(), status=201)

    async def inclusion(self, request: web.Request) -> web.Response:
        """An inclusion receipt for a record under the latest checkpoint"""
        record_id = RECORD_ID.read(request.match_info["record"])
        index, receipt = await asyncio.to_thread(self.hub.receipt, record_id)
        cp = self.hub.latest_checkpoint()
        assert cp is not None
        return web.json_response({"record": record_id.hex(), "index": index, "tree_size": cp.tree_size,
                                  "root": cp.root.hex(), "receipt": receipt.hex(),
                                  "path": [p.hex() for p in self.hub.tree.inclusion_proof(index, cp.tree_size)]})

    async def consistency(self, request: web.Request) -> web.Response:
        q = http_query(request)
        first, second = q["from"], q["to"]
        proof = await asyncio.to_thread(self.hub.consistency, first, second)
        return web.json_response({"from": first, "to": second, "proof": [p.hex() for p in proof]})

    async def ingest(self, request: web.Request) -> web.Response:
        """Records pushed over HTTP: body is the CBOR records message of the sync protocol."""
        device_id = self._device_id(request)
        dev, _, raws = decode_records(await request.read())
        if dev != device_id:
            raise HubError("records message names another device than the URL")
        result = await asyncio.to_thread(self.hub.ingest, device_id, raws)
        # The result whole (what was accepted before the refusal), under the status of the problem's class.
        return web.json_response(result.to_json(), status=result.http)

    async def export(self, request: web.Request) -> web.StreamResponse:
        """The bundle is written to a file once and served from it: sent in chunks with its length, and a
        client cut off resumes with a Range request on `/api/export/files/{name}` (X-Jejak-Export)."""
        self.require(request, *self.auth.export_roles())
        q = http_query(request)
        async with self._export_writers:
            name = await asyncio.to_thread(
                self._write_export, devices=q.get("device") or None, site=q.get("site"), since=q.get("since"),
                until=q.get("until"), description=q.get("description", ""))
        return self._export_file(name)

    async def export_file(self, request: web.Request) -> web.StreamResponse:
        self.require(request, *self.auth.export_roles())
        name = request.match_info["name"]
        if not re.fullmatch(r"[0-9a-f]{64}", name) or not (self.exports / f"{name}.jejak").is_file():
            raise NotFound(f"export {name[:16]}... is not kept here (the newest {EXPORTS_KEPT} exports are kept "
                           f"{EXPORT_KEEP_S // 3600} h)", hint="start the export again")
        return self._export_file(name)

    def _export_file(self, name: str) -> web.StreamResponse:
        return web.FileResponse(self.exports / f"{name}.jejak", chunk_size=1 << 16, headers={
            "Content-Type": "application/cbor", "X-Jejak-Export": name,
            "Content-Disposition": 'attachment; filename="jejak-audit.jejak"'})

    def _write_export(self, **options: Any) -> str:
        """Write a bundle to a file named by its SHA-256 (kept once), forget exports older than EXPORT_KEEP_S and
        all but the newest EXPORTS_KEPT; return the name. The hub writes the bundle a log at a time, so its memory
        does not follow its size."""
        self.exports.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in [*self.exports.glob("*.jejak"), *self.exports.glob("*.part")]:
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > EXPORT_KEEP_S:
                    old.unlink()
        fd, tmp = tempfile.mkstemp(dir=self.exports, suffix=".part")
        part = Path(tmp)
        try:
            with os.fdopen(fd, "w+b") as out:
                self.hub.export_to(out, **options)
                out.seek(0)
                digest = hashlib.sha256()
                while chunk := out.read(1 << 20):
                    digest.update(chunk)
            name = digest.hexdigest()
            part.replace(self.exports / f"{name}.jejak")
        finally:
            part.unlink(missing_ok=True)
        self._forget_exports(keep=name)
        return name

    def _forget_exports(self, keep: str) -> None:
        """Delete all bundles but `keep` and the newest others, EXPORTS_KEPT in all (one being downloaded goes on:
        its file is open)."""
        kept: list[tuple[float, Path]] = []
        for path in self.exports.glob("*.jejak"):
            with contextlib.suppress(OSError):
                if path.stem != keep:
                    kept.append((path.stat().st_mtime, path))
        for _, path in sorted(kept, reverse=True)[EXPORTS_KEPT - 1:]:
            path.unlink(missing_ok=True)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        # A client that leaves ends its stream, and gives back its place, at once, not at the next keep-alive.
        gone = closed(request)

        def end(_: asyncio.Future[None]) -> None:
            task.cancel()
        gone.add_done_callback(end)
        try:
            with self.events.stream_of(request):
                return await self._stream(request)
        finally:
            gone.remove_done_callback(end)
            self._streams.discard(task)

    async def _end_streams(self, app: web.Application) -> None:
        """At shutdown: end every live event stream, which would otherwise hold the server's stop until its
        client leaves (the browser reconnects to the next hub by itself)."""
        for task in list(self._streams):
            task.cancel()

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        q = self.events.subscribe(request.headers.get("Last-Event-ID") or request.query.get("last_id"))
        # The public dashboard sees that records arrive (device, seq, kind); their bodies (staff cards, tags)
        # only an auditor or operator does.
        reader = self.auth.role(request) in ("auditor", "operator")
        try:
            await resp.write(b"retry: 2000\n: connected\n\n")
            while True:
                try:
                    async with asyncio.timeout(self.events.keepalive_s):
                        event_id, event = await q.get()
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if not reader and event.get("type") == "record":
                    event = {**event, "record": {k: v for k, v in event["record"].items() if k != "body"}}
                await resp.write(f"id: {event_id}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.events.unsubscribe(q)
        return resp


def openapi_spec(app: web.Application) -> dict[str, Any]:
    """OpenAPI 3.1 of the routes actually registered, each described by its typed entry in hub/apidoc.py and
    carrying its access rule as `x-access` (from hub.auth.ACCESS; "none" for a route nobody may call)."""
    paths: dict[str, Any] = {}
    for route in app.router.routes():
        path = template_of(route.resource)
        if not path or route.method == "HEAD" or path.startswith("/static"):
            continue
        doc = apidoc.ROUTES.get((route.method, path))
        operation = _operation(doc) if doc is not None else _undocumented(route.handler, path)
        operation["x-access"] = rule_of(route.method, path) or "none"
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {"openapi": "3.1.0",
            "info": {"title": "Jejak hub API", "version": "1",
                     "description": "Errors answer {\"error\": {code, message, where?, hint?}} with the status the "
                                    "code declares (docs/ERRORS.md); the seed 1 and seed 2 bridges answer in their "
                                    "legacy shapes."},
            "paths": paths,
            "components": {"schemas": {"Error": apidoc.schema_of(apidoc.Error)},
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description":
                                                          "an operator's or auditor's token (the hub keeps only "
                                                          "its SHA-256), or a seed 2 device token"}}}}


_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "public": [], "operator": [{"bearer": []}], "auditor": [{"bearer": []}], "seed2": [{"bearer": []}],
    "export": [{}, {"bearer": []}], "device": [{}, {"bearer": []}]}


def _operation(doc: apidoc.Route) -> dict[str, Any]:
    responses: dict[str, Any] = {str(doc.status): {"description": doc.summary, "content": {
        doc.media: {"schema": doc.answer_schema()}}}}
    if doc.errors != "none":
        body = {"application/json": {"schema": apidoc.ERROR_BODIES[doc.errors]}}
        responses["4XX"] = {"description": "refused: the code says why (docs/ERRORS.md)", "content": body}
        responses["5XX"] = {"description": "not now (SHUTTING_DOWN, STORE_FULL) or a failure the log explains",
                            "content": body}
    op: dict[str, Any] = {"summary": doc.summary, "parameters": [p.to_openapi() for p in doc.params],
                          "responses": responses, "security": _SECURITY[doc.auth]}
    if doc.body is not None:
        media, schema = doc.body
        op["requestBody"] = {"required": True, "content": {media: {"schema": schema}}}
    return op


def _undocumented(handler: Any, path: str) -> dict[str, Any]:
    """A route a caller added (the demo's): its docstring and path parameters, no typed answer."""
    doc = (handler.__doc__ or handler.__name__).strip().splitlines()[0]
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in _path_params(path)]
    return {"summary": doc, "parameters": params, "responses": {"200": {"description": "OK"}},
            "x-jejak-undocumented": True}


def _path_params(path: str) -> list[str]:
    out, rest = [], path
    while "{" in rest:
        start = rest.index("{")
        end = rest.index("}", start)
        out.append(rest[start + 1:end])
        rest = rest[end + 1:]
    return out
