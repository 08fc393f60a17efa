"""The hub's side of transport security: enrollment grants, device OSCORE contexts, signed revocation lists."""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiohttp import web

from coap_server.security import (
    AccessPolicy,
    close_context,
    credentials_map,
    derive_pair,
    open_context,
    secure_site,
    write_context,
)
from ledger import cbor as lcbor
from ledger import device_id_for
from ledger.cose import ALG_EDDSA, HDR_ALG, HDR_KID, parse_sign1, sign1

from .service import Hub, HubError, read_enroll_request

log = logging.getLogger("jejak.hub.security")
GRANT_AAD = b"jejak/enroll-grant/v1"
REVOCATIONS_AAD = b"jejak/revocations/v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """The hub's signed answer to an enrollment: who it is, whom it enrolled, and what it was asked."""

    hub_id: bytes
    device_id: bytes
    request_digest: bytes
    status: str


def make_grant(hub: Hub, request: bytes, status: str) -> bytes:
    device = read_enroll_request(request).device_id
    payload = lcbor.encode([hub.hub_id, device, hashlib.sha256(request).digest(), status])
    return sign1(hub.signer, headers={HDR_ALG: ALG_EDDSA}, unprotected={HDR_KID: hub.hub_id}, payload=payload,
                 external_aad=GRANT_AAD)


def read_grant(raw: bytes, hub_key: bytes) -> Grant:
    """Verify a grant against the hub key pinned from the QR code; anything else raises."""
    msg = parse_sign1(raw, what="enrollment grant")
    msg.verify(hub_key, GRANT_AAD, where="enrollment grant")
    item = lcbor.decode(msg.payload or b"", what="enrollment grant")
    if not (isinstance(item, list) and len(item) == 4 and all(isinstance(x, bytes) for x in item[:3])
            and isinstance(item[3], str)):
        raise HubError("enrollment grant: expected [hub id, device id, request digest, status]")
    if item[0] != device_id_for(hub_key):
        raise HubError("enrollment grant names another hub than the pinned key")
    return Grant(hub_id=item[0], device_id=item[1], request_digest=item[2], status=item[3])


def make_revocations(hub: Hub) -> bytes:
    revoked = sorted([d.device_id, d.revoked_from] for d in hub.store.devices()
                     if d.status == "revoked" and d.revoked_from is not None)
    payload = lcbor.encode([hub.hub_id, hub.clock(), revoked])
    return sign1(hub.signer, headers={HDR_ALG: ALG_EDDSA}, unprotected={HDR_KID: hub.hub_id}, payload=payload,
                 external_aad=REVOCATIONS_AAD)


def read_revocations(raw: bytes, hub_key: bytes) -> tuple[int, dict[bytes, int]]:
    """(time, device -> first refused seq) from a revocation list signed by the pinned hub key."""
    msg = parse_sign1(raw, what="revocation list")
    msg.verify(hub_key, REVOCATIONS_AAD, where="revocation list")
    item = lcbor.decode(msg.payload or b"", what="revocation list")
    if not (isinstance(item, list) and len(item) == 3 and item[0] == device_id_for(hub_key)
            and isinstance(item[1], int) and isinstance(item[2], list)):
        raise HubError("revocation list: expected [hub id of the pinned key, time, [[device, from seq], ...]]")
    out: dict[bytes, int] = {}
    for entry in item[2]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes)
                and len(entry[0]) == 16 and isinstance(entry[1], int) and entry[1] >= 0):
            raise HubError("revocation list: an entry is not [16-byte device id, seq]")
        out[entry[0]] = entry[1]
    return item[1], out


class RevocationsResource(resource.Resource):
    """GET the hub's signed revocation list (public: it is signed, and says nothing secret)."""

    def __init__(self, security: HubSecurity) -> None:
        super().__init__()
        self.security = security

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CONTENT, content_format=60, payload=make_revocations(self.security.hub))


class HubSecurity:
    """Enrollment grants and one OSCORE context per enrolled device, kept under <data_dir>/oscore/."""

    def __init__(self, hub: Hub, data_dir: Path, *, require_oscore: bool = False,
                 read: tuple[str, ...] = ("*:*",)) -> None:
        self.hub = hub
        self.dir = Path(data_dir) / "oscore"
        self.credentials = credentials_map()
        self.contexts: dict[bytes, Any] = {}
        self.policy = AccessPolicy(require_oscore=require_oscore, read=read)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in sorted(self.dir.iterdir()):
            device = _hex_id(sub.name)
            if device is not None and (sub / "secret.json").exists():
                self._load(device)

    def _load(self, device: bytes) -> None:
        if device in self.contexts:
            return
        ctx = open_context(self.dir / device.hex(), f"device:{device.hex()}")
        self.contexts[device] = ctx
        self.credentials[f":device-{device.hex()}"] = ctx

    def grant(self, request: bytes) -> bytes:
        """Enroll (signed request, as POST /api/enroll does), derive the device's OSCORE context, answer with a
        grant the device checks against the hub key from its QR code."""
        req = read_enroll_request(request)
        device = self.hub.enroll(request)
        if device.pubkey != req.pubkey:  # an enrolled device id always keeps its key
            raise HubError("device id is enrolled with another key")
        keys = derive_pair(self.hub.signer.seed(), self.hub.signer.public_key, req.pubkey,  # type: ignore[attr-defined]
                           transcript=request)
        old = self.contexts.pop(device.device_id, None)
        if old is not None:  # a repeated enrollment: same secret keeps its counters, a new one starts over
            close_context(old)
        write_context(self.dir / device.device_id.hex(), keys)
        self._load(device.device_id)
        log.info("enrollment grant for %s (%s)", device.device_id.hex(), device.status)
        return make_grant(self.hub, request, device.status)

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
        grant = await asyncio.to_thread(self.grant, body)
        return web.Response(body=grant, status=201, content_type="application/cose")

    async def _http_revocations(self, request: web.Request) -> web.Response:
        """The signed revocation list: devices and the seq from which their records are refused."""
        return web.Response(body=make_revocations(self.hub), content_type="application/cose")

    def close(self) -> None:
        for ctx in self.contexts.values():
            close_context(ctx)
        self.contexts.clear()
        self.credentials.clear()

    def forget(self, device: bytes) -> None:
        """Drop a device's context (after revocation of its key, re-enrollment starts a fresh one)."""
        ctx = self.contexts.pop(device, None)
        if ctx is not None:
            close_context(ctx)
            self.credentials.pop(f":device-{device.hex()}", None)
        shutil.rmtree(self.dir / device.hex(), ignore_errors=True)


def _hex_id(name: str) -> bytes | None:
    try:
        raw = bytes.fromhex(name)
    except ValueError:
        return None
    return raw if len(raw) == 16 else None
