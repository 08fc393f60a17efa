"""Seed-2 device registrations and their bearer tokens (kept as SHA-256 digests, never as tokens)."""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..auth import hash_token
from ..journal import Lines, carried_from
from ..pending import PendingLimits, Waiting, address_of, expired

STATUSES = ("pending", "active", "revoked")


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyDevice:
    device_id: str
    market_id: str  # as the device sent it
    market: str  # the catalogue market it resolved to
    role: str
    token_sha256: str
    registered_at: int
    status: str = "active"
    source: str = ""  # the address its registration came from ("" in files written before sources were kept)

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        del out["token_sha256"]
        out["trust"] = "attested"  # what the hub can say about this device's data: received, not signed
        return out


class Registry:
    """A small JSON file in `state_dir` (legacy-devices.json), rewritten atomically (temporary file, fsync,
    rename) on every change. With `kept`, the hub's store where it keeps journals (PostgreSQL, which outlives the
    hub's host and its data_dir), a line per device there instead, all rewritten in one transaction on every
    change; the devices a file held when the store held none are carried over once, and the file is renamed
    `legacy-devices.json.in-store` (left for the operator, never read again)."""

    def __init__(self, state_dir: str | os.PathLike[str], *, kept: Lines | None = None) -> None:
        self.path = Path(state_dir) / "legacy-devices.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kept = kept
        self._lock = threading.Lock()
        self._devices: dict[str, LegacyDevice] = {}
        # Told of every device whose status or token changed (from the thread that changed it): what a token
        # held open, a WebSocket, ends when the token stops working.
        self.listeners: list[Callable[[LegacyDevice], None]] = []
        def from_file() -> list[dict[str, Any]]:
            return list(json.loads(self.path.read_text(encoding="utf-8"))["devices"])

        if kept is not None:
            items = carried_from(kept, self.path, from_file).read()
        else:
            items = from_file() if self.path.exists() else []
        for item in items:
            self._devices[item["device_id"]] = LegacyDevice(**item)

    def _save(self) -> None:
        if self.kept is not None:
            self.kept.rewrite(asdict(d) for d in self._devices.values())
            return
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps({"devices": [asdict(d) for d in self._devices.values()]}, indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def get(self, device_id: str) -> LegacyDevice | None:
        return self._devices.get(device_id)

    def devices(self) -> list[LegacyDevice]:
        return list(self._devices.values())

    def register(self, *, device_id: str, market_id: str, market: str, role: str, now: int,
                 status: str, limits: PendingLimits, source: str = "") -> tuple[LegacyDevice, str]:
        """A new device and its token (returned once; only its digest is kept). KeyError if it exists;
        TOO_MANY_PENDING or TOO_MANY_PENDING_FROM_SOURCE if it would wait for approval past `limits`, counted
        once the registrations that waited past `limits.expire_s` are dropped."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            if device_id in self._devices:
                raise KeyError(device_id)
            if status == "pending":
                self._expire(now, limits)
                waiting = Waiting.of(d.source for d in self._devices.values() if d.status == "pending")
                waiting.check(source, limits, "seed-2 registrations")
            device = LegacyDevice(device_id=device_id, market_id=market_id, market=market, role=role,
                                  token_sha256=hash_token(token), registered_at=now, status=status,
                                  source=address_of(source))
            self._devices[device_id] = device
            self._save()
        return device, token

    def expire(self, now: int, limits: PendingLimits) -> list[LegacyDevice]:
        """Drop the registrations that waited for approval past `limits.expire_s` at `now`: no operator decided
        on them, and their places are free again."""
        with self._lock:
            dropped = self._expire(now, limits)
            if dropped:
                self._save()
        return dropped

    def _expire(self, now: int, limits: PendingLimits) -> list[LegacyDevice]:
        dropped = [d for d in self._devices.values()
                   if d.status == "pending" and expired(d.registered_at, now, limits)]
        for device in dropped:
            del self._devices[device.device_id]
        return dropped

    def drop_pending(self, sent_from: Callable[[str], bool]) -> list[LegacyDevice]:
        """Drop the registrations waiting for approval whose source `sent_from` takes (an operator's rejection of
        a flood): no decision, and their places are free again."""
        with self._lock:
            dropped = [d for d in self._devices.values() if d.status == "pending" and d.source and sent_from(d.source)]
            for device in dropped:
                del self._devices[device.device_id]
            if dropped:
                self._save()
        return dropped

    def new_token(self, device_id: str) -> str:
        """Replace a device's token: the old one stops working."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            device = self._devices[device_id]
            changed = self._devices[device_id] = replace(device, token_sha256=hash_token(token))
            self._save()
        self._tell(changed)
        return token

    def set_status(self, device_id: str, status: str) -> LegacyDevice:
        """An operator's decision. A revoked device approved again keeps no token: it took the token it was
        revoked for (one that leaked) back; it needs a new one (`new_token`). While revoked, its token is still
        known, to be answered that the device is revoked."""
        if status not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {status!r}")
        with self._lock:
            before = self._devices[device_id]
            device = replace(before, status=status)
            if before.status == "revoked" and status != "revoked":
                device = replace(device, token_sha256="")  # no token's digest is empty: none matches
            self._devices[device_id] = device
            self._save()
        self._tell(device)
        return device

    def _tell(self, device: LegacyDevice) -> None:
        for listener in self.listeners:
            listener(device)

    def admits(self, held: LegacyDevice) -> bool:
        """Whether the token `held` was taken with still works: its device active, the token not replaced."""
        device = self._devices.get(held.device_id)
        return device is not None and device.status == "active" and device.token_sha256 == held.token_sha256

    def by_token(self, token: str) -> LegacyDevice | None:
        digest = hash_token(token)
        found = None
        for device in self._devices.values():  # every digest compared: the time does not say which matched
            if hmac.compare_digest(device.token_sha256, digest):
                found = device
        return found
