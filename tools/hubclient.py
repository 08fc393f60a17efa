"""The HTTP calls a command makes to a hub, with its failures as coded errors and the operator's token kept off argv."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ledger.errors import CodedError
from ledger.failures import Unreachable, UsageError

TOKEN_ENV = "JEJAK_TOKEN"
TOKEN_FILE_ENV = "JEJAK_TOKEN_FILE"
HUB_URL_ENV = "JEJAK_HUB_URL"
HUB_URL_HELP = f"the hub's HTTP address (default ${HUB_URL_ENV}, else http://127.0.0.1:8470)"


def default_hub_url() -> str:
    """Where a command asks the hub without --hub-url: $JEJAK_HUB_URL, else a hub on this machine. Every command
    that talks to a hub reads the same one, so an operator sets it once."""
    return os.environ.get(HUB_URL_ENV) or "http://127.0.0.1:8470"


class HubRefused(CodedError):
    """The hub answered a command's request with an error; its code and message are in this one's message, and
    apart (`said`), for a command that words them in its reader's language."""

    code = "HUB_REFUSED"
    coap = "5.00"
    http = 502
    exit_code = 85
    status = 0  # the HTTP status the hub answered with
    url = ""
    said: Mapping[str, str] = MappingProxyType({})  # the hub's error as sent (code, message, hint); empty if not JSON


class HubUnreachable(Unreachable):
    """No answer from the hub to a command's request; `reason` is the socket's error behind it."""

    code = "UNREACHABLE"
    coap = "5.04"
    http = 504
    exit_code = 82
    url = ""
    reason: BaseException | None = None


def unreachable(url: str, reason: BaseException) -> HubUnreachable:
    gone = HubUnreachable(f"no answer from {url}: {getattr(reason, 'reason', reason)}",
                          hint="check that the hub runs and --hub-url points at its HTTP port")
    gone.url, gone.reason = url, reason
    return gone


def hub_refused(url: str, status: int, body: str) -> HubRefused:
    """The error for the hub's error answer to `url`: its code, message and hint kept apart (`said`) when the
    body is the hub's JSON error, else the body's start."""
    try:
        answer = json.loads(body)["error"]
        said = {"code": str(answer["code"]), "message": str(answer["message"])}
        if answer.get("hint"):
            said["hint"] = str(answer["hint"])
        text = f"{said['code']}: {said['message']}"
    except (ValueError, KeyError, TypeError):
        said, text = {}, body[:200]
    refused = HubRefused(f"{url} answered {status}: {text}",
                         hint=said.get("hint") or f"check the token (--token-file, ${TOKEN_FILE_ENV} or ${TOKEN_ENV}) "
                                                  "and the request")
    refused.status, refused.url, refused.said = status, url, said
    return refused


def open_url(req: urllib.request.Request, *, timeout: float) -> Any:
    """urlopen with the hub's failures as coded errors: no answer is UNREACHABLE, an error answer HUB_REFUSED, a
    hub address without its scheme (127.0.0.1:8470) a usage error that says how to write it."""
    if req.type not in ("http", "https"):
        host = req.full_url.split("://", 1)[-1].split("/", 1)[0] or "127.0.0.1:8470"
        raise UsageError(f"the hub's address must start with http:// or https://, got {req.full_url!r}",
                         where="--hub-url", hint=f"e.g. --hub-url http://{host} (or set ${HUB_URL_ENV} so)")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise hub_refused(req.full_url, exc.code, exc.read().decode(errors="replace")) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException) \
            else exc
        raise unreachable(req.full_url, reason) from None



def bearer_token(token_file: str | None, token: str | None = None) -> str | None:
    """The token a command sends: --token (kept for scripts), else --token-file, else $JEJAK_TOKEN_FILE, else
    $JEJAK_TOKEN; None when there is none (a hub without auditor tokens exports to anyone)."""
    if token:
        return token
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {path}: {exc.strerror}",
                             hint="give a readable file holding the token") from None
        if text:
            return text
    return os.environ.get(TOKEN_ENV, "").strip() or None


def operator_token(token_file: str | None) -> str:
    """The operator's token: from --token-file, else $JEJAK_TOKEN_FILE, else $JEJAK_TOKEN. Never from argv,
    where every user of the machine can read it in the process list."""
    token = bearer_token(token_file)
    if not token:
        raise UsageError("no operator token", hint=f"put it in a file readable only by you and pass --token-file, "
                                                   f"or set {TOKEN_FILE_ENV} or {TOKEN_ENV}")
    return token


def call(method: str, url: str, *, token: str | None = None, body: bytes | None = None,
         content_type: str | None = None, timeout: float = 30) -> Any:
    """One JSON request to a hub; its answer decoded."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    with open_url(urllib.request.Request(url, data=body, method=method, headers=headers), timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")
