"""The edge's side of transport security: enrollment with a pinned hub key, OSCORE contexts for the hub and
peers, admission of discovered nodes, and the hub's signed revocation list applied to received records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiocoap
from aiocoap.numbers.codes import Code

from coap_server.lanes import Lanes
from coap_server.limits import Refusals
from coap_server.security import (
    AccessPolicy,
    SecurityError,
    close_context,
    credentials_map,
    derive_pair,
    install,
    keys_differ,
    no_context,
    open_context,
    peering_transcript,
    replayed,
    secure_site,
    skip_sequence_numbers,
    write_context,
)
from coap_server.sync import LogHolder
from ledger import Checkpoint, LedgerError, RevokedKey, decode_checkpoint, device_id_for
from ledger.enroll import make_enroll_request, read_grant, read_revocations
from ledger.failures import Unreachable
from ledger.sync import Head

from .config import EdgeConfig
from .sync import ReplicaHolder, SyncAgent, Target
from .witness import HubWitness

log = logging.getLogger("jejak.edge.security")
# The least time between two enrollments an edge sends on its own, when its pinned hub holds no context for it
# (`EdgeSecurity.enroll_again`): a pending device's requests find none either, until it is approved.
ENROLL_AGAIN_S = 600.0
SEQUENCE_SKIP = 1 << 24  # OSCORE sequence numbers skipped when the hub says they were used (again while it does)
ENROLL_SCHEME = "jejak-enroll"


class UntrustedHub(SecurityError):
    """A hub whose key, grant or checkpoint does not match the one pinned at enrollment."""

    code = "UNTRUSTED_HUB"
    coap = "4.03"
    http = 403
    exit_code = 74


# -- enrollment ------------------------------------------------------------------------------------------

# A shell cuts an unquoted QR text at its first `&`, leaving only the hub's address.
_WHOLE_TEXT = ("paste the whole text `jejak enroll qr` printed on the hub, in single quotes: "
               "jejak enroll request 'jejak-enroll:?hub=...&id=...&key=...' --config <edge.toml>")


def parse_enroll_uri(uri: str) -> tuple[str, bytes, bytes]:
    """(hub URL, hub id, hub public key) from the QR code's text; the id must be the key's."""
    parts = urlsplit(uri)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if parts.scheme != ENROLL_SCHEME or not {"hub", "id", "key"} <= set(params):
        missing = sorted({"hub", "id", "key"} - set(params)) if parts.scheme == ENROLL_SCHEME else []
        raise UntrustedHub(f"expected {ENROLL_SCHEME}:?hub=<url>&id=<hub id>&key=<hub key>, got "
                           + (f"one without {', '.join(missing)}" if missing else f"{uri[:60]!r}"), hint=_WHOLE_TEXT)
    try:
        hub_id, key = bytes.fromhex(params["id"]), bytes.fromhex(params["key"])
    except ValueError:
        raise UntrustedHub("QR code: id and key must be hex", hint=_WHOLE_TEXT) from None
    if len(key) != 32 or device_id_for(key) != hub_id:
        raise UntrustedHub("QR code: the hub id is not the id of the hub key it carries",
                           hint="the code was altered; get it again from the hub operator")
    return params["hub"], hub_id, key


def pin_path(data: Path) -> Path:
    return data / "hub.pin"


def load_pin(data: Path) -> dict[str, str] | None:
    path = pin_path(data)
    if not path.exists():
        return None
    pin = json.loads(path.read_text())
    key = bytes.fromhex(pin["key"])
    if device_id_for(key).hex() != pin["id"]:
        raise UntrustedHub(f"{path}: pinned hub id does not match the pinned key", hint="enroll again")
    return dict(pin)


def enroll(uri: str, key: Any, data: Path, *, site: str, role: str, name: str,
           post: Any = None, now: int | None = None) -> dict[str, Any]:
    """Send the signed enrollment request to the hub named by the QR code, check the hub's grant against the
    key the QR code carries, pin that key and derive the device's OSCORE context with the hub."""
    url, hub_id, hub_key = parse_enroll_uri(uri)
    return _enroll_at(url, hub_id, hub_key, key, data, site=site, role=role, name=name, post=post, now=now)


