"""OSCORE for the log protocol: pairwise contexts from enrolled Ed25519 keys, and who may read, push and submit.

Contexts are not negotiated with EDHOC: both ends already hold Ed25519 keys whose public halves the other
end learnt at enrollment (the hub's from the QR code, the device's from its signed request), so the OSCORE
master secret is derived from a static X25519 agreement between those keys (RFC 7748 birational map of the
Ed25519 keys), bound by HKDF (RFC 5869) to the enrollment transcript. Only the two key holders can compute
it. The derived contexts live in aiocoap `FilesystemSecurityContext` directories, which persist the sender
sequence number and the replay window, so a restart neither reuses a nonce nor accepts an old message.

aiocoap serves unprotected requests next to protected ones: `SecureSite` sits between aiocoap's
`OscoreSiteWrapper` and the real site and refuses what the `AccessPolicy` does not allow, with a stable code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiocoap
from aiocoap import interfaces
from aiocoap.numbers.codes import Code
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger import device_id_for
from ledger.errors import CodedError
from ledger.sync import Head

from . import errors
from .errors import NotFound
from .limits import Refusals
from .params import coap_query
from .sync import RECORDS_QUERY

log = logging.getLogger("jejak.security")

CBOR = 60
OSCORE_INFO = b"jejak/oscore/v1"
ID_BYTES = 7  # the longest sender id AES-CCM-16-64-128 allows (13-byte nonce - 6)
SECRET_BYTES = 16
SALT_BYTES = 8
_P = 2**255 - 19

class SecurityError(errors.RequestError):
    """A request refused for who sent it, not for what it says."""

    code = "NOT_AUTHORIZED"
    coap = "4.03"
    http = 403
    exit_code = 70


class BadKey(SecurityError):
    """A key or secret that cannot be used: wrong length, not a point, colliding ids, readable by others."""

    code = "BAD_KEY"
    coap = "4.00"
    http = 400
    exit_code = 71


class OscoreRequired(SecurityError):
    """An unprotected request where this node serves OSCORE-protected ones only."""

    code = "OSCORE_REQUIRED"
    coap = "4.01"
    http = 401
    exit_code = 72


class StaffNotAllowed(SecurityError):
    """A scan naming a staff card that is not on the checkpoint's allow-list."""

    code = "STAFF_NOT_ALLOWED"
    coap = "4.03"
    http = 403
    exit_code = 73


# -- key agreement -----------------------------------------------------------------------------------------

def x25519_private(seed: bytes) -> X25519PrivateKey:
    """The X25519 key of an Ed25519 seed: the clamped half of SHA-512(seed) is the scalar of both."""
    if len(seed) != 32:
        raise BadKey(f"expected a 32-byte Ed25519 seed, got {len(seed)} bytes")
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])


def x25519_public(ed25519_public: bytes) -> X25519PublicKey:
    """The Montgomery u of an Edwards point: u = (1 + y) / (1 - y) mod p."""
    if len(ed25519_public) != 32:
        raise BadKey(f"expected a 32-byte Ed25519 public key, got {len(ed25519_public)} bytes")
    y = int.from_bytes(ed25519_public, "little") & ((1 << 255) - 1)
    if y >= _P or y == 1:
        raise BadKey("Ed25519 public key is not a usable point")
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return X25519PublicKey.from_public_bytes(u.to_bytes(32, "little"))


@dataclass(frozen=True, slots=True, kw_only=True)
class PairKeys:
    """The OSCORE parameters one end of a pair uses (the other end has sender and recipient swapped)."""

    secret: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    sender_id: bytes
    recipient_id: bytes
    peer: bytes  # the other end's device (or hub) id

    def __post_init__(self) -> None:
        if self.sender_id == self.recipient_id:
            raise BadKey("sender and recipient ids collide; the pair cannot share one context")


def oscore_id(device_id: bytes) -> bytes:
    return device_id[:ID_BYTES]


