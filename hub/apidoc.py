"""The hub's HTTP API as typed models: every route's parameters, body, answer, errors and who may call it.

`openapi_spec` (hub/http.py) builds /api/openapi.json from this table and the routes actually registered, so
the document cannot list a route the hub does not serve, and a route without an entry here fails
tests/hub/test_openapi.py. Answers are TypedDicts turned into JSON Schema by `schema_of`; the conformance test
(tests/hub/test_api_conformance.py, schemathesis) holds the running hub to them.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, TypedDict, Union

from . import apianswers as a
from .apianswers import CheckpointJson
from .paging import DEFAULT_LIMIT, HELD_LIMIT, MAX_LIMIT

HEX16 = r"^[0-9a-f]{32}$"  # a device id
HEX32 = r"^[0-9a-f]{64}$"  # a record id, a hash


# --- answers ---------------------------------------------------------------------------------------------
class ErrorDetail(TypedDict):
    code: str
    message: str
    where: NotRequired[str]
    hint: NotRequired[str]


class Error(TypedDict):
    """Every error of the JSON API: {"error": {code, message[, where, hint]}} (docs/ERRORS.md)."""

    error: ErrorDetail


class DeviceJson(TypedDict):
    device: str
    pubkey: str
    site: str
    role: str
    status: Literal["pending", "active", "revoked", "forked"]
    revoked_from: int | None
    enrolled_at: int
    name: str
    source: NotRequired[Annotated[str, {"description": "the address its enrollment request came from (empty if "
                                                       "not known); to operators and auditors only"}]]
    length: NotRequired[int]
    head: NotRequired[str | None]
    last_time: NotRequired[int | None]
    damaged: NotRequired[list[int]]


class Rejected(TypedDict):
    """The enrollment requests dropped: each as it waited, with the address it came from."""

    rejected: list[DeviceJson]


class Devices(TypedDict):
    """One page of the devices the hub knows, in device id order, and how many it knows in all."""

    devices: list[DeviceJson]
    device_count: int
    next: Annotated[str | None, {"description": "the device id to pass as `after` for the next page; null on the "
                                                "last page"}]


class RecordJson(TypedDict):
    id: str
    device: str
    seq: int
    prev: str
    time: int
    boot: int
    kind: str
    body: dict[str, Any] | None
    detached: bool


class Records(TypedDict):
    records: list[RecordJson]


class HeadJson(TypedDict):
    device: str
    length: int
    head: str


class Heads(TypedDict):
    heads: list[HeadJson]


class ForkJson(TypedDict):
    device: str
    seq: int
    first: str
    second: str
    evidence: NotRequired[str]  # the ForkEvidence CBOR, hex, for an auditor or operator


class Forks(TypedDict):
    forks: list[ForkJson]


class Checkpoints(TypedDict):
    checkpoints: list[CheckpointJson]


class LostCheckpoint(TypedDict):
    """A checkpoint this hub signed whose records its operator accepted as lost (`--accept-older-store`, the store
    restored from an older copy), and the checkpoint it stood by instead: both signed by the hub (FORMAT.md §10.2)."""

    lost: CheckpointJson
    kept: CheckpointJson | None  # null when the restored store held no checkpoint
    accepted_at: int  # seconds
    store_size: int  # the records the restored store held when the loss was accepted


class Status(TypedDict):
    hub: str
    pubkey: str
    size: int
    own_log: int
    devices: int
    checkpoint: CheckpointJson | None
    counters: dict[str, int]
    forks: int
    damaged: dict[str, list[int]]
    signing_stopped: ErrorDetail | None  # HUB_STORE_OLDER found at run time: no checkpoint is signed (DEPLOY.md)
    lost_checkpoints: list[LostCheckpoint]  # checkpoints whose records the operator accepted as lost (DEPLOY.md)


class InclusionProof(TypedDict):
    record: str
    index: int
    tree_size: int
    root: str
    receipt: str
    path: list[str]


class SplitViewJson(TypedDict):
    """Two checkpoints a regional hub signed that do not describe one log, and the proof it offered."""

    id: str  # SHA-256 of the evidence as kept: what a resume names as closed
    accepted: CheckpointJson
    offered: CheckpointJson
    proof: list[str]
    conclusive: bool
    resolved: bool  # an operator's resume closed it; the evidence stays


# `from` is a Python keyword, so this model is written in TypedDict's functional form.
LogStretch = TypedDict("LogStretch", {"from": int, "to": int})


class RegionResumeJson(TypedDict):
    """An operator's decision to follow a region again after a split view, kept for good."""

    hub: str
    at: int
    by: str
    why: str
    token: str  # the first 16 hex digits of the operator token's SHA-256
    pinned: CheckpointJson  # the region's checkpoint it is followed from
    kept: list[CheckpointJson]  # accepted before, and proved to be in the pinned log
    dropped: list[CheckpointJson]  # accepted before, and not in the pinned log
    resolves: list[str]  # ids of the split views it closed
    not_in_view: LogStretch | None  # the region's log indexes accepted before and missing from its view


