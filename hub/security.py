"""The hub's side of transport security: enrollment grants, device OSCORE contexts, signed revocation lists."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiohttp import web

from coap_server import blocks
from coap_server.security import (
    AccessPolicy,
    close_context,
    credentials_map,
    derive_pair,
    holds_context,
    open_context,
    peering_transcript,
    secure_site,
    write_context,
)
from ledger import enroll

from .config import ConfigError, parse_upstream
from .service import Hub, HubError
from .store import DeviceInfo

log = logging.getLogger("jejak.hub.security")


def make_revocations(hub: Hub) -> bytes:
    """The hub's current revocation list, signed: derived from the decisions in its own log, the same entries
    an auditor derives revocation points from (ledger.authority)."""
    return enroll.make_revocations(hub.signer, time=hub.clock(), revoked=hub.authority.revocations())


class RevocationsResource(blocks.Resource):
    """GET the hub's signed revocation list (public: it is signed, and says nothing secret)."""

    def __init__(self, security: HubSecurity) -> None:
        super().__init__()
        self.security = security

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CONTENT, content_format=60, payload=make_revocations(self.security.hub))


class StaleEnrollment(HubError):
    """An enrollment request dated no later than the one whose keys the hub holds for the device: an old request
    sent again (anyone who saw it may), which would put back keys the device no longer uses."""

    code = "ENROLL_STALE"
    coap = "4.09"
    http = 409
    exit_code = 59


ADMITTED = ("active", "forked")  # approved keys; a forked device still restores and is read by its rules