def _enroll_at(url: str, hub_id: bytes, hub_key: bytes, key: Any, data: Path, *, site: str, role: str, name: str,
               post: Any = None, now: int | None = None) -> dict[str, Any]:
    # Each request to the same hub is dated after the one before, whatever the clock says (a Pi without its
    # real-time clock boots in the past): the hub takes no request older than the one whose keys it holds, so
    # an old request sent again by someone who saw it cannot put the old keys back.
    try:
        pinned = load_pin(data)
    except (UntrustedHub, ValueError, KeyError):
        pinned = None
    before = int(pinned.get("time", 0)) if pinned is not None and pinned["id"] == hub_id.hex() else 0
    dated = max(now or int(time.time()), before + 1)
    request = make_enroll_request(key, site=site, role=role, name=name, time=dated, hub_id=hub_id)
    raw = (post or _post)(f"{url}/api/enroll/grant", request)
    try:
        grant = read_grant(raw, hub_key)
    except (LedgerError, ValueError) as exc:
        raise UntrustedHub(f"the answer to the enrollment is not signed by the hub in the QR code ({exc})",
                           hint="another host may be answering for the hub; check the network") from None
    if grant.device_id != key.device_id or grant.request_digest != _sha256(request):
        raise UntrustedHub("the hub's grant is for another request", hint="enroll again")
    keys = derive_pair(key.seed(), key.public_key, hub_key, transcript=request)
    write_context(data / "oscore" / "hub", keys)
    tmp = pin_path(data).with_suffix(".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"id": hub_id.hex(), "key": hub_key.hex(), "url": url, "time": dated}, fh)
    os.replace(tmp, pin_path(data))
    return {"device": key.device_id.hex(), "hub": hub_id.hex(), "status": grant.status}


def _sha256(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()


class EnrollRefused(SecurityError):
    """The hub refused the enrollment request (its own code is in the message)."""

    code = "ENROLL_REFUSED"
    coap = "4.03"
    http = 403
    exit_code = 75


def _post(url: str, body: bytes) -> bytes:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/cose"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            why = f"{err['code']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            why = f"HTTP {exc.code}"
        raise EnrollRefused(f"the hub refused the enrollment ({why})",
                            hint="check that the QR code is this hub's current one") from None
    except (urllib.error.URLError, OSError) as exc:  # the QR code names an address this device cannot reach
        raise Unreachable(f"no answer from the hub at {url}: {getattr(exc, 'reason', exc)}",
                          hint="check that the hub runs and that this device reaches the address in the QR code "
                               "(a hub behind a proxy makes its code with `jejak enroll qr --hub-url "
                               "https://<its public name>`)") from None


def verify_hub_checkpoint(raw: bytes, pin: dict[str, str]) -> Checkpoint:
    """A checkpoint is believed only if the pinned hub key signed it."""
    try:
        cp = decode_checkpoint(raw)
        cp.verify(bytes.fromhex(pin["key"]))
    except LedgerError as exc:
        raise UntrustedHub(f"checkpoint is not signed by the pinned hub ({exc.code})") from None
    return cp


# -- revocations -----------------------------------------------------------------------------------------

class Revocations:
    """The newest revocation list the pinned hub signed: device -> first refused seq. Kept on disk."""

    def __init__(self, path: Path, hub_key: bytes | None) -> None:
        self.path, self.hub_key = path, hub_key
        self.time = -1
        self.points: dict[bytes, int] = {}
        if path.exists() and hub_key is not None:
            with contextlib.suppress(LedgerError, ValueError):
                self.apply(path.read_bytes(), persist=False)

    def apply(self, raw: bytes, *, persist: bool = True) -> bool:
        """Verify and adopt a list; an older one than held is ignored. Raises UntrustedHub if not genuine."""
        if self.hub_key is None:
            raise UntrustedHub("no hub key is pinned; a revocation list cannot be checked", hint="enroll first")
        try:
            revocations = read_revocations(raw, self.hub_key)
        except (LedgerError, ValueError) as exc:
            raise UntrustedHub(f"revocation list not signed by the pinned hub ({exc})") from None
        if revocations.time < self.time:
            return False
        self.time, self.points = revocations.time, revocations.points
        if persist:
            tmp = self.path.with_suffix(".new")
            tmp.write_bytes(raw)
            os.replace(tmp, self.path)
        return True


class GuardedHolder:
    """The store as a sync peer, minus the records of revoked devices from their revocation point."""

    def __init__(self, store: ReplicaHolder, revocations: Revocations) -> None:
        self.store, self.revocations = store, revocations
        self.refused = 0

    def heads(self) -> list[Head]:
        return self.store.heads()

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.store.log_range(device_id, start, end)

    def log_length(self, device_id: bytes) -> int:
        return self.store.log_length(device_id)

    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        # The revocation point is one more input of the store's acceptance: the prefix before it is kept.
        point = self.revocations.points.get(device_id)
        if point is None:
            return self.store.receive(device_id, raws)
        result = self.store.receive(device_id, raws, revoked_from=point)
        if (result.get("problem") or "").startswith(RevokedKey.code):
            refused = len(raws) - result["accepted"] - result["duplicates"]
            self.refused += refused
            log.warning("refused %d records of revoked device %s (revoked from seq %d by the hub)",
                        refused, device_id.hex(), point)
        return result


# -- the node's security -----------------------------------------------------------------------------------

class EdgeSecurity:
    """Contexts, policy, admission and revocations for one edge daemon."""

    def __init__(self, config: EdgeConfig, key: Any) -> None:
        sec = config.security
        self.config, self.key = config, key
        data = config.data_path
        self.pin = load_pin(data)
        self.require = sec.oscore
        if not sec.oscore:
            log.warning("[security] oscore is off: any client on the LAN has this edge sign the observations it "
                        "submits and reads every log the edge holds; turn it on outside a lab (SECURITY.md)")
        self.hub_key = bytes.fromhex(self.pin["key"]) if self.pin else (bytes.fromhex(sec.hub_key)
                                                                        if sec.hub_key else None)
        self.hub_id = device_id_for(self.hub_key) if self.hub_key else None
        self.revocations = Revocations(data / "revocations.cose", self.hub_key)
        self.credentials = credentials_map()
        self.hub_ctx: Any = None
        self.peer_ctx: dict[bytes, Any] = {}  # peer device id -> context
        self.peer_urls: dict[str, bytes] = {}  # url -> peer device id
        self.refused: dict[str, int] = {}
        # Refused announcements, counted by code in `refused` and logged at most once a minute with their count:
        # anyone on the LAN announces as many as it likes, and a line each filled the log (an edge's SD card).
        self.refusals = Refusals("mDNS announcements", log=log, tally=self.refused)
        staff = frozenset(s.lower() for s in config.checkpoint.staff) if sec.oscore else frozenset()
        self.policy = AccessPolicy(require_oscore=sec.oscore, read=sec.read, own=key.device_id, staff=staff,
                                   submitters=frozenset(bytes.fromhex(s) for s in sec.submitters),
                                   admitted=self.admitted)
        self._open_hub_context()
        for entry in sec.peer_keys:
            url, _, pub = entry.rpartition(" ")
            self._peer(bytes.fromhex(pub), url or None)
        for entry in sec.phone_keys:
            self._peer(bytes.fromhex(entry), None, kind="phone")

    def admitted(self, device: bytes) -> bool:
        """A key the hub revoked uses no context here, whatever seq the revocation starts at."""
        return device not in self.revocations.points

    def drop_revoked(self) -> None:
        """Close the contexts of peers and phones the hub's newest revocation list names."""
        for device in [d for d in self.peer_ctx if d in self.revocations.points]:
            ctx = self.peer_ctx.pop(device)
            close_context(ctx)
            for name in [n for n, c in self.credentials.items() if c is ctx]:
                del self.credentials[name]
            self.peer_urls = {u: d for u, d in self.peer_urls.items() if d != device}
            log.warning("OSCORE context of %s closed: the hub revoked its key", device.hex())

    def enroll_again(self) -> dict[str, Any]:
        """Enroll with the pinned hub again, with a new signed request, and load the context derived from it: the
        hub holds none for this edge (its oscore directory was lost, as when a hub that keeps its state in
        PostgreSQL starts on a new data_dir), or one of keys from before (an old copy of it). A hub that keeps the device approved grants a new context at once;
        the new request makes new keys, so no sequence number of the old ones is used with them. The grant is
        believed only if the pinned key signed it. Blocking (an HTTP request): run it in a thread."""
        if self.pin is None:
            raise UntrustedHub("no hub is pinned: this edge was never enrolled", hint=_WHOLE_TEXT)
        cfg, data = self.config, self.config.data_path
        old, self.hub_ctx = self.hub_ctx, None
        self.credentials.pop(":hub", None)
        if old is not None:
            close_context(old)
        try:
            return _enroll_at(self.pin["url"], bytes.fromhex(self.pin["id"]), bytes.fromhex(self.pin["key"]), self.key,
                              data, site=cfg.site, role=cfg.checkpoint.role, name=cfg.name or cfg.site)
        finally:  # the new context, or the old one if the hub did not answer
            self._open_hub_context()

    def _open_hub_context(self) -> None:
        """Load the context with the hub (data_dir/oscore/hub) if enrollment left one."""
        where = self.config.data_path / "oscore" / "hub"
        if (where / "secret.json").exists():
            self.hub_ctx = open_context(where, f"hub:{self.hub_id.hex() if self.hub_id else ''}")
            self.credentials[":hub"] = self.hub_ctx

    def _peer(self, pub: bytes, url: str | None, kind: str = "peer") -> None:
        peer = device_id_for(pub)
        if not self.admitted(peer):
            log.warning("%s %s is revoked by the hub; no context", kind, peer.hex())
            return
        keys = derive_pair(self.key.seed(), self.key.public_key, pub,
                           transcript=peering_transcript(self.key.public_key, pub))
        where = self.config.data_path / "oscore" / f"{kind}-{peer.hex()}"
        write_context(where, keys)
        ctx = open_context(where, f"{kind}:{peer.hex()}")
        self.peer_ctx[peer] = ctx
        self.credentials[f":{kind}-{peer.hex()}"] = ctx
        if url:
            self.peer_urls[url] = peer

    # -- serving ------------------------------------------------------------------------------------------
    def holder(self, store: ReplicaHolder) -> GuardedHolder:
        return GuardedHolder(store, self.revocations)

    def wrap(self, site: Any) -> Any:
        return secure_site(site, self.policy, self.credentials)

    # -- discovery and syncing ------------------------------------------------------------------------------
    def admit(self, role: str, device_hex: str, url: str) -> bool:
        """Whether a node announced on the LAN becomes a sync target. An announcement proves nothing, so a
        hub must be the pinned one and, with OSCORE on, a peer must be one we hold a context for."""
        try:
            device = bytes.fromhex(device_hex)
        except ValueError:
            device = b""
        if role == "hub":
            if self.hub_id is not None and device != self.hub_id:
                self._refuse("UNTRUSTED_HUB", url, f"announced hub {device_hex[:32]} is not the pinned hub "
                                                   f"{self.hub_id.hex()}")
                return False
            if self.require and self.hub_ctx is None:
                self._refuse("UNTRUSTED_HUB", url, "no security context with this hub (not enrolled)")
                return False
            return True
        if self.require and device not in self.peer_ctx:
            self._refuse("UNTRUSTED_PEER", url, f"peer {device_hex[:32]} not in [security] peer_keys")
            return False
        if device in self.peer_ctx:
            self.peer_urls[url] = device
        return True

    def _refuse(self, code: str, url: str, message: str) -> None:
        """Count a refused announcement under its code; the log gets at most a line a minute (`Refusals`)."""
        self.refusals.refuse(url, f"{code}: {message}", code)

    def client_entries(self, targets: dict[str, str]) -> dict[str, Any]:
        """URL pattern -> context for each sync target (url -> role) we can protect requests to."""
        out = {}
        for url, role in targets.items():
            ctx = self.hub_ctx if role == "hub" else self.peer_ctx.get(self.peer_urls.get(url, b""))
            if ctx is not None:
                out[f"{url}/*"] = ctx
        return out

    def can_protect(self, url: str, role: str) -> bool:
        return bool(self.client_entries({url: role}))

    def agent(self, holder: LogHolder, **kwargs: Any) -> SecureSyncAgent:
        return SecureSyncAgent(self, holder, **kwargs)

    async def fetch_revocations(self, ctx: aiocoap.Context, hub_url: str) -> bool:
        msg = aiocoap.Message(code=Code.GET, uri=f"{hub_url}/security/revocations")
        async with asyncio.timeout(30):  # not wait_for, which can drop a cancel on 3.11 (coap_server.sync)
            response = await ctx.request(msg).response
        if not response.code.is_successful():
            return False
        if not self.revocations.apply(response.payload):
            return False
        self.drop_revoked()
        return True

    def status(self) -> dict[str, Any]:
        return {"oscore_required": self.require, "hub_pinned": self.hub_id.hex() if self.hub_id else None,
                "hub_context": self.hub_ctx is not None, "peers": sorted(p.hex() for p in self.peer_ctx),
                "revoked": {d.hex(): s for d, s in self.revocations.points.items()},
                "refused": {**self.refused, **self.policy.refused}}

    def close(self) -> None:
        for ctx in [self.hub_ctx, *self.peer_ctx.values()]:
            if ctx is not None:
                close_context(ctx)
        self.credentials.clear()


class SecureSyncAgent(SyncAgent):
    """The sync agent with OSCORE credentials for its targets; with OSCORE required, targets it cannot protect
    requests to are skipped. Hub rounds also fetch the hub's signed revocation list."""

    def __init__(self, security: EdgeSecurity, holder: LogHolder, **kwargs: Any) -> None:
        super().__init__(holder, **kwargs)
        self.security = security
        self.revocations_every = security.config.security.revocations_interval_s
        self._revocations_at = -1e18
        self._told: set[str] = set()  # targets skipped for want of a context, said once each
        self._enroll_again_at = -1e18  # the monotonic time from which this edge may enroll again on its own
        # The hub's checkpoints, checked after each sync with it (edge/witness.py); none without a pinned key.
        self.witness = HubWitness(security.config.data_path, security.hub_key, every=self.interval,
                                  timeout=self.request_timeout) if security.hub_key is not None else None

    async def round(self, ctx: aiocoap.Context, lanes: Lanes | None = None) -> dict[str, Any]:
        sec = self.security
        self.protect(ctx)
        if sec.require:
            for target in list(self.targets.values()):
                if (target.role == "hub" and sec.hub_ctx is None and sec.pin is not None
                        and await self._enroll_again(target)):  # its oscore/hub lost, its pin and key kept
                    self.protect(ctx)
                if not sec.can_protect(target.url, target.role):
                    target.next_try = self.monotonic() + self.interval
                    target.last_error = "OSCORE_REQUIRED: no security context for this target"
                    self._tell_unprotected(target.url, target.role)
        now = self.monotonic()
        if sec.hub_key is not None and now - self._revocations_at >= self.revocations_every:
            for target in self.targets.values():
                if target.role == "hub" and sec.can_protect(target.url, "hub"):
                    try:
                        await sec.fetch_revocations(ctx, target.url)
                        self._revocations_at = now
                    except Exception as exc:  # unreachable or refusing: the next round retries
                        log.info("revocation list from %s: %s", target.url, type(exc).__name__)
        reports = await super().round(ctx, lanes)
        if self.witness is not None:
            hubs = [url for url in reports if url in self.targets and self.targets[url].role == "hub"]
            for url in hubs:
                await self.witness.after_sync(ctx, url)
            hub = hubs[0] if hubs else None  # a hub that took this round answers the consistency proofs
            for url in reports:
                if url in self.targets and self.targets[url].role == "edge":
                    await self.witness.compare(ctx, url, hub)
        return reports

    def protect(self, ctx: aiocoap.Context) -> None:
        install(ctx.client_credentials, self.security.client_entries({t.url: t.role for t in self.targets.values()}))

    def reachable(self, target: Target) -> bool:
        return not self.security.require or self.security.can_protect(target.url, target.role)

    async def recover(self, target: Target, exc: BaseException) -> bool:
        ctx = self.security.hub_ctx
        if target.role != "hub" or ctx is None:
            return False
        if no_context(exc) or keys_differ(exc):
            return await self._enroll_again(target)
        if not replayed(exc):
            return False
        # The hub has seen this context's sequence numbers: oscore/hub is an old copy (a card restored from a
        # backup). Past every number used since, requests are read again; not past them, the next refusal skips
        # again.
        skip_sequence_numbers(ctx, SEQUENCE_SKIP)
        log.warning("hub %s refuses this edge's OSCORE requests as replays: its oscore/hub state is an old copy "
                    "(restored from a backup?); its sequence number is moved %d ahead", target.url, SEQUENCE_SKIP)
        return True

    async def _enroll_again(self, target: Target) -> bool:
        """The hub holds no context for this edge, or one of other keys, or this edge lost its own (`oscore/hub`,
        its pin and key kept): enroll again (`EdgeSecurity.enroll_again`), at most once every ENROLL_AGAIN_S; True
        once an approved device's grant came (the request is tried again at once)."""
        now = self.monotonic()
        if now < self._enroll_again_at:
            return False
        self._enroll_again_at = now + ENROLL_AGAIN_S
        try:
            answer = await asyncio.to_thread(self.security.enroll_again)
        except Exception as exc:  # unreachable, refused (a revoked key) or not the pinned hub: said, tried later
            log.warning("hub %s holds no OSCORE context with this edge's keys, and enrolling again failed (%s: %s); "
                        "next try in %.0f s", target.url, getattr(exc, "code", type(exc).__name__), exc,
                        ENROLL_AGAIN_S)
            return False
        log.log(logging.WARNING if answer["status"] == "active" else logging.INFO,
                "hub %s held no OSCORE context with this edge's keys (its oscore state was lost or is an old copy, "
                "or the device waits for approval): enrolled again with a new request, %s", target.url,
                answer["status"],
                extra={"fields": {"peer": target.url, "event": "enrolled_again", "status": answer["status"]}})
        return answer["status"] == "active"

    def _tell_unprotected(self, url: str, role: str) -> None:
        """Say once why nothing goes to a target: with [security] oscore on, requests go only where this edge
        holds a context (an edge that is not enrolled yet would otherwise keep its records in silence)."""
        if url in self._told:
            return
        self._told.add(url)
        fix = ("enroll this edge with the hub's QR text: jejak enroll request 'jejak-enroll:?hub=...' --config "
               "<edge.toml>, then start the edge again" if role == "hub" else
               "add the peer's key to [security] peer_keys (\"coap://host:port <key hex>\"), then start the edge again")
        log.warning("%s %s gets nothing from this edge: [security] oscore is on and this edge has no OSCORE context "
                    "with it; fix: %s", role, url, fix,
                    extra={"fields": {"peer": url, "code": "OSCORE_REQUIRED", "fix": fix}})