class RegionProblemJson(TypedDict):
    """The run of rounds in which a region's answers were refused or missing, until one goes well again."""

    code: str  # REGION_UNPROTECTED, INVALID_CHECKPOINT, INVALID_PROOF, HUB_REFUSED, SPLIT_VIEW, UNREACHABLE, ...
    message: str
    hint: str | None
    since: int  # this hub's time of the run's first round
    last: int  # and of its latest
    rounds: int


class RegionJson(TypedDict):
    url: str
    mode: Literal["checkpoints", "records"]
    # followed or pulled as the last round went; split: a split view stops it until an operator resumes it;
    # refused: its last answer failed a check or came outside its pinned key's OSCORE context; unreachable
    state: Literal["followed", "pulled", "split", "refused", "unreachable"]
    problem: RegionProblemJson | None
    hub: NotRequired[str]  # the region's hub id; of a pulled one, its pinned key's, when its entry pins one
    checkpoint: NotRequired[CheckpointJson | None]
    accepted: NotRequired[int]
    split_views: NotRequired[list[SplitViewJson]]
    resumes: NotRequired[list[RegionResumeJson]]
    checkpoints: NotRequired[list[CheckpointJson]]  # one region's: every checkpoint accepted since its last resume


class Regions(TypedDict):
    regions: list[RegionJson]


class RegionRecordJson(TypedDict):
    """A regional hub's record, its receipt, and the checkpoint that receipt stands on."""

    device: str
    seq: int
    id: str
    kind: str
    record: str
    index: int
    receipt: str
    checkpoint: CheckpointJson
    checkpoint_step: Literal["first", "advanced", "unchanged", "behind"]


# `from` is a Python keyword, so this model is written in TypedDict's functional form.
ConsistencyProof = TypedDict("ConsistencyProof", {"from": int, "to": int, "proof": list[str]})


class IngestResult(TypedDict):
    device: str
    accepted: int
    duplicates: int
    length: int
    size: int
    problem: ErrorDetail | None
    fork: bool


class DatedStock(a.Stock):
    """Stock on hand per kitchen and item, replayed from every movement recorded or from those up to a day's end."""

    date: Annotated[str | None, {"description": "the day asked: movements up to the end of it at each kitchen, in "
                                               "the kitchen's own time zone; null: every movement recorded"}]


ANY_OBJECT: dict[str, Any] = {"type": "object"}


def closed(tp: Any) -> dict[str, Any]:
    """The schema of a request body whose handler refuses any key the TypedDict does not name."""
    return {**schema_of(tp), "additionalProperties": False}