class HubSecurity:
    """Enrollment grants and one OSCORE context per approved device, kept under <data_dir>/oscore/.

    A context is derived when the device enrolls (its signed request is the transcript) but loaded only
    while the device is approved: a pending key's requests find no context, and revocation drops it at once
    (and deletes it, so re-enrollment with a new key starts over), unless the revocation point is past what the
    hub holds of the device's log (`_owed`)."""

    def __init__(self, hub: Hub, data_dir: Path, *, require_oscore: bool = False,
                 read: tuple[str, ...] = ("*:self",), peer_hubs: tuple[str, ...] = (),
                 client: Callable[[web.Request], str] = lambda request: request.remote or "") -> None:
        self.hub = hub
        self.client = client  # the address an HTTP request comes from, kept with its enrollment
        self.dir = Path(data_dir) / "oscore"
        self.credentials = credentials_map()
        self.contexts: dict[bytes, Any] = {}
        self.hub_contexts: dict[bytes, Any] = {}  # hubs pulling from this one, and hubs this one pulls from
        self.policy = AccessPolicy(require_oscore=require_oscore, read=read, admitted=self.admitted)
        if not require_oscore:
            log.warning("[security] oscore is off: unprotected CoAP clients are served as anonymous ones, who read "
                        "every device's records; turn it on outside a lab (SECURITY.md)")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in sorted(self.dir.iterdir()):
            device = _hex_id(sub.name)
            if device is not None and (sub / "secret.json").exists():
                self._follow(device)
        hub.listeners.on_device.append(lambda info: self._follow(info.device_id))
        for key in peer_hubs:  # a national hub that pulls this one's logs: a pair context like two peers'
            peer = self._hub_context(bytes.fromhex(key), "hub")
            self.credentials[f":hub-{peer.hex()}"] = self.hub_contexts[peer]

    def _hub_context(self, key: bytes, kind: str) -> bytes:
        """The pair context with another hub, bound to both hub keys (the peering transcript)."""
        signer = self.hub.signer
        keys = derive_pair(signer.seed(), signer.public_key, key,  # type: ignore[attr-defined]
                           transcript=peering_transcript(signer.public_key, key))
        where = self.dir / f"{kind}-{keys.peer.hex()}"
        write_context(where, keys)
        self.hub_contexts[keys.peer] = open_context(where, f"hub:{keys.peer.hex()}")
        return keys.peer

    def upstream_contexts(self, upstreams: tuple[str, ...]) -> dict[str, Any]:
        """Client contexts for the regional hubs a national hub pulls from: url -> context, for the entries
        that name the regional hub's key ("coap://host:port <key hex>"); a bare address is pulled in the clear."""
        out = {}
        for n, upstream in enumerate(map(parse_upstream, upstreams), 1):
            if upstream.key == self.hub.signer.public_key:
                raise ConfigError(f"upstream entry {n} ({upstream.url}) names this hub's own key "
                                  f"{upstream.key.hex()}, not a regional hub's", where=f"upstream[{n}]",
                                  hint="pin the regional hub's key (hex), as its operators give it: this hub's own "
                                       "never goes in upstream")
            if upstream.key is not None:
                out[upstream.url] = self.hub_contexts[self._hub_context(upstream.key, "upstream")]
            else:
                log.warning("upstream %s names no hub key: pulled without OSCORE", upstream.url)
        return out

    def admitted(self, device: bytes) -> bool:
        """Whether a key may use its context now (asked on every request)."""
        if device in self.hub_contexts:
            return True
        info = self.hub.store.get_device(device)
        return info is not None and (info.status in ADMITTED or self._owed(info))

    def _owed(self, info: DeviceInfo) -> bool:
        """Whether a revoked device still has records the hub accepts and does not hold: revoked from a seq past
        the hub's copy of its log (a stolen device whose last records had not come in). It keeps its context
        until the hub holds its log up to that point; its records from there on are refused as any revoked
        record is."""
        if info.status != "revoked" or info.revoked_from is None:
            return False
        state = self.hub.store.chain_state(info.device_id)
        return (state.length if state is not None else 0) < info.revoked_from

    def _follow(self, device: bytes) -> None:
        """Load, keep or drop the device's context to match its status."""
        info = self.hub.store.get_device(device)
        status = info.status if info is not None else "unknown"
        if status in ADMITTED or (info is not None and self._owed(info)):
            if (self.dir / device.hex() / "secret.json").exists():
                self._load(device)
        elif status == "pending":
            self._unload(device)
        else:
            self.forget(device)
            log.warning("OSCORE context of %s removed (%s)", device.hex(),
                        "not enrolled" if info is None else status)

    def _load(self, device: bytes) -> None:
        if device in self.contexts:
            return
        ctx = open_context(self.dir / device.hex(), f"device:{device.hex()}")
        self.contexts[device] = ctx
        self.credentials[f":device-{device.hex()}"] = ctx

    def _unload(self, device: bytes) -> None:
        ctx = self.contexts.pop(device, None)
        self.credentials.pop(f":device-{device.hex()}", None)
        if ctx is not None:
            close_context(ctx)

    def grant(self, request: bytes, *, source: str = "") -> bytes:
        """Enroll (signed request, as POST /api/enroll does), derive the device's OSCORE context, answer with a
        grant the device checks against the hub key from its QR code. The context is usable once approved."""
        req = enroll.read_enroll_request(request)
        device = self.hub.enroll(request, source=source)
        if device.pubkey != req.pubkey:  # an enrolled device id always keeps its key
            raise HubError("device id is enrolled with another key")
        if device.status == "revoked":
            raise HubError(f"device {device.device_id.hex()} is revoked; enroll a new key",
                           hint="a revoked key is not granted a context again")
        keys = derive_pair(self.hub.signer.seed(), self.hub.signer.public_key, req.pubkey,  # type: ignore[attr-defined]
                           transcript=request)
        where = self.dir / device.device_id.hex()
        # A repeated enrollment: the same request (anyone who saw it may send it again) keeps the context as it is
        # loaded, where closing and opening it again refused the device's requests in between; another request
        # of the same key starts the counters over.
        if not holds_context(where, keys):
            in_force = _granted_time(where)
            if in_force is not None and req.time <= in_force:
                raise StaleEnrollment(f"enrollment request of {device.device_id.hex()} dated {req.time}, not after "
                                      f"the one whose keys this hub holds ({in_force}): the context is kept",
                                      hint="an edge dates each request after its last (hub.pin); enroll it again")
            self._unload(device.device_id)
            write_context(where, keys)
            _keep_granted_time(where, req.time)
        self._follow(device.device_id)
        log.info("enrollment grant for %s (%s)", device.device_id.hex(), device.status)
        return enroll.make_grant(self.hub.signer, request, device.status)

    def wrap(self, site: resource.Site) -> Any:
        site.add_resource(["security", "revocations"], RevocationsResource(self))
        return secure_site(site, self.policy, self.credentials)

    def register(self, app: web.Application) -> None:
        app.router.add_post("/api/enroll/grant", self._http_grant)
        app.router.add_get("/api/revocations", self._http_revocations)

    async def _http_grant(self, request: web.Request) -> web.Response:
        """Enroll a device by its signed request; the answer is a COSE grant signed by the hub."""
        import asyncio

        body = await request.read()
        grant = await asyncio.to_thread(self.grant, body, source=self.client(request))
        return web.Response(body=grant, status=201, content_type="application/cose")

    async def _http_revocations(self, request: web.Request) -> web.Response:
        """The signed revocation list: devices and the seq from which their records are refused."""
        return web.Response(body=make_revocations(self.hub), content_type="application/cose")

    def close(self) -> None:
        for ctx in self.hub_contexts.values():
            close_context(ctx)
        self.hub_contexts.clear()
        for ctx in self.contexts.values():
            close_context(ctx)
        self.contexts.clear()
        self.credentials.clear()

    def forget(self, device: bytes) -> None:
        """Drop a device's context and delete it (after revocation of its key)."""
        self._unload(device)
        shutil.rmtree(self.dir / device.hex(), ignore_errors=True)


GRANTED = "granted.json"  # beside a device's context: the time of the request its keys were derived from


def _granted_time(where: Path) -> int | None:
    """The time of the enrollment request whose keys the context at `where` holds; None for none kept."""
    try:
        return int(json.loads((where / GRANTED).read_text())["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _keep_granted_time(where: Path, at: int) -> None:
    tmp = where / (GRANTED + ".new")
    tmp.write_text(json.dumps({"time": at}))
    os.replace(tmp, where / GRANTED)


def _hex_id(name: str) -> bytes | None:
    try:
        raw = bytes.fromhex(name)
    except ValueError:
        return None
    return raw if len(raw) == 16 else None
