"""Seed-2 device registrations and their bearer tokens (kept as SHA-256 digests, never as tokens)."""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..auth import hash_token
from ..service import pending_check

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

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        del out["token_sha256"]
        out["trust"] = "attested"  # what the hub can say about this device's data: received, not signed
        return out


class Registry:
    """A small JSON file, rewritten atomically (temporary file, fsync, rename) on every change."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / "legacy-devices.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._devices: dict[str, LegacyDevice] = {}
        if self.path.exists():
            for item in json.loads(self.path.read_text(encoding="utf-8"))["devices"]:
                self._devices[item["device_id"]] = LegacyDevice(**item)

    def _save(self) -> None:
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
                 status: str, pending_at_most: int) -> tuple[LegacyDevice, str]:
        """A new device and its token (returned once; only its digest is kept). KeyError if it exists,
        TOO_MANY_PENDING if it would wait for approval beside `pending_at_most` others."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            if device_id in self._devices:
                raise KeyError(device_id)
            if status == "pending":
                waiting = sum(d.status == "pending" for d in self._devices.values())
                pending_check(waiting, pending_at_most, "seed-2 registrations", "[bridges] pending_devices")
            device = LegacyDevice(device_id=device_id, market_id=market_id, market=market, role=role,
                                  token_sha256=hash_token(token), registered_at=now, status=status)
            self._devices[device_id] = device
            self._save()
        return device, token

    def new_token(self, device_id: str) -> str:
        """Replace a device's token: the old one stops working."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            device = self._devices[device_id]
            self._devices[device_id] = replace(device, token_sha256=hash_token(token))
            self._save()
        return token

    def set_status(self, device_id: str, status: str) -> LegacyDevice:
        if status not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {status!r}")
        with self._lock:
            device = replace(self._devices[device_id], status=status)
            self._devices[device_id] = device
            self._save()
        return device

    def by_token(self, token: str) -> LegacyDevice | None:
        digest = hash_token(token)
        found = None
        for device in self._devices.values():  # every digest compared: the time does not say which matched
            if hmac.compare_digest(device.token_sha256, digest):
                found = device
        return found
