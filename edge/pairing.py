"""The pairing secret a phone presents to the edge's HTTP bridges, and the rate limits in front of them.

Seed 1's phone app and the check-in page speak plain HTTP on the kitchen's LAN, where OSCORE is not an
option for a browser. Each edge has one random secret (`<data>/pairing.secret`, 0600); `jejak edge pair`
shows it as a QR code of the check-in page's address with the secret in the fragment (`#pair=...`), which a
browser never sends to a server or logs: the phone opens it once, keeps the secret, and sends it as
`Authorization: Bearer <secret>` from then on. Requests without it are 401 and store nothing; a client that
keeps guessing, or sends faster than a person scans, is slowed down with 429 and Retry-After.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coap_server.params import bearer_token

from .errors import EdgeError, KeyFileError

SECRET_FILE = "pairing.secret"


class PairingRequired(EdgeError):
    """An HTTP bridge request without this edge's pairing secret (or with a wrong one)."""

    code = "PAIRING_REQUIRED"
    coap = "4.01"
    http = 401
    exit_code = 76


class RateLimited(EdgeError):
    """A client sending faster than the bridge allows, or guessing the pairing secret."""

    code = "RATE_LIMITED"
    coap = "4.29"
    http = 429
    exit_code = 77
    retry_after_s = 60


def load_or_create_secret(data: Path, *, new: bool = False) -> str:
    """The edge's pairing secret: made on first use (or with `new`, replacing the old one), mode 0600."""
    path = data / SECRET_FILE
    if path.exists() and not new:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077:
            raise KeyFileError(f"{path}: expected a regular file with mode 0600, found "
                               f"{stat.S_IMODE(info.st_mode):04o}", hint=f"run: chmod 600 {path}, then "
                                                                         f"`jejak edge pair --new` if others read it")
        text = path.read_text().strip()
        if len(text) < 16:
            raise KeyFileError(f"{path}: pairing secret too short", hint="run `jejak edge pair --new`")
        return text
    data.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(18)  # 144 bits: unguessable behind the rate limit, short enough to type
    tmp = path.with_suffix(".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return secret


def pairing_url(http_url: str, secret: str) -> str:
    """What the QR code carries: the check-in page, with the secret where the browser keeps it to itself."""
    return f"{http_url.rstrip('/')}/checkin#pair={secret}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimits:
    requests_per_minute: int = 120  # a person scanning, or the page sending its queue after an outage
    failures_per_window: int = 10  # wrong or missing secrets before a client is made to wait
    window_s: float = 600.0
    clients: int = 1024  # remembered client addresses (oldest forgotten first)


class Pairing:
    """Checks a request's pairing secret and its client's rates; raises PAIRING_REQUIRED or RATE_LIMITED."""

    def __init__(self, secret: str, limits: RateLimits = RateLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._secret = secret.encode()
        self.limits, self.clock = limits, clock
        self._seen: OrderedDict[str, tuple[deque[float], deque[float]]] = OrderedDict()
        self.refused: dict[str, int] = {}

    def _client(self, address: str) -> tuple[deque[float], deque[float]]:
        entry = self._seen.pop(address, None) or (deque(), deque())
        self._seen[address] = entry
        while len(self._seen) > self.limits.clients:
            self._seen.popitem(last=False)
        return entry

    def check(self, address: str, authorization: str) -> None:
        now = self.clock()
        requests, failures = self._client(address)
        while requests and now - requests[0] > 60:
            requests.popleft()
        while failures and now - failures[0] > self.limits.window_s:
            failures.popleft()
        if len(failures) >= self.limits.failures_per_window or len(requests) >= self.limits.requests_per_minute:
            self.refused["RATE_LIMITED"] = self.refused.get("RATE_LIMITED", 0) + 1
            raise RateLimited(f"too many requests from {address}; try again later")
        requests.append(now)
        token = bearer_token(authorization)
        if not token or not hmac.compare_digest(token.encode(), self._secret):
            failures.append(now)
            self.refused["PAIRING_REQUIRED"] = self.refused.get("PAIRING_REQUIRED", 0) + 1
            raise PairingRequired("this edge answers only requests that carry its pairing secret (paired phones, "
                                  "its status and metrics read with it)" if not token else
                                  "pairing secret not recognised",
                                  hint="scan the QR code `jejak edge pair` shows on the edge, once per phone")


# The check-in page and its service worker are the same static file for everyone (how a phone gets to enter
# the secret); every other route on the edge's HTTP endpoint needs the pairing secret.
OPEN_PATHS = frozenset({"/checkin", "/checkin/sw.js"})


def paired(pairing: Pairing) -> Any:
    """aiohttp middleware: the pairing check before every route but the open ones, answered in seed 1's
    error shape ({"error": message}) with the status and Retry-After the error class declares."""
    from aiohttp import web

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            try:
                pairing.check(request.remote or "", request.headers.get("Authorization", ""))
            except EdgeError as exc:
                headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else {}
                if exc.http == 401:
                    headers["WWW-Authenticate"] = "Bearer"
                return web.json_response({"error": exc.message, "code": exc.code}, status=exc.http,
                                         headers=headers)
        response: web.StreamResponse = await handler(request)
        return response

    return middleware