def derive_pair(my_seed: bytes, my_public: bytes, peer_public: bytes, *, transcript: bytes) -> PairKeys:
    """Master secret and salt for the pair (me, peer), bound to `transcript` (the enrollment request, or the
    peering statement); both ends compute the same values, nobody else can."""
    try:
        shared = x25519_private(my_seed).exchange(x25519_public(peer_public))
    except ValueError:  # an all-zero result: a small-order point chosen to force a known secret
        raise BadKey("peer key gives a degenerate X25519 agreement") from None
    lo, hi = sorted((my_public, peer_public))
    okm = HKDF(algorithm=hashes.SHA256(), length=SECRET_BYTES + SALT_BYTES,
               salt=hashlib.sha256(transcript).digest(), info=OSCORE_INFO + lo + hi).derive(shared)
    me, peer = device_id_for(my_public), device_id_for(peer_public)
    return PairKeys(secret=okm[:SECRET_BYTES], salt=okm[SECRET_BYTES:], sender_id=oscore_id(me),
                    recipient_id=oscore_id(peer), peer=peer)


def peering_transcript(a: bytes, b: bytes) -> bytes:
    """What a peer pair's context is bound to: both public keys, in order."""
    lo, hi = sorted((a, b))
    return b"jejak/peer/v1" + lo + hi


# -- contexts on disk --------------------------------------------------------------------------------------

def _secret(keys: PairKeys) -> dict[str, str]:
    return {"secret_hex": keys.secret.hex(), "salt_hex": keys.salt.hex(), "sender-id_hex": keys.sender_id.hex(),
            "recipient-id_hex": keys.recipient_id.hex(), "peer_hex": keys.peer.hex()}


def holds_context(directory: Path, keys: PairKeys) -> bool:
    """Whether the context directory already holds these keys (writing them again would change nothing)."""
    path = directory / "secret.json"
    if not path.exists():
        return False
    check_private(path)
    return bool(json.loads(path.read_text()) == _secret(keys))