def schema_of(tp: Any) -> dict[str, Any]:
    """JSON Schema of a TypedDict (nested), list, dict, literal, optional or plain type."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if origin is Annotated:  # a type with JSON Schema keywords beside it: Annotated[str, {"pattern": ...}]
        annotated = schema_of(typing.get_args(tp)[0])
        for extra in tp.__metadata__:
            annotated.update(extra)
        return annotated
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (Union, types.UnionType):
        return {"anyOf": [schema_of(a) for a in typing.get_args(tp)]}
    if origin is list:
        return {"type": "array", "items": schema_of(typing.get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(typing.get_args(tp)[1])}
    if typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        props, required = {}, []
        for name, hint in hints.items():
            if typing.get_origin(hint) is NotRequired:
                hint = typing.get_args(hint)[0]
            else:
                required.append(name)
            props[name] = schema_of(hint)
        out: dict[str, Any] = {"type": "object", "properties": props, "required": sorted(required)}
        if tp.__doc__ and not tp.__doc__.startswith(tp.__name__ + "("):
            out["description"] = tp.__doc__.strip().splitlines()[0]
        return out
    raise TypeError(f"no JSON Schema for {tp!r}")


# --- routes ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    name: str
    where: Literal["query", "path"] = "query"
    type: Literal["string", "integer"] = "string"
    required: bool = False
    description: str = ""
    pattern: str | None = None
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    example: str | None = None  # a value a hub with data answers with data (the conformance test sends it)

    def to_openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        if self.pattern:
            schema["pattern"] = self.pattern
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        out = {"name": self.name, "in": self.where, "required": self.required or self.where == "path",
               "description": self.description, "schema": schema}
        if self.example is not None:
            out["example"] = self.example
        return out


Auth = Literal["public", "operator", "auditor", "export", "device", "seed2"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    summary: str
    params: tuple[Param, ...] = ()
    answer: Any = None  # a TypedDict, a JSON Schema dict, or None: a JSON object
    media: str = "application/json"
    status: int = 200
    body: tuple[str, dict[str, Any]] | None = None  # (media type, schema)
    auth: Auth = "public"
    errors: Literal["api", "seed1", "seed2", "none"] = "api"

    def answer_schema(self) -> dict[str, Any]:
        if self.answer is None:
            return dict(ANY_OBJECT)
        return dict(self.answer) if isinstance(self.answer, dict) else schema_of(self.answer)


DEVICE = Param(name="device", where="path", description="device id (32 hex digits)", pattern=HEX16)
REGION_HUB = Param(name="hub", where="path", pattern=HEX16, description="the regional hub's id (32 hex digits)")
DATE = Param(name="date", description="the day, YYYY-MM-DD (default: the hub's today)",
             pattern=r"^\d{4}-\d{2}-\d{2}$")
COMMODITY_Q = Param(name="commodity", description="commodity id, e.g. beras-medium", example="cabai-merah")
MARKET_Q = Param(name="market", description="market id, e.g. pasar-senen", example="pasar-senen")
# Seed 2's clients name the market `market_id`, and its public API needs the commodity.
COMMODITY_ID = Param(name="commodity", required=True, description="commodity id or a name seed 2 uses, e.g. cabai",
                     example="cabai")
MARKET_ID = Param(name="market_id", description="market id or a configured alias, e.g. pasar-senen",
                  example="pasar-senen")
COMMODITY_PATH = Param(name="commodity", where="path", description="commodity id", example="cabai-merah")
# hub/paging.py: every answer that lists devices pages them the same way.
DEVICE_PAGE = (Param(name="limit", type="integer", minimum=1, maximum=MAX_LIMIT,
                     description=f"devices per page (default {DEFAULT_LIMIT})"),
               Param(name="after", pattern=HEX16, description="the page after this device id (the answer's `next`); "
                                                              "default: the first page"))
CBOR = "application/cbor"
COSE = "application/cose"
BYTES: dict[str, Any] = {"type": "string", "format": "binary"}

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/status"): Route(summary="The hub's identity, log size, latest checkpoint and counters",
                                  answer=Status),
    ("GET", "/api/openapi.json"): Route(summary="This document", answer=ANY_OBJECT),
    ("GET", "/api/devices"): Route(summary="A page of the devices the hub knows, with their logs' length and head",
                                   answer=Devices, params=DEVICE_PAGE),
    ("GET", "/api/devices/{device}"): Route(summary="One device", params=(DEVICE,), answer=DeviceJson),
    ("GET", "/api/devices/{device}/records"): Route(
        summary="A range of one device's records, decoded", answer=Records, auth="auditor",
        params=(DEVICE, Param(name="from", type="integer", minimum=0, description="first seq (default 0)"),
                Param(name="to", type="integer", minimum=0, description="end seq, exclusive (at most 1000 more)"))),
    ("POST", "/api/enroll"): Route(summary="A device's signed enrollment request (COSE); answers the pending device",
                                   body=(COSE, BYTES), answer=DeviceJson, status=201),
    ("POST", "/api/devices/{device}/approve"): Route(summary="Accept a pending device's records", params=(DEVICE,),
                                                     answer=DeviceJson, auth="operator"),
    ("POST", "/api/devices/{device}/revoke"): Route(
        summary="Refuse a device's records from a sequence number on", answer=DeviceJson, auth="operator",
        params=(DEVICE, Param(name="from", type="integer", minimum=0, description="first refused seq (default: "
                                                                                    "after its head)"))),
    ("POST", "/api/devices/{device}/reject"): Route(
        summary="Drop a pending device's enrollment request, signing nothing (NOT_PENDING if it is not waiting)",
        params=(DEVICE,), answer=Rejected, auth="operator"),
    ("POST", "/api/devices/reject"): Route(
        summary="Drop every pending enrollment request sent from an address or network, signing nothing",
        answer=Rejected, auth="operator",
        params=(Param(name="source", required=True, description="an IP address, or a network such as 10.1.2.0/24",
                      example="10.1.2.0/24"),)),
    ("POST", "/api/devices/{device}/resolve-fork"): Route(summary="Release a forked device after an operator's "
                                                                  "review", params=(DEVICE,), answer=DeviceJson,
                                                          auth="operator"),
    ("GET", "/api/heads"): Route(summary="Each device log's length and head record id", answer=Heads),
    ("GET", "/api/forks"): Route(summary="Fork evidence: two validly signed records for one seq", answer=Forks),
    ("GET", "/api/checkpoints"): Route(summary="Every checkpoint the hub signed", answer=Checkpoints),
    ("POST", "/api/checkpoints"): Route(summary="Sign a checkpoint now", answer=CheckpointJson, status=201,
                                        auth="operator"),
    ("GET", "/api/checkpoints/latest"): Route(summary="The latest signed checkpoint", answer=CheckpointJson),
    ("GET", "/api/proofs/inclusion/{record}"): Route(
        summary="Inclusion proof and COSE receipt of a record under the latest checkpoint", answer=InclusionProof,
        params=(Param(name="record", where="path", pattern=HEX32, description="record id (64 hex digits)"),)),
    ("GET", "/api/proofs/consistency"): Route(
        summary="Consistency proof between two log sizes", answer=ConsistencyProof,
        params=(Param(name="from", type="integer", required=True, minimum=0, description="older tree size"),
                Param(name="to", type="integer", required=True, minimum=0, description="newer tree size"))),
    ("GET", "/api/regions"): Route(summary="The regional hubs pulled from or followed: each one's state and why "
                                          "its rounds fail, if they do; for those followed by their checkpoints the "
                                          "last accepted and any split view caught",
                                  answer=Regions),
    ("GET", "/api/regions/{hub}"): Route(
        summary="One region followed by its checkpoints: its state, the checkpoints accepted since its last resume, "
                "every split view caught and every operator's resume", answer=RegionJson, params=(REGION_HUB,)),
    ("POST", "/api/regions/{hub}/resume"): Route(
        summary="Follow a region again after a split view, from its current signed checkpoint; answers the "
                "decision kept, with what its log no longer holds of what was accepted before",
        answer=RegionResumeJson, auth="operator", params=(REGION_HUB,),
        body=("application/json", {"type": "object", "required": ["by", "why"], "properties": {
            "by": {"type": "string", "minLength": 1, "maxLength": 200, "description": "the operator's name"},
            "why": {"type": "string", "minLength": 1, "maxLength": 2000,
                    "description": "what was looked at and decided"}}})),
    ("GET", "/api/regions/{hub}/records/{device}/{seq}"): Route(
        summary="One record of a region followed by its checkpoints, fetched with its inclusion proof and checked "
                "under a checkpoint consistent with the accepted ones", answer=RegionRecordJson, auth="auditor",
        params=(REGION_HUB, DEVICE, Param(name="seq", where="path", type="integer", minimum=0, description="the record's seq"))),
    ("POST", "/api/ingest/{device}"): Route(summary="Records pushed over HTTP (the sync protocol's CBOR records "
                                                    "message)", params=(DEVICE,), body=(CBOR, BYTES),
                                            answer=IngestResult),
    ("GET", "/api/export"): Route(
        summary="An audit bundle (CBOR) for jejak-verify; resumable from /api/export/files/{name}", media=CBOR,
        answer=BYTES, auth="export",
        params=(Param(name="site", description="only this site's devices"),
                Param(name="device", description="only these devices (repeat)", pattern=HEX16),
                Param(name="since", type="integer", minimum=0, description="records from this device time"),
                Param(name="until", type="integer", minimum=0, description="records before this device time"),
                Param(name="description", description="text carried in the bundle"))),
    ("GET", "/api/export/files/{name}"): Route(
        summary="A kept export, by the name in X-Jejak-Export; honours Range to resume", media=CBOR, answer=BYTES,
        auth="export", params=(Param(name="name", where="path", pattern=HEX32, description="SHA-256 of the bundle"),)),
    ("GET", "/api/events"): Route(summary="Live records, checkpoints and alerts as server-sent events",
                                  media="text/event-stream", answer={"type": "string"},
                                  params=(Param(name="last_id", description="resume after this event id"),)),
    ("GET", "/api/chain/health"): Route(
        summary="Chain health: log size, checkpoint, forks, refusals, records by kind; a page of devices",
        answer=a.ChainHealth, params=DEVICE_PAGE),
    ("GET", "/api/dashboard/summary"): Route(summary="The dashboard's front page: the day's MBG summary, chain, "
                                                     "markets and open alerts", params=(DATE,), answer=a.Summary),
    ("GET", "/api/mbg/deliveries"): Route(summary="MBG deliveries of a day per school: planned, sent, received",
                                          params=(DATE,), answer=a.Deliveries),
    ("GET", "/api/mbg/containers"): Route(summary="Every MBG container (ompreng) and where it was last seen",
                                          answer=a.Containers),
    ("GET", "/api/mbg/containers/{tag}"): Route(summary="One container's timeline from cooking to return",
                                                params=(Param(name="tag", where="path", description="NFC tag id"),),
                                                answer=a.Container),
    ("GET", "/api/mbg/violations"): Route(summary="Food-safety violations of a day (time since cooking, "
                                                  "temperature)", params=(DATE,), answer=a.Violations),
    ("GET", "/api/mbg/names"): Route(summary="Names and time zones of kitchens and schools from the plan, and names "
                                             "of devices", answer=a.Names),
    ("GET", "/api/mbg/stock"): Route(
        summary="Stock on hand per kitchen, derived from movements: all of them, or up to the end of a day",
        answer=DatedStock,
        params=(Param(name="date", description="stock as it stood at the end of this day, YYYY-MM-DD, at each "
                                               "kitchen in its own time zone (default: every movement recorded)",
                      pattern=r"^\d{4}-\d{2}-\d{2}$"),)),
    ("GET", "/api/mbg/epcis"): Route(summary="A day's MBG events as a GS1 EPCIS 2.0 JSON-LD document",
                                     params=(DATE,), answer=a.EpcisDocument),
    ("GET", "/api/mbg/{kind}"): Route(summary="MBG exceptions of a day: late, short or missing deliveries, lost "
                                              "containers; the list is under the kind's name",
                                      params=(Param(name="kind", where="path", description="exception kind",
                                                    enum=("late", "short", "missing", "lost"), example="late"),
                                              DATE),
                                      answer=a.Exceptions),
    ("GET", "/api/markets/prices"): Route(summary="Every observation with its verdict, and the impact of each "
                                                  "series' last days (with a commodity)",
                                          params=(COMMODITY_Q, MARKET_Q), answer=a.Prices),
    ("GET", "/api/markets/live"): Route(summary="Latest accepted daily price of every series",
                                        params=(COMMODITY_Q, MARKET_Q), answer=a.LivePrices),
    ("GET", "/api/markets/history/{commodity}"): Route(
        summary="Daily price history of a commodity", answer=a.History,
        params=(COMMODITY_PATH, MARKET_Q,
                Param(name="since_day", description="first day number (days since 1970-01-01)"),
                Param(name="until_day", description="last day number"))),
    ("GET", "/api/markets/impact"): Route(summary="Impact scores with their factors and weights",
                                          params=(COMMODITY_Q, MARKET_Q), answer=a.Impacts),
    ("GET", "/api/markets/forecast/{commodity}"): Route(
        summary="7-day forecast of a commodity with intervals", answer=a.ForecastJson,
        params=(COMMODITY_PATH, MARKET_Q)),
    ("GET", "/api/markets/alerts"): Route(summary="Market alerts (ALPS bands, manipulation, shocks)", answer=a.Alerts),
    ("GET", "/api/markets/map"): Route(summary="ALPS band per market and commodity, for the map", answer=a.MarketMap),
    ("GET", "/api/markets/quarantine"): Route(
        summary="Quarantined prices and why, in the order they were held, a page at a time", answer=a.Quarantine,
        params=(Param(name="state", description="default pending",
                      enum=("pending", "released", "confirmed", "cleared", "all")),
                Param(name="offset", type="integer", minimum=0, description="the first value of the page (default 0)"),
                Param(name="limit", type="integer", minimum=1, maximum=HELD_LIMIT,
                      description="values per page (default: every one from offset)"))),
    ("GET", "/api/markets/quarantine/audit"): Route(summary="The audit trail of quarantine decisions", answer=a.Audit,
                                                    params=(Param(name="id", description="one quarantined value"),),
                                                    auth="auditor"),
    ("POST", "/api/markets/quarantine/{id}/decide"): Route(
        summary="Release, confirm or reopen a quarantined price", auth="operator", answer=a.Decided,
        params=(Param(name="id", where="path", description="quarantined value id"),),
        body=("application/json", schema_of(a.Decide))),
    ("POST", "/api/markets/import"): Route(
        summary="Backfill price history from a CSV body", auth="operator", answer=a.ImportReport,
        body=("text/csv", {"type": "string"}),
        params=(Param(name="market", description="market of rows that name none"),
                Param(name="region", description="region of rows that name none"),
                Param(name="reporter", description="reporter of rows that name none"),
                Param(name="source", description="source name (default import)"))),
    ("GET", "/api/markets/webhooks"): Route(summary="Webhook subscribers and every alert delivery", auth="operator",
                                            answer=a.Webhooks),
    ("POST", "/api/sync_gateway_data"): Route(summary="Seed 1: a gateway's batch of scans, attested by the hub",
                                              body=("application/json", {"type": "array",
                                                                         "items": closed(a.GatewayScan)}),
                                              answer=a.GatewayAccepted, status=201, errors="seed1", auth="device"),
    ("POST", "/api/auth/device/register"): Route(summary="Seed 2: register a market device (pending until an "
                                                         "operator approves it); answers its token and an "
                                                         "onboarding QR code",
                                                 body=("application/json", closed(a.Register)),
                                                 answer=a.Registered, errors="seed2"),
    ("POST", "/api/auth/token"): Route(summary="Seed 2: a new token for a registered device",
                                       body=("application/json", schema_of(a.TokenRequest)), answer=a.TokenAnswer,
                                       errors="seed2", auth="seed2"),
    ("POST", "/ingest"): Route(summary="Seed 2: one MarketDataStream payload, attested by the hub",
                               body=("application/json", closed(a.MarketDataStream)), answer=a.Ingested,
                               errors="seed2", auth="seed2"),
    ("GET", "/api/public/commodity/price/live"): Route(
        summary="Seed 2 public API: latest price per market of a commodity", answer=a.PublicLive, errors="seed2",
        params=(COMMODITY_ID, MARKET_ID, Param(name="region", description="only this region's prices"))),
    ("GET", "/api/public/commodity/price/history"): Route(
        summary="Seed 2 public API: price history of a commodity at a market", answer=a.PublicHistory,
        errors="seed2", params=(COMMODITY_ID, Param(name="market_id", required=True, description=MARKET_ID.description,
                                                  example="pasar-senen"),
                                Param(name="limit", type="integer", minimum=1, description="last rows (default 200, "
                                                                                            "at most 2000)"))),
    ("GET", "/api/public/impact"): Route(summary="Seed 2 public API: impact scores", errors="seed2",
                                         answer=a.PublicImpact, params=(COMMODITY_ID, MARKET_ID)),
    ("GET", "/api/public/alerts/live"): Route(summary="Seed 2 public API: live alerts", errors="seed2",
                                              answer=a.Alerts),
    ("GET", "/api/forecast/confidence"): Route(summary="Seed 2: how far to trust the forecast", errors="seed2",
                                               answer=a.ForecastConfidence, params=(COMMODITY_ID, MARKET_ID)),
    ("GET", "/api/forecast/{commodity}"): Route(summary="Seed 2: 7-day forecast of a commodity", errors="seed2",
                                                answer=a.SeedForecast,
                                                params=(COMMODITY_PATH, MARKET_ID)),
    ("POST", "/api/validation/price/check"): Route(
        summary="Seed 2: would this price be an outlier, flagged or quarantined (nothing stored)",
        body=("application/json", closed(a.PriceCheck)), answer=a.PriceChecked, errors="seed2"),
    ("GET", "/ws/prices"): Route(summary="Seed 2: live price updates over a WebSocket (device token)", status=101,
                                 media="text/plain", answer={"type": "string"}, errors="none", auth="seed2"),
    ("GET", "/api/alerts/ws"): Route(summary="Seed 2: alerts as they are raised, over a WebSocket (device token)",
                                     status=101, media="text/plain", answer={"type": "string"}, errors="none",
                                     auth="seed2"),
    ("POST", "/api/alerts/trigger"): Route(summary="Seed 2: raise an alert by hand", auth="operator",
                                           body=("application/json", closed(a.AlertTrigger)),
                                           answer=a.AlertTriggered, status=201, errors="seed2"),
    ("POST", "/api/blockchain/append"): Route(summary="Seed 2: append an entry to the ledger as a record the hub "
                                                      "signs and marks attested", auth="seed2",
                                              body=("application/json", a.APPEND_BODY), answer=a.Appended,
                                              errors="seed2"),
    ("GET", "/api/blockchain/integrity/check"): Route(summary="Seed 2: verify the ledger: every record against its "
                                                              "id and leaf, every checkpoint's root", errors="seed2",
                                                      answer=a.Integrity),
    ("GET", "/dashboard/map"): Route(summary="Seed 2: the map of markets", media="text/html",
                                     answer={"type": "string"}, errors="none"),
    ("GET", "/dashboard/map/"): Route(summary="Seed 2: the map of markets", media="text/html",
                                      answer={"type": "string"}, errors="none"),
    ("GET", "/api/bridges/status"): Route(summary="The bridges: attestation log, inputs by path, legacy devices",
                                          answer=a.BridgesStatus, auth="auditor"),
    ("POST", "/api/bridges/devices/{device_id}/approve"): Route(
        summary="Approve a pending legacy device", auth="operator", errors="seed2", answer=a.LegacyDeviceJson,
        params=(Param(name="device_id", where="path", description="legacy device id"),)),
    ("POST", "/api/bridges/devices/{device_id}/revoke"): Route(
        summary="Revoke a legacy device: its token stops working, also once it is approved again (it needs a "
                "new one from /api/auth/token); a pending one frees its place",
        auth="operator", errors="seed2", answer=a.LegacyDeviceJson,
        params=(Param(name="device_id", where="path", description="legacy device id"),)),
    ("POST", "/api/bridges/devices/reject"): Route(
        summary="Drop every pending legacy registration sent from an address or network", auth="operator",
        errors="seed2", answer=a.LegacyRejected,
        params=(Param(name="source", required=True, description="an IP address, or a network such as 10.1.2.0/24",
                      example="10.1.2.0/24"),)),
    ("POST", "/api/enroll/grant"): Route(summary="Enroll by signed request; answers a COSE grant signed by the hub",
                                         body=(COSE, BYTES), media=COSE, answer=BYTES),
    ("GET", "/api/revocations"): Route(summary="The signed revocation list", media=COSE, answer=BYTES),
    ("GET", "/metrics"): Route(summary="Prometheus metrics of the hub", media="text/plain",
                               answer={"type": "string"}, errors="none"),
    ("GET", "/"): Route(summary="The dashboard", media="text/html", answer={"type": "string"}, errors="none"),
    ("GET", "/verify"): Route(summary="The offline bundle verifier as one web page", media="text/html",
                              answer={"type": "string"}, errors="none"),
}

ERROR_BODIES: dict[str, dict[str, Any]] = {
    "api": {"$ref": "#/components/schemas/Error"},
    "seed1": {"type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
              "required": ["error", "code"]},
    "seed2": {"type": "object", "properties": {"detail": {}, "code": {"type": "string"}},
              "required": ["detail", "code"]},
}
