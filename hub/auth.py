"""Who an HTTP request speaks for (operator, auditor, the public, or an unknown token): one place for every route."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web

from ledger.errors import CodedError


class Unauthorized(CodedError):
    """A bearer token that no operator or auditor holds."""

    code = "UNAUTHORIZED"
    coap = "4.01"
    http = 401


class Forbidden(CodedError):
    """A route that needs another role than the caller's."""

    code = "FORBIDDEN"
    coap = "4.03"
    http = 403


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    """Bearer tokens (or `?token=` for links the dashboard opens) checked against their SHA-256 digests;
    the hub never holds the tokens themselves."""

    operator_tokens: tuple[str, ...] = ()
    auditor_tokens: tuple[str, ...] = ()

    def role(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else request.query.get("token", "")
        if not token:
            return "public"
        digest = hash_token(token)
        if any(hmac.compare_digest(digest, t) for t in self.operator_tokens):
            return "operator"
        if any(hmac.compare_digest(digest, t) for t in self.auditor_tokens):
            return "auditor"
        return "invalid"

    def is_operator(self, request: web.Request) -> bool:
        return self.role(request) == "operator"

    def require(self, request: web.Request, *roles: str) -> str:
        """The request's role if it is one of `roles`; 401 for an unknown token, 403 for another role."""
        role = self.role(request)
        if role == "invalid":
            raise Unauthorized("token not recognised")
        if role not in roles:
            raise Forbidden(f"needs role {' or '.join(roles)}, have {role}")
        return role

    def export_roles(self) -> tuple[str, ...]:
        """Who may download audit bundles: operators and auditors, and anyone while no auditor token is set."""
        return ("operator", "auditor", *(("public",) if not self.auditor_tokens else ()))
