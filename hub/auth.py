"""Who an HTTP request speaks for, and who may call each route: one place for every route of the hub's HTTP API.

Every route has a rule in ACCESS, decided here before its handler runs; a route without one is refused to
everyone, so a new route is closed until someone says who may call it (and the attacker test, which reads
the rules from the OpenAPI document, fails until then). Tokens come only in the `Authorization` header: a
`?token=` ends up in proxy logs and browser history, and is refused. A query parameter named twice is
refused for every route, so the rule and the handler can never read two different values.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from coap_server.params import Param, bearer_token, device, parse, seq, text
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


class CrossOrigin(CodedError):
    """A request that changes something, sent by a browser from a page of another site (its Origin names
    another host than the hub's)."""

    code = "CROSS_ORIGIN"
    coap = "4.03"
    http = 403


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _bearer(request: web.Request) -> str:
    return bearer_token(request.headers.get("Authorization"))


def client_address(request: web.Request, proxies: frozenset[str]) -> str:
    """Whom a request comes from: its peer's address, or behind a proxy of ours (`proxies`) the address the proxy
    saw (the last X-Forwarded-For entry: the ones before it are what the client itself claimed)."""
    peer = request.remote or "?"
    if peer in proxies:
        forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return forwarded[:64]
    return peer


def token_digest(request: web.Request) -> str:
    """The SHA-256 (hex) of the request's bearer token, "" without one: names which token made a decision
    without keeping the token."""
    token = _bearer(request)
    return hash_token(token) if token else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    """Bearer tokens from the Authorization header, checked against their SHA-256 digests; the hub never holds
    the tokens themselves."""

    operator_tokens: tuple[str, ...] = ()
    auditor_tokens: tuple[str, ...] = ()
    proxies: frozenset[str] = frozenset()  # reverse proxies on the hub's host (http_proxies)

    def client(self, request: web.Request) -> str:
        """The address a request comes from (`client_address` behind `proxies`)."""
        return client_address(request, self.proxies)

    def role(self, request: web.Request) -> str:
        token = _bearer(request)
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
        """Who may download audit bundles: operators and auditors, always (a bundle holds record bodies)."""
        return ("operator", "auditor")

    def check(self, request: web.Request, rule: str) -> None:
        """Apply a route's rule. The credential-carrying rules (signed, device, gateway) are checked by their
        handlers, which hold what they are checked against; an unknown token is refused everywhere."""
        if rule in ROLES:
            self.require(request, *ROLES[rule])
        elif rule in (SIGNED, DEVICE, GATEWAY):
            return
        else:
            raise Forbidden(f"{request.method} {_template(request)} has no access rule; refused to everyone",
                            hint="add the route to hub.auth.ACCESS")


# Rules. PUBLIC routes serve aggregates and signed public data, no personal data (no record bodies, staff
# cards or tokens); READER needs an auditor or operator token; OPERATOR an operator token. SIGNED routes
# take a body signed by the key it concerns (an enrollment request, a device's own records) and verify it;
# DEVICE routes take a seed-2 device token, issued at registration and usable once an operator approved the
# device; GATEWAY takes a seed-1 gateway token from [bridges] gateway_tokens (none configured: refused).
PUBLIC, READER, OPERATOR, SIGNED, DEVICE, GATEWAY = "public", "reader", "operator", "signed", "device", "gateway"
ROLES: dict[str, tuple[str, ...]] = {PUBLIC: ("public", "auditor", "operator"), READER: ("auditor", "operator"),
                                     OPERATOR: ("operator",)}

ACCESS: dict[str, str] = {
    # the chain (hub/http.py, hub/security.py)
    "GET /": PUBLIC,
    "GET /verify": PUBLIC,
    "GET /static/": PUBLIC,
    "GET /api/status": PUBLIC,
    "GET /api/openapi.json": PUBLIC,
    "GET /api/devices": PUBLIC,
    "GET /api/devices/{device}": PUBLIC,
    "GET /api/devices/{device}/records": READER,
    "POST /api/enroll": SIGNED,
    "POST /api/enroll/grant": SIGNED,
    "POST /api/devices/{device}/approve": OPERATOR,
    "POST /api/devices/{device}/revoke": OPERATOR,
    "POST /api/devices/{device}/reject": OPERATOR,  # drops a pending request; signs nothing
    "POST /api/devices/reject": OPERATOR,
    "POST /api/devices/{device}/resolve-fork": OPERATOR,
    "GET /api/heads": PUBLIC,
    "GET /api/forks": PUBLIC,  # the evidence (two records) only with an auditor or operator token
    "GET /api/checkpoints": PUBLIC,
    "GET /api/checkpoints/latest": PUBLIC,
    "POST /api/checkpoints": OPERATOR,
    "GET /api/proofs/inclusion/{record}": PUBLIC,
    "GET /api/proofs/consistency": PUBLIC,
    "GET /api/regions": PUBLIC,  # regional hubs followed by checkpoints: signed checkpoints and evidence only
    "GET /api/regions/{hub}": PUBLIC,  # one region's state: signed checkpoints, evidence and resume decisions
    "POST /api/regions/{hub}/resume": OPERATOR,  # follow a region again after a split view
    "GET /api/regions/{hub}/records/{device}/{seq}": READER,  # a record's body, fetched from its region
    "POST /api/ingest/{device}": SIGNED,
    "GET /api/export": READER,
    "GET /api/export/files/{name}": READER,
    "GET /metrics": PUBLIC,  # Prometheus: counts and lags per device, no record contents
    "GET /api/events": PUBLIC,  # record bodies only with an auditor or operator token
    "GET /api/revocations": PUBLIC,  # signed by the hub
    # dashboard read models (hub/chain, hub/mbg, hub/markets): counts, timelines, prices, alerts
    "GET /api/chain/health": PUBLIC,
    "GET /api/dashboard/summary": PUBLIC,
    "GET /api/mbg/deliveries": PUBLIC,
    "GET /api/mbg/containers": PUBLIC,
    "GET /api/mbg/containers/{tag}": PUBLIC,
    "GET /api/mbg/violations": PUBLIC,
    "GET /api/mbg/stock": PUBLIC,
    "GET /api/mbg/epcis": PUBLIC,  # GS1 events: containers, sites, times; no staff cards
    "GET /api/mbg/{kind}": PUBLIC,
    "GET /api/mbg/names": PUBLIC,  # the plan's kitchen and school names, devices' names and sites
    "GET /api/markets/prices": PUBLIC,
    "GET /api/markets/live": PUBLIC,
    "GET /api/markets/history/{commodity}": PUBLIC,
    "GET /api/markets/impact": PUBLIC,
    "GET /api/markets/forecast/{commodity}": PUBLIC,
    "GET /api/markets/alerts": PUBLIC,
    "GET /api/markets/map": PUBLIC,
    "GET /api/markets/quarantine": PUBLIC,
    "GET /api/markets/quarantine/audit": READER,
    "POST /api/markets/quarantine/{id}/decide": OPERATOR,
    "GET /api/markets/webhooks": OPERATOR,
    "POST /api/markets/import": OPERATOR,
    # bridges (hub/bridges/routes.py)
    "POST /api/sync_gateway_data": GATEWAY,
    "POST /api/auth/device/register": PUBLIC,  # a pending registration; its token works once approved
    "POST /api/auth/token": DEVICE,  # a device's own token, or an operator's
    "POST /ingest": DEVICE,
    "GET /api/public/commodity/price/live": PUBLIC,
    "GET /api/public/commodity/price/history": PUBLIC,
    "GET /api/public/impact": PUBLIC,
    "GET /api/public/alerts/live": PUBLIC,
    "GET /api/forecast/confidence": PUBLIC,
    "GET /api/forecast/{commodity}": PUBLIC,
    "GET /api/bridges/status": READER,
    "POST /api/bridges/devices/{device_id}/approve": OPERATOR,
    "POST /api/bridges/devices/{device_id}/revoke": OPERATOR,  # its token stops working, for good
    "POST /api/bridges/devices/reject": OPERATOR,  # drops the pending registrations from a source
    # the rest of seed 2's API (hub/bridges/seedapi.py)
    "POST /api/validation/price/check": PUBLIC,  # runs the validator on the body; stores nothing
    "GET /ws/prices": DEVICE,  # live prices: an approved device's token, or an operator's or auditor's
    "GET /api/alerts/ws": DEVICE,  # live alerts: the same
    "POST /api/alerts/trigger": DEVICE,  # the handler: an operator's token (a device's is 403)
    "POST /api/blockchain/append": DEVICE,  # an operator's or an approved device's token
    "GET /api/blockchain/integrity/check": PUBLIC,  # the store check's verdict, no contents
    "GET /dashboard/map": PUBLIC,
    "GET /dashboard/map/": PUBLIC,
    # the demo's own routes (hub/demo.py)
    "GET /api/demo": PUBLIC,
    "POST /api/demo/webhook": PUBLIC,  # the demo's stand-in for a subscriber's server
}
# The one place a token may come in the query: a browser cannot set headers on a WebSocket, and seed 2's
# clients send `?token=` there (the handler checks it as a device's, auditor's or operator's token).
TOKEN_IN_QUERY = frozenset({"GET /ws/prices", "GET /api/alerts/ws"})
# Query parameters a route may repeat; every other one is refused when named twice.
REPEATABLE: dict[str, tuple[str, ...]] = {"GET /api/export": ("device",)}


def template_of(resource: Any) -> str | None:
    """A route's path template ("/api/devices/{device}"), or a static directory's prefix ("/static/")."""
    if resource is None:
        return None
    info = resource.get_info()
    if "prefix" in info:
        return str(info["prefix"]).rstrip("/") + "/"
    path = info.get("path") or info.get("formatter")
    return str(path) if path else None


def _template(request: web.Request) -> str:
    return template_of(request.match_info.route.resource) or request.path


# What the query of each route holds, by type and range: the handlers read their query with these
# (http_query), and the OpenAPI document describes them, so the fuzz test tries hostile values of each.
QUERY: dict[str, tuple[Param, ...]] = {
    "GET /api/devices/{device}/records": (seq("from"), seq("to")),
    "POST /api/devices/{device}/revoke": (seq("from"),),
    "POST /api/devices/reject": (text("source", 64, required=True),),
    "GET /api/proofs/consistency": (seq("from", required=True), seq("to", required=True)),
    "GET /api/export": (device("device", many=True), text("site"), seq("since"), seq("until"),
                        text("description", 2000)),
}


def rule_of(method: str, template: str) -> str | None:
    return ACCESS.get(f"{'GET' if method == 'HEAD' else method} {template}")


def http_query(request: web.Request, *params: Param) -> dict[str, Any]:
    """The request's query, read by `params` (HTTP's helper: unknown names are let through, a repeated one or
    a token is refused). Without `params`, the route's own from QUERY."""
    return parse(request.query.items(), params or QUERY.get(f"{request.method} {_template(request)}", ()),
                 strict=False)


async def private_answers(request: web.Request, response: web.StreamResponse) -> None:
    """Cache headers of every answer (aiohttp's on_response_prepare, so streamed and file answers too). One to a
    request that carried a credential is that caller's alone (`Cache-Control: no-store`): a reader's answer holds
    record bodies, and a cache in front of the hub (a proxy, a browser shared at a kitchen) must not hand it to
    the next caller. Every other answer `Vary: Authorization`: /api/forks and /api/events show more to a token
    than to the public, so a cache keeps the public's answer apart from a token's."""
    if request.headers.get("Authorization") or "token" in request.query:
        response.headers["Cache-Control"] = "no-store"
    vary = response.headers.get("Vary")
    if not vary:
        response.headers["Vary"] = "Authorization"
    elif "authorization" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Authorization"


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_origin(request: web.Request) -> str | None:
    """The Origin of a request that changes something and that a browser sent from a page of another host; None
    for every other request. Browsers send Origin with every POST; edges, seed apps and scripts send none. The
    hub answers no CORS preflight, so the only cross-origin POSTs a page can make are "simple" ones whose answer
    it never reads: the dashboard makes none, and they are how any page a kitchen's browser opens could register
    devices from the kitchen's address."""
    origin = request.headers.get("Origin")
    if origin is None or request.method in SAFE_METHODS:
        return None
    # Hosts only: behind the reverse proxy of docs/DEPLOY.md, Host is nginx's $host, without the port.
    host = _hostname(origin)
    return None if host and host == _hostname(f"//{request.host}") else origin[:100]


def _hostname(url: str) -> str:
    """The host of a URL ("null", an Origin without one, and malformed ones: "")."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def access_middleware(auth: Auth) -> Any:
    """The one access decision per request, before the handler: the route's rule, on a query already checked
    for repeated names and tokens."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if isinstance(request.match_info.http_exception, web.HTTPException):
            return await handler(request)  # no route: aiohttp's own 404/405
        template = _template(request)
        origin = cross_origin(request)
        if origin is not None:
            raise CrossOrigin(f"{request.method} {template} from a page of {origin!r}: the hub takes no request "
                              "that changes something from another site's page",
                              hint="send it from a program (no Origin header), not from a browser page")
        key = f"{'GET' if request.method == 'HEAD' else request.method} {template}"
        repeatable = REPEATABLE.get(key, ())
        parse(request.query.items(), [Param(name=n, kind="text", size=4096, many=True) for n in repeatable],
              strict=False, token_allowed=key in TOKEN_IN_QUERY)
        rule = rule_of(request.method, template)
        auth.check(request, rule or "none")
        response: web.StreamResponse = await handler(request)
        return response

    return middleware
