"""URLs as the hub shows and logs them: with whatever could be a secret in them masked."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# A path segment that reads as words or numbers ("services", "sendMessage", "v21.0", "2024-report", "1055"):
# parts of letters only or of digits only (or a version tag), joined by - _ or .
_WORDS = re.compile(r"(?:[A-Za-z]+|[0-9]+|v[0-9]+)(?:[-_.](?:[A-Za-z]+|[0-9]+))*")
_LONG = 16


def _plain(segment: str) -> bool:
    return len(segment) < _LONG and _WORDS.fullmatch(segment) is not None


def _masked_item(item: str) -> str:
    """One name=value of a query with its value masked; an item without "=" may be a token itself."""
    name, eq, _ = item.partition("=")
    return f"{name if _plain(name) else MASK}={MASK}" if eq else MASK


def mask_url(url: str) -> str:
    """`url` with what could be a secret in it shown as ***: the password of its user information (and the user
    name unless it reads as a word), every query value (the names stay), the fragment, and the path from its first
    segment that does not read as words or numbers on: one with a part that mixes letters and digits (an id or a
    token, "T0A1B2"), 16 characters or longer, or holding other characters (":", "%", "="). Webhook services carry
    their secret in the path (Slack's /services/T.../B.../<secret>, Discord's /api/webhooks/<id>/<token>,
    Telegram's /bot<token>/) or the query (?key=...), and a store's address may carry a password; the scheme, the
    host, the port and a path of plain words stay, so an operator still sees where it goes. Text that is not a URL
    (scheme://...) is masked whole."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:  # an unreadable port or address: nothing to show of it safely
        return MASK
    if not parts.scheme or not url[len(parts.scheme):].startswith("://"):
        return MASK
    host = host or ""  # a local socket's address: postgresql://user@/db?host=/run/postgresql
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        user = parts.username or ""
        shown = user if _plain(user) else MASK
        netloc = (f"{shown}:{MASK}" if parts.password is not None else shown) + "@" + netloc
    segments = parts.path.split("/")
    for i, segment in enumerate(segments):
        if segment and not _plain(segment):
            # What follows an id or a token is as likely a secret (Slack's /T.../B.../<secret>): masked too.
            segments[i:] = [MASK if s else s for s in segments[i:]]
            break
    path = "/".join(segments)
    query = "&".join(_masked_item(item) for item in parts.query.split("&") if item)
    return urlunsplit((parts.scheme, netloc, path, query, MASK if parts.fragment else ""))


def shown_dsn(dsn: str) -> str:
    """A PostgreSQL address as errors show it: a URL masked (`mask_url`); in libpq's key=value form, the
    password's value."""
    if "://" in dsn:
        return mask_url(dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)