def write_context(directory: Path, keys: PairKeys) -> None:
    """Create (or keep) the context directory. An unchanged secret keeps its sequence numbers and replay
    window; a new secret starts them over, since nothing protected with the old one can be replayed then."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    secret = _secret(keys)
    path = directory / "secret.json"
    if holds_context(directory, keys):
        return
    if path.exists():
        with contextlib.suppress(FileNotFoundError):
            (directory / "sequence.json").unlink()
    tmp = directory / "secret.json.new"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(secret, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.lstat().st_mode)
    if not stat.S_ISREG(path.lstat().st_mode) or mode & 0o077:
        raise BadKey(f"OSCORE secret {path}: expected a regular file with mode 0600, found {mode:04o}", hint=f"run: chmod 600 {path}, and re-enroll if others read it")


def open_context(directory: Path, claim: str) -> Any:
    """Load a context directory (locks it: one process at a time) and name who holds its other end."""
    from aiocoap.oscore import FilesystemSecurityContext

    check_private(directory / "secret.json")
    ctx = FilesystemSecurityContext(str(directory))  # ignores our own `peer_hex` key
    ctx.authenticated_claims = [claim]
    return ctx


def close_context(ctx: Any) -> None:
    """Write the sequence number and replay window back and release the lock (clean shutdown)."""
    if getattr(ctx, "lockfile", None) is not None:
        ctx._destroy()


def skip_sequence_numbers(ctx: Any, count: int) -> None:
    """Move a context's sender sequence number `count` ahead, persisted before any of it is used.

    A context restored from an old copy (a card restored from a backup) starts at a number its peer has already
    seen: the peer refuses each request as a replay ("Replay detected", unprotected 4.01), and a number used
    twice with one key repeats an AEAD nonce. Ahead of every number it used since, the context works again; the
    numbers skipped are never used (an OSCORE sender has 2**40)."""
    ctx.sender_sequence_number += count
    ctx.sequence_number_persisted = ctx.sender_sequence_number  # the next use reserves and stores the next chunk
    ctx._store()


def replayed(exc: BaseException) -> bool:
    """Whether a request was refused, unread, as a replay of a sequence number the peer had seen (aiocoap's
    server answers so in the clear)."""
    plain = getattr(exc, "plain_message", None)
    return plain is not None and plain.code == Code.UNAUTHORIZED and bytes(plain.payload or b"") == b"Replay detected"


def keys_differ(exc: BaseException) -> bool:
    """Whether a request was refused, unread, because the peer's context for it holds other keys than the sender's
    (RFC 8613 §8.2, "Decryption failed"): one side enrolled again and the other kept the keys from before."""
    plain = getattr(exc, "plain_message", None)
    return plain is not None and plain.code == Code.BAD_REQUEST and b"Decryption failed" in bytes(plain.payload or b"")


def no_context(exc: BaseException) -> bool:
    """Whether a request was refused, unread, because the peer holds no context for it (a hub loads a pending
    device's only once it is approved)."""
    plain = getattr(exc, "plain_message", None)
    return plain is not None and plain.code == Code.UNAUTHORIZED and b"context not found" in bytes(plain.payload or b"")


# -- who is asking -----------------------------------------------------------------------------------------

def claims(request: aiocoap.Message) -> list[str]:
    """What the transport proved about the sender: the claim of its OSCORE context, or nothing."""
    try:
        return list(request.remote.authenticated_claims or ())
    except (AttributeError, NotImplementedError):
        return []


def claimed_device(request: aiocoap.Message) -> bytes | None:
    """The device (or hub) id an OSCORE-protected request came from; None for an unprotected one."""
    for claim in claims(request):
        kind, _, hexid = claim.partition(":")
        if kind in ("device", "hub", "peer", "phone"):
            with contextlib.suppress(ValueError):
                return bytes.fromhex(hexid)
    return None


def is_phone(request: aiocoap.Message) -> bool:
    """Whether a request came over a phone's context (`phone_keys` on an edge)."""
    return any(claim.startswith("phone:") for claim in claims(request))


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessPolicy:
    """Who may do what over CoAP.

    read rules are "<peer>:<log>" strings: peer is a device id in hex or "*" (any authenticated peer but a
    phone); log is a device id in hex, "*" (every log held), "self" (the asking peer's own log) or "own" (this
    node's own log). The default lets a peer read only its own log (to restore it); operators widen it. A phone
    (a context from `phone_keys`) submits observations: it pushes no records, and reads only what a rule names
    it for by its id (a phone's key is the least trusted one, in a pocket; "*:own" let it read every staff
    card the edge logged, and pushes let it fill the edge's store with logs of keys it made up). Submitters are
    the device ids of phones and microcontrollers allowed to POST observations; staff is the allow-list of
    staff card uids a submitted scan may name (empty: any). `admitted` says whether a key that holds a
    context may still use it (the hub: approved and not revoked; an edge: not on the revocation list), so a
    pending or revoked key is refused even while its context is still loaded.
    """

    require_oscore: bool = False
    read: tuple[str, ...] = ("*:self",)
    submitters: frozenset[bytes] = frozenset()
    staff: frozenset[str] = frozenset()
    own: bytes | None = None
    admitted: Callable[[bytes], bool] | None = None
    refused: dict[str, int] = field(default_factory=dict, compare=False)

    def peer(self, request: aiocoap.Message, action: str) -> bytes | None:
        who = claimed_device(request)
        if who is None and self.require_oscore:
            self._refuse("OSCORE_REQUIRED")
            raise OscoreRequired(f"{action} needs an OSCORE-protected request from an enrolled peer; this one "
                                f"was not protected",
                                hint="enroll the device with the hub's QR code so it holds a security context")
        if who is not None and self.admitted is not None and not self.admitted(who):
            self._refuse("NOT_AUTHORIZED")
            raise SecurityError(f"key {who.hex()} is not approved here (pending, revoked or unknown)",
                                hint="an operator approves the device at the hub")
        return who

    def may_read(self, who: bytes | None, device_id: bytes, *, phone: bool = False) -> bool:
        if who is None:
            return not self.require_oscore
        for rule in self.read:
            peer, _, target = rule.partition(":")
            if peer != who.hex() and (peer != "*" or phone):
                continue
            if target == "*" or target == device_id.hex() or (target == "self" and device_id == who) or \
                    (target == "own" and self.own is not None and device_id == self.own):
                return True
        return False

    def check_read(self, request: aiocoap.Message, device_id: bytes) -> None:
        who = self.peer(request, "reading a log")
        if not self.may_read(who, device_id, phone=is_phone(request)):
            self._refuse("NOT_AUTHORIZED")
            raise SecurityError(f"peer {who.hex() if who else 'unauthenticated'} may not read the log of "
                                f"{device_id.hex()}", hint="the read rules in [security] decide this")

    def visible(self, request: aiocoap.Message, heads: Sequence[Head], theirs: Sequence[Head] = ()) -> list[Head]:
        """The heads to show the asking peer: logs it may read as they are; logs it holds itself (it sent
        their heads) no further than it has them, so it neither fetches a log it may not read nor pushes
        one again from the start; nothing of the others."""
        who, phone = claimed_device(request), is_phone(request)
        held = {h.device_id: h for h in theirs}
        out = []
        for h in heads:
            if self.may_read(who, h.device_id, phone=phone):
                out.append(h)
            elif h.device_id in held:
                out.append(held[h.device_id] if held[h.device_id].length <= h.length else h)
        return out

    def check_push(self, request: aiocoap.Message) -> None:
        who = self.peer(request, "offering records")
        if who is not None and is_phone(request):
            self._refuse("NOT_AUTHORIZED")
            raise SecurityError(f"phone {who.hex()} submits observations (POST /submit); it offers no records",
                                hint="list a neighbouring edge in [security] peer_keys, not phone_keys")

    def check_submit(self, request: aiocoap.Message) -> None:
        who = self.peer(request, "submitting observations")
        if self.require_oscore and self.submitters and (who is None or who not in self.submitters):
            self._refuse("NOT_AUTHORIZED")
            raise SecurityError(f"{who.hex() if who else 'an unauthenticated client'} is not an allowed "
                                f"phone or device for submissions here",
                                hint="add its device id to [security] submitters")

    def check_items(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """A submitted scan must name an allowed staff card (the NFC reader checks its own taps)."""
        if not self.staff:
            return
        for kind, body in items:
            staff = body.get("staff") if kind == "scan" else None
            if kind == "scan" and (not isinstance(staff, str) or staff.lower() not in self.staff):
                self._refuse("STAFF_NOT_ALLOWED")
                if not isinstance(staff, str) or not staff:
                    raise StaffNotAllowed("scan names no staff card; this checkpoint takes scans only from the "
                                          "staff cards on its allow-list", hint="send the staff card's uid as 'staff'")
                raise StaffNotAllowed("scan names a staff card that is not on this checkpoint's allow-list",
                                      hint="add the card to checkpoint.staff")

    def _refuse(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1


# The rule of each resource, by path prefix (longest first). A resource with no rule is refused to everyone:
# adding one to a site without saying who may use it cannot open it by accident.
PUBLIC, PEER, SUBMIT, SYNC_RECORDS, LOG = "public", "peer", "submit", "sync-records", "log"
RULES: dict[tuple[str, ...], str] = {
    (".well-known", "core"): PUBLIC,  # the resource list
    ("security", "revocations"): PUBLIC,  # signed by the hub; says nothing secret
    ("submit",): SUBMIT,
    ("sim", "tap"): SUBMIT,
    ("sync", "heads"): PEER,  # answers only what the asking peer may read or holds itself
    ("sync", "records"): SYNC_RECORDS,  # GET: read rules on the parsed ?d=; POST: any admitted peer
    ("sync", "ranges"): PEER,  # the resource serves only the logs the read rules give the peer (visible)
    ("sync", "summary"): PEER,  # a summary of the heads the read rules give the peer (visible), as sync/heads
    ("log",): LOG,  # read rules on the device in the path
    ("logs",): PEER,
    ("status",): PEER,
    ("metrics",): PEER,
    ("checkpoint",): PEER,  # signed by the hub
    ("proofs", "inclusion"): PEER,
    ("proofs", "consistency"): PEER,
}


def rule_for(path: Sequence[str]) -> str | None:
    for n in range(len(path), 0, -1):
        rule = RULES.get(tuple(path[:n]))
        if rule is not None:
            return rule
    return None


class SecureSite(interfaces.Resource):
    """Checks the AccessPolicy before the inner site renders; put aiocoap's OscoreSiteWrapper around it."""

    def __init__(self, inner: Any, policy: AccessPolicy) -> None:
        self.inner, self.policy = inner, policy
        # Logged at most once a minute with their count: a refusal costs the sender one datagram, which it
        # need not even send from its own address, and a line per refusal filled the log (an edge's SD card).
        self.refusals = Refusals("CoAP requests", log=log)

    def get_resources_as_linkheader(self) -> Any:
        return self.inner.get_resources_as_linkheader()

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        raise RuntimeError("SecureSite is used through render_to_pipe")

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False

    def check(self, request: aiocoap.Message) -> None:
        """One decision per request. Where it depends on a parameter, it reads it with the parser the
        resource itself uses, which refuses a repeated one, so the check and the handler see the same log."""
        path = tuple(request.opt.uri_path)
        rule = rule_for(path)
        if rule == PUBLIC:
            return
        if rule == SUBMIT:
            self.policy.check_submit(request)
        elif rule == SYNC_RECORDS and request.code == Code.POST:
            self.policy.check_push(request)
        elif rule == SYNC_RECORDS:
            self.policy.peer(request, "reading a log")
            self.policy.check_read(request, coap_query(request, *RECORDS_QUERY)["d"])
        elif rule == LOG:
            self.policy.check_read(request, self._log_device(path))
        elif rule == PEER:
            self.policy.peer(request, "this resource")
        else:
            self.policy._refuse("NOT_AUTHORIZED")
            raise SecurityError(f"/{'/'.join(path)[:60]} has no access rule; refused to everyone",
                                hint="add the resource to coap_server.security.RULES")

    def _log_device(self, path: tuple[str, ...]) -> bytes:
        name = path[1] if len(path) > 1 else ""
        if name == "own" and self.policy.own is not None:
            return self.policy.own
        try:
            device_id = bytes.fromhex(name)
        except ValueError:
            device_id = b""
        if len(device_id) != 16:
            raise NotFound(f"device id: expected 32 hex digits or own, got {name[:40]!r}")
        return device_id

    async def render_to_pipe(self, pipe: Any) -> None:
        try:
            self.check(pipe.request)
        except CodedError as exc:
            path = "/".join(pipe.request.opt.uri_path)[:80]
            sender = str(getattr(pipe.request.remote, "hostinfo", "?"))[:80]
            self.refusals.refuse(sender, f"{pipe.request.code} /{path}: {exc.code}", exc.code.lower())
            pipe.add_response(errors.error_response(exc), is_last=True)
            return
        await self.inner.render_to_pipe(pipe)


def secure_site(site: Any, policy: AccessPolicy, credentials: Any) -> Any:
    """The site to serve: OSCORE unprotection outside, the policy inside, then the resources."""
    from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

    return OscoreSiteWrapper(SecureSite(site, policy), credentials)


def credentials_map() -> Any:
    from aiocoap.credentials import CredentialsMap

    return CredentialsMap()


def install(credentials: Any, entries: dict[str, Any]) -> None:
    """Client credentials: URI pattern (coap://host:port/*) -> context; idempotent."""
    for pattern, ctx in entries.items():
        if credentials.get(pattern) is not ctx:
            credentials[pattern] = ctx
