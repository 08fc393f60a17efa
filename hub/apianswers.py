"""The JSON answers and request bodies of the hub's domain routes (chain health, MBG, markets, the seed 1 and
seed 2 bridges) as TypedDicts, for the OpenAPI document (hub/apidoc.py).

Each model states what its handler returns: a field always present is required, one present only sometimes is
NotRequired, one that may be null is `X | None`. tests/hub/test_api_conformance.py fetches every GET route of a
demo hub and holds each answer to its model with no other field allowed, so a renamed field fails there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

# --- chain and front page --------------------------------------------------------------------------------


class AuthorityHead(TypedDict):
    length: int
    head: str


class CheckpointJson(TypedDict):
    hub: str
    tree_size: int
    root: str
    time: int
    cose: str
    authority: NotRequired[AuthorityHead]  # the hub's own log under this checkpoint, where it signed one


class DeviceHealth(TypedDict):
    device: str
    pubkey: str
    site: str
    role: str
    status: Literal["pending", "active", "revoked", "forked"]
    revoked_from: int | None
    enrolled_at: int
    name: str
    length: int
    head: str | None
    last_time: int | None
    last_seen: int | None
    sync_lag_s: int | None
    idle_s: int | None
    damaged: list[int]
    counting: Annotated[bool, {"description": "true while records of this device from before the store kept the "
                                              "chain's figures are still being counted after an upgrade: last_time, "
                                              "last_seen and sync_lag_s are those of its records counted so far"}]


class SigningStopped(TypedDict):
    """HUB_STORE_OLDER found at run time (an edge presented a checkpoint of this hub its store does not hold)."""

    code: str
    message: str
    where: NotRequired[str]
    hint: NotRequired[str]


class DeviceClockOff(TypedDict):
    device: str
    offset_s: Annotated[int, {"description": "the device's clock minus the hub's at its last sync, seconds "
                                             "(negative: behind, its records dated that much too early)"}]
    measured_at: Annotated[int, {"description": "hub time of that sync (Unix seconds)"}]


class ChainHealth(TypedDict):
    """The log's size, checkpoint, forks, refusals by code, records by kind and device count; one page of
    devices (each device's log, last record time, last arrival and sync lag), in device id order."""

    now: int
    hub: str
    size: int
    checkpoint: CheckpointJson | None
    forks: int
    refused: dict[str, int]
    refused_total: int
    duplicates: int
    device_count: int
    devices: list[DeviceHealth]
    next: Annotated[str | None, {"description": "the device id to pass as `after` for the next page; null on the "
                                                "last page"}]
    records_by_kind: dict[str, int]
    figures_behind: Annotated[int, {"description": "records from before the store kept the chain's figures that are "
                                                   "not counted in them yet (counted in the background after an "
                                                   "upgrade, newest first): records_by_kind falls short of the log by "
                                                   "as many; 0 when every record is counted"}]
    signing_stopped: Annotated[SigningStopped | None, {"description": "why the hub signs no checkpoint (its store is "
                                                                      "an older copy, docs/DEPLOY.md); null while it "
                                                                      "signs"}]
    clocks_off: Annotated[list[DeviceClockOff], {"description": "the devices whose clock was off the hub's by more "
                                                                "than [clock] max_skew_s either way when they last "
                                                                "synced (an edge says its time in each sync round; "
                                                                "kept in memory), by device id"}]


SCAN_EVENT = Literal["cooked", "packed", "departed", "arrived", "received", "served", "returned", "damaged", "lost",
                     "sample", "incident"]


class ScanCounts(TypedDict):
    cooked: int
    packed: int
    departed: int
    arrived: int
    received: int
    served: int
    returned: int
    damaged: int
    lost: int
    sample: int
    incident: int


class LegacyStatusCounts(TypedDict):
    makanan_keluar: int
    makanan_diterima: int


class StatusCounts(TypedDict):
    on_time: int
    late: int
    short: int
    receiving: int
    missing: int
    overdue: int
    in_transit: int
    pending: int
    unplanned: int  # meals sent to a school on a day the plan has no delivery for it


class DeliveryCounts(StatusCounts):
    expected: int


class Portions(TypedDict):
    expected: int
    received: int


class SummaryChain(TypedDict):
    size: int
    devices: int
    forks: int
    checkpoint: CheckpointJson | None


class AlpsCounts(TypedDict):
    normal: int
    stress: int
    alert: int
    crisis: int


class SummaryMarkets(TypedDict):
    observations: int  # of the days listed, from `observations_from`
    quarantined: int  # of those `observations`, how many are held out of the analyses now (pending or confirmed)
    awaiting_decision: int  # the operator's queue: held values waiting for a decision, of any day
    observations_from: str  # YYYY-MM-DD, the first day listed
    alps: AlpsCounts


class SummaryRefill(TypedDict):
    """How far the read models are refilled from the store after a start (log entries of their window)."""

    running: bool
    done: int
    total: int
    damaged: int  # entries skipped because their stored bytes are damaged
    read: int  # entries read from the store: the kinds the window wants, found by the store's kind index


class Summary(TypedDict):
    """Today's MBG scans, deliveries and findings, the chain, the markets and the open alerts."""

    date: str
    total_scans_today: int
    scans_today: ScanCounts
    legacy_status_today: LegacyStatusCounts
    devices: int
    devices_today: int
    last_sync: int | None
    deliveries: DeliveryCounts
    portions: Portions
    food_safety_violations: int
    alerts: int
    findings: int
    stock_movements: int
    rejected_records: int
    now: int
    chain: SummaryChain
    markets: SummaryMarkets
    live_alerts: int
    refill: SummaryRefill


# --- MBG -------------------------------------------------------------------------------------------------
# unplanned: meals sent to or tapped in at a school on a day the plan has no delivery for it (closed, or no
# service day), judged against no deadline.
DELIVERY_STATUS = Literal["on_time", "late", "short", "receiving", "missing", "overdue", "in_transit", "pending",
                          "unplanned"]


class Delivery(TypedDict):
    school: str
    school_name: str
    kitchen: str
    date: str
    status: DELIVERY_STATUS
    statuses: list[DELIVERY_STATUS]
    expected: int
    departed_portions: int
    received_portions: int
    shortfall: int
    containers_out: int
    containers_in: int
    deadline_at: int
    departed_at: int | None
    arrived_at: int | None
    received_at: int | None
    served_at: int | None
    late_s: int
    time_basis: str  # device, arrival, corrected (the device clock set right by its measured offset) or mixed


class KitchenDeliveries(TypedDict):
    kitchen: str
    name: str
    date: str
    counts: StatusCounts
    schools: list[Delivery]


class Deliveries(TypedDict):
    date: str
    now: int
    kitchens: list[KitchenDeliveries]
    totals: dict[str, int]  # status -> deliveries, over every kitchen (empty without deliveries)


class ContainerRow(TypedDict):
    tag: str
    school: str | None
    stage: str | None
    steps: int


class Containers(TypedDict):
    date: str
    containers: list[ContainerRow]


class ContainerStep(TypedDict):
    event: SCAN_EVENT
    time: int
    basis: str
    site: str
    record: str
    device: str
    school: str | None
    parent: str | None
    batch: str | None
    temp_cc: int | None
    derived: bool


class ContainerTimeline(TypedDict):
    tag: str
    date: str
    school: str | None
    stage: str | None
    steps: list[ContainerStep]
    # the date of the trip this day's first return closes days late, when that trip's taps are beyond the window held
    closes: NotRequired[str]


class Container(TypedDict):
    tag: str
    timelines: list[ContainerTimeline]


class FoodSafetyViolation(TypedDict):
    rule: Literal["cook_to_serve", "danger_zone", "hot_holding"]
    limit: int
    measured: int
    unit: Literal["s", "cc"]
    source: str
    school: str
    kitchen: str
    date: str
    at: int
    open: bool
    to_arrival: bool
    # Which of the delivery's meals: not served yet; for cook_to_serve timed to their arrival (no serving tapped)
    # or, None, served late; for danger_zone and hot_holding served (None: a day stored before they were apart).
    part: Literal["not_served", "arrival", "served"] | None
    containers: list[str]
    records: list[str]


# Every finding's code (hub.mbg.analysis.SEVERITY gives each its severity; tests/mbg/test_analysis.py holds the two
# lists equal).
FINDING_CODE = Literal[
    "late_delivery", "short_delivery", "missing_delivery", "overdue_delivery", "container_lost",
    "container_unreturned", "container_returned_late", "container_damaged", "duplicate_scan", "out_of_order", "unknown_site", "over_receipt",
    "misrouted", "container_at_two_schools", "returned_without_arrival", "returned_to_other_kitchen", "tag_not_sent",
    "sent_by_other_kitchen", "staff_card_tag", "staff_not_on_roster",
    "clock_skew", "late_sync", "clock_went_back", "device_clock", "cook_to_serve", "danger_zone", "hot_holding", "no_temperature",
    "stock_overdraw", "stock_receipt_late", "stock_count_difference", "stock_unit_mismatch"]


class Finding(TypedDict):
    code: FINDING_CODE
    severity: Literal["info", "warning", "alert"]
    subject: str
    date: str | None
    detail: str
    measured: int | None
    limit: int | None
    containers: list[str]
    records: list[str]
    other_school: str | None
    # as FoodSafetyViolation's; of a device_clock one, which way the clock is off ('behind' or 'ahead'); of a
    # staff_not_on_roster one, whether the card's roster entry had ended ('until') or not begun ('from')
    part: Literal["not_served", "arrival", "served", "behind", "ahead", "until", "from"] | None
    other_kitchen: str | None


class Violations(TypedDict):
    date: str
    violations: list[FoodSafetyViolation]
    findings: list[Finding]


class LostContainer(TypedDict):
    tag: str
    school: str
    date: str | None
    reason: Literal["container_lost", "container_unreturned"]


class Exceptions(TypedDict):
    """The day's list of the kind named in the path: late, short or missing deliveries, or lost containers."""

    date: str
    late: NotRequired[list[Delivery]]
    short: NotRequired[list[Delivery]]
    missing: NotRequired[list[Delivery]]
    lost: NotRequired[list[LostContainer]]


class KitchenName(TypedDict):
    name: str
    tz_offset_s: Annotated[int, {"description": "the site's offset from UTC in seconds (WIB 25200, WITA 28800, WIT "
                                                "32400): its times of day are said in it"}]


class SchoolName(TypedDict):
    name: str
    kitchen: str
    portions: int
    deadline_s: int
    tz_offset_s: Annotated[int, {"description": "the site's offset from UTC in seconds (WIB 25200, WITA 28800, WIT "
                                                "32400): its times of day are said in it"}]


class DeviceName(TypedDict):
    name: str
    site: str
    role: str


class Names(TypedDict):
    planned: bool
    tz_offset_s: int  # the plan's default, for a site that names no zone of its own
    kitchens: dict[str, KitchenName]
    schools: dict[str, SchoolName]
    devices: dict[str, DeviceName]
    now: int
    today: str
    counting: int  # stored log entries a restarted hub has still to count into its answers


class OnHand(TypedDict):
    kitchen: str
    item: str
    unit: str
    on_hand: int
    flags: list[str]


class StockLine(TypedDict):
    time: int
    basis: str
    movement: str
    qty_in: int
    qty_out: int
    balance: int
    record: str
    counted: int | None
    difference: int | None
    shortfall: int
    flags: list[str]
    supplier: str | None
    batch: str | None
    reason: str | None


class StockCard(TypedDict):
    kitchen: str
    item: str
    unit: str
    on_hand: int
    received: int
    used: int
    wasted: int
    adjustments: int
    lines: list[StockLine]


class Stock(TypedDict):
    on_hand: list[OnHand]
    cards: list[StockCard]


class EpcisId(TypedDict):
    id: str


class EpcisQuantity(TypedDict):
    epcClass: str
    quantity: int


class EpcisSensorMetadata(TypedDict):
    time: str
    deviceID: str


class EpcisSensorReport(TypedDict):
    type: str
    value: float
    uom: str


class EpcisSensorElement(TypedDict):
    sensorMetadata: EpcisSensorMetadata
    sensorReport: list[EpcisSensorReport]


class EpcisEvent(TypedDict):
    type: Literal["ObjectEvent", "AggregationEvent"]
    eventTime: str
    eventTimeZoneOffset: str
    recordTime: str
    epcList: NotRequired[list[str]]  # an ObjectEvent's containers
    parentID: NotRequired[str]  # an AggregationEvent's carrier
    childEPCs: NotRequired[list[str]]
    quantityList: NotRequired[list[EpcisQuantity]]
    childQuantityList: NotRequired[list[EpcisQuantity]]
    action: Literal["ADD", "OBSERVE"]
    bizStep: str
    disposition: NotRequired[str]
    readPoint: EpcisId
    bizLocation: EpcisId
    sensorElementList: NotRequired[list[EpcisSensorElement]]
    eventID: str


class EpcisBody(TypedDict):
    eventList: list[EpcisEvent]


# JSON-LD's "@context" is not a Python name: functional form.
EpcisDocument = TypedDict("EpcisDocument", {
    "@context": list[str], "type": Literal["EPCISDocument"], "schemaVersion": str, "creationDate": str,
    "epcisBody": EpcisBody})


# --- markets ---------------------------------------------------------------------------------------------
class PricePoint(TypedDict):
    id: str
    time: int
    day: int
    price_idr: int
    quarantined: bool
    reasons: list[str]


class PriceSeries(TypedDict):
    market: str
    commodity: str
    unit: str
    points: list[PricePoint]


class FeatureEffect(TypedDict):
    change: float
    elasticity: float
    prior: float
    contribution: float


class FactorJson(TypedDict):
    factor: str
    contribution_pct: float
    weight: float
    assessed: bool
    features: dict[str, FeatureEffect]


class ImpactJson(TypedDict):
    day: int
    current_idr: int
    baseline_idr: int
    change_pct: float
    score: int
    direction: Literal["up", "down", "flat"]
    factors: list[FactorJson]
    unexplained_pct: float
    weights: dict[str, float]  # factor (and "unexplained") -> share, 0..1
    dominant: str
    fit_days: int
    statement: str
    market: str
    commodity: str
    grade: str
    unit: str


class Observation(TypedDict):
    id: str
    market: str
    region: str
    commodity: str
    grade: str
    unit: str
    price_idr: int
    time: int
    arrived_at: int
    reporter: str
    device: str
    source: str
    reported: NotRequired[str]  # the price as reported in another unit, before it was converted ("Rp 4.500/ons")


QUARANTINE_STATE = Literal["pending", "released", "confirmed", "cleared"]


class CheckedObservation(Observation):
    day: int
    quarantined: bool
    state: Literal["accepted", "pending", "released", "confirmed", "cleared"]
    provisional: bool
    reasons: list[str]


class RefusedPrice(TypedDict):
    """A signed price record the analytics do not use: its unit cannot be converted to its commodity's."""

    id: str
    market: str
    commodity: str
    unit: str
    price_idr: int
    arrived_at: int
    code: str
    message: str
    hint: NotRequired[str]


class Prices(TypedDict):
    """Every observation of the commodity from `observations_from` (the hub lists its last `raw_days` days; older
    days are kept as daily aggregates: history), with its verdict, and the impact of each series' last days."""

    commodities: list[str]
    markets: list[str]
    names: dict[str, str]  # commodity id -> its name
    series: list[PriceSeries]
    impact: list[ImpactJson]
    quarantined: list[CheckedObservation]
    observations_from: str  # YYYY-MM-DD, the first day listed
    refused: list[RefusedPrice]  # the last price records refused (BAD_UNIT), newest last
    refused_total: int


class LivePrice(TypedDict):
    market: str
    region: str
    commodity: str
    grade: str
    unit: str
    day: int
    date: str
    price_idr: int
    reports: int
    latitude: float | None
    longitude: float | None
    stale: bool  # the last report is older than the series usually leaves it (see Freshness)
    held: bool  # reports arrive but wait in quarantine for a decision (see Freshness): held, not stale
    held_reports: NotRequired[int]  # when held
    held_days: NotRequired[int]
    held_since: NotRequired[str]
    held_since_day: NotRequired[int]


class LivePrices(TypedDict):
    prices: list[LivePrice]


class DailyPrice(TypedDict):
    market: str
    commodity: str
    grade: str
    unit: str
    day: int
    date: str
    price_idr: int
    min_idr: int
    max_idr: int
    reports: int


class History(TypedDict):
    commodity: str
    market: str | None
    history: list[DailyPrice]


class NotComputed(TypedDict):
    market: str
    reason: str


class Impacts(TypedDict):
    commodity: str
    market: str | None
    impact: list[ImpactJson]
    not_computed: list[NotComputed]
    weights: dict[str, dict[str, float]]  # "market/commodity" -> its weights
    dominant: dict[str, str]  # "market/commodity" -> its dominant factor


class ForecastPoint(TypedDict):
    day: int
    date: str
    price_idr: int
    lo80: int
    hi80: int
    lo95: int
    hi95: int


class ModelScore(TypedDict):
    mase: float | None
    smape: float | None
    coverage80: float | None


class ChartPoint(TypedDict):
    day: int
    date: str
    mean: int
    low: int
    high: int
    low80: int
    high80: int


class HistoryPoint(TypedDict):
    day: int
    price: int


class StaleWords(TypedDict):
    id: str
    en: str


class Freshness(TypedDict):
    """How old the series' last accepted report is: stale past `stale_after_days` (3, or the series' usual gap
    between reports when longer); a stale forecast starts the day after the last report, and says so in `words`.
    Held instead of stale while its reports since arrive but wait in quarantine for an operator's decision: the
    held_* fields say how many reports on how many reported days in a row since when, and `words` says so."""

    stale: bool
    held: bool
    held_reports: NotRequired[int]
    held_days: NotRequired[int]
    held_since: NotRequired[str]  # YYYY-MM-DD, the first reported day held
    held_since_day: NotRequired[int]
    last_report: str  # YYYY-MM-DD
    last_report_day: int
    days_since: int
    stale_after_days: int
    words: NotRequired[StaleWords]


class ForecastJson(TypedDict):
    """7-day forecast, its backtest against the baselines, and the chart's points and last 28 days."""

    model: str
    parameters: str
    confidence: Literal["high", "medium", "low"]
    points: list[ForecastPoint]
    backtest: dict[str, ModelScore]  # model -> its backtest scores
    origins: int
    mase: float | None
    baselines: dict[str, float | None]
    explanation: str
    market: str
    commodity: str
    grade: str
    unit: str
    forecast: list[ChartPoint]
    history: list[HistoryPoint]
    interval: str
    freshness: Freshness


class HubAlert(TypedDict):
    """An alert as the hub keeps it: derived (MBG findings, ALPS/IFPA, held prices) or raised by an operator."""

    id: str
    domain: Literal["mbg", "markets", "operator"]
    code: str
    subject: str
    severity: Literal["info", "warning", "alert"]
    text: str
    time: int
    band: NotRequired[str]  # ALPS/IFPA alerts
    previous: NotRequired[str]
    stale_days: NotRequired[int]  # ALPS/IFPA alerts judged on a silent series: how old its last report was
    # held_series: a series' reports held on held_days reported days in a row since held_since (YYYY-MM-DD),
    # held_reports in all, still waiting for a decision; resolved when decided or accepted again
    held_reports: NotRequired[int]
    held_days: NotRequired[int]
    held_since: NotRequired[str]
    level: NotRequired[Literal["info", "warning", "critical"]]  # raised by an operator
    by: NotRequired[str]
    updated_at: NotRequired[int]
    resolved_at: NotRequired[int]


class EarlyWarning(TypedDict):
    id: str
    series: str
    market: str
    commodity: str
    region: str
    indicator: Literal["ALPS", "IFPA"]
    previous: str
    band: str
    value: float
    day: int
    date: str
    price_idr: int
    message: str
    stale: bool  # judged when the series' last report was older than it usually is
    stale_days: int  # how old it was then; 0 when not stale
    held: bool  # judged when the series' reports since `date` were held in quarantine, waiting for a decision
    held_reports: int  # how many; 0 when not held
    held_since: str | None  # YYYY-MM-DD of the first; None when not held


class Alerts(TypedDict):
    alerts: list[HubAlert]
    resolved: list[HubAlert]
    live: list[EarlyWarning]


ALPS_BAND = Literal["normal", "stress", "alert", "crisis"]


class MapSeries(TypedDict):
    """A series on the markets map: its latest day and price, and whether it is stale or held."""

    market: str
    commodity: str
    grade: str
    unit: str
    region: str
    day: int  # the last day with an accepted price
    price_idr: int
    stale: bool
    held: bool  # see Freshness
    held_reports: NotRequired[int]
    held_days: NotRequired[int]
    held_since: NotRequired[str]
    held_since_day: NotRequired[int]
    days_since_report: int


class SeriesBand(MapSeries):
    """A series with its current ALPS value and band."""

    alps: float
    band: ALPS_BAND


class UnbandedSeries(MapSeries):
    """A series with accepted prices, but too few weeks of them for an ALPS band: its latest accepted price."""

    no_band: str  # why: how many weeks ALPS needs and has


class MapMarket(TypedDict):
    id: str
    name: str
    province: str
    city: str
    lat: float
    lon: float
    alps: list[SeriesBand]
    unbanded: list[UnbandedSeries]  # the market's series without a band yet
    band: ALPS_BAND
    worst: SeriesBand | None


class MarketMap(TypedDict):
    markets: list[MapMarket]
    bands: list[ALPS_BAND]


class CheckJson(TypedDict):
    check: str
    family: str
    fired: bool
    score: float | None
    limit: float | None
    reason: str


class VerdictJson(TypedDict):
    observation: str
    status: Literal["accepted", "quarantined"]
    summary: str
    provisional: bool
    fired: list[str]
    checks: list[CheckJson]


class QuarantineEntry(TypedDict):
    observation: Observation
    verdict: VerdictJson
    quarantined_at: int
    state: QUARANTINE_STATE


class Quarantine(TypedDict):
    """The held values of the days listed (from `observations_from`, the hub's last `raw_days` days), and those
    of older days still pending: a value waiting for an operator's decision stays listed until decided."""

    state: Literal["pending", "released", "confirmed", "cleared", "all"]
    observations_from: str  # YYYY-MM-DD
    total: int  # held values in that state, of which `entries` is the page from `offset`
    offset: int
    entries: list[QuarantineEntry]
    names: dict[str, str]  # the commodities' names by id, of those in `entries`


# "from" is a Python keyword: functional form.
DecisionJson = TypedDict("DecisionJson", {
    "observation": str, "action": Literal["release", "confirm", "reopen", "revise", "clear", "hold"], "by": str,
    "why": str, "at": int, "from": QUARANTINE_STATE, "to": QUARANTINE_STATE})


class Audit(TypedDict):
    audit: list[DecisionJson]


class Decided(TypedDict):
    decision: DecisionJson
    audit: list[DecisionJson]


NON_BLANK = {"minLength": 1, "pattern": r"\S"}


class Decide(TypedDict):
    """An operator's decision on a quarantined price (other keys are ignored; `by` and `why` are cut to 200 and
    2000 characters)."""

    action: Literal["release", "confirm", "reopen"]
    by: Annotated[str, NON_BLANK]
    why: Annotated[str, NON_BLANK]


class RefusedRow(TypedDict):
    line: int
    reason: str


class ImportReport(TypedDict):
    layout: str
    rows: int
    taken: int
    duplicates: int
    converted: int  # rows priced per ons, per gram or per part of a kilo or litre, taken in the commodity's unit
    refused: int
    # Rows (of a PIHPS table, cells) whose price is "-", empty or 0: no price that day, neither taken nor refused.
    no_price: int
    refused_rows: list[RefusedRow]  # the first 100; a PIHPS row's reason once, with how many of its dates
    already_imported: int
    stored: int
    quarantined: int
    # Of those stored, rows held at first and then taken as a series' level shift (no nearby market to compare,
    # the new level held on `level_days` reported days): hub/markets/README.md.
    level_shift: int
    sha256: str
    bytes: int


class Subscriber(TypedDict):
    id: str
    kind: str
    url: str  # where its alerts go, with what could be a secret masked as *** (docs/DEPLOY.md)
    commodities: list[str]
    regions: list[str]
    min_band: str


class WebhookDelivery(TypedDict):
    alert: str
    delivery: str  # the id every try of it carries (X-Jejak-Delivery), the same after a restart (docs/DEPLOY.md)
    subscriber: str
    kind: str
    url: str  # where it went, with what could be a secret masked as *** (docs/DEPLOY.md)
    body_sha256: str
    attempts: int
    statuses: list[int | str]  # HTTP status per attempt, or the error's name
    ok: bool
    started_at: float
    finished_at: float


class Redelivery(TypedDict):
    """Failed deliveries sent again while their alert is open."""

    waiting: int  # alerts waiting for their next round
    delivered: int  # alerts delivered by a later round
    # alerts not sent again, by reason: superseded, queue_full, closed, told, refused, expired, unsubscribed
    dropped: dict[str, int]


class Webhooks(TypedDict):
    subscribers: list[Subscriber]
    deliveries: list[WebhookDelivery]
    redelivery: Redelivery


# --- seed 1 and seed 2 bridges ---------------------------------------------------------------------------
IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"  # a legacy device, gateway or market id


class GatewayScan(TypedDict):
    """One scan of seed 1's gateway batch (the body is a list of these)."""

    nfc_tag_id: str
    timestamp: Annotated[str, {"maxLength": 40}]  # ISO 8601; without a zone it is UTC
    status_scan: str
    gateway_id: Annotated[str, {"pattern": IDENT}]


class GatewayAccepted(TypedDict):
    message: str
    records: list[str]
    trust: Literal["attested"]
    attested_by: str


class Register(TypedDict):
    market_id: Annotated[str, {"pattern": IDENT}]
    device_id: Annotated[str, {"pattern": IDENT}]
    role: NotRequired[Literal["operator", "sensor", "reporter"]]  # default operator


class Registered(TypedDict):
    device_id: str
    token: str
    qr: str  # PNG data URL of {device_id, market_id, token, hub}
    status: Literal["pending", "active", "revoked"]
    trust: Literal["attested"]


class TokenRequest(TypedDict):
    """Other keys are ignored."""

    device_id: str


class TokenAnswer(TypedDict):
    token: str


class LegacyDeviceJson(TypedDict):
    device_id: str
    market_id: str
    market: str
    role: str
    registered_at: int
    status: Literal["pending", "active", "revoked"]
    source: Annotated[str, {"description": "the address its registration came from (empty if not known)"}]
    trust: Literal["attested"]


class LegacyRejected(TypedDict):
    """The pending legacy registrations dropped, each as it waited."""

    rejected: list[LegacyDeviceJson]


class MarketDataStream(TypedDict):
    """Seed 2's payload: prices by commodity name; one price that does not hold is refused on its own."""

    market_id: Annotated[str, {"pattern": IDENT}]
    prices: Annotated[dict[str, float], {"minProperties": 1, "maxProperties": 64}]
    timestamp: NotRequired[Annotated[str, {"maxLength": 40}]]
    device_id: NotRequired[Annotated[str, {"pattern": IDENT}]]
    region: NotRequired[Annotated[str, {"minLength": 1, "maxLength": 64}]]
    temperature: NotRequired[Annotated[float | None, {"minimum": -50, "maximum": 80}]]
    humidity: NotRequired[Annotated[float | None, {"minimum": 0, "maximum": 100}]]
    crowd: NotRequired[Annotated[float | None, {"minimum": 0, "maximum": 1_000_000}]]


class Ingested(TypedDict):
    status: Literal["ok"]
    processed: int
    refused: dict[str, str]  # price name -> why it was refused
    observed_at: int
    late: bool
    record: str
    seq: int
    trust: Literal["attested"]
    attested_by: str


class TrustCounts(TypedDict):
    signed: int
    attested: int


class PublicPrice(TypedDict):
    market_id: str
    market: str
    commodity: str
    unit: str
    price_idr: int
    time: int
    day: int
    region: str
    reporter: str
    source: str
    trust: Literal["signed", "attested"]
    record: str
    quarantined: bool
    provisional: bool
    reasons: list[str]


class PublicLive(TypedDict):
    commodity: str
    prices: list[PublicPrice]
    trust: TrustCounts


class PublicHistory(TypedDict):
    """Each observation from `observations_from` (the hub's last `raw_days` days; older days are aggregates)."""

    commodity: str
    market_id: str
    history: list[PublicPrice]
    trust: TrustCounts
    observations_from: str  # YYYY-MM-DD


class PublicImpact(Impacts):
    inputs: TrustCounts


class SeedForecast(ForecastJson):
    inputs: TrustCounts


class ForecastConfidence(TypedDict):
    commodity: str
    market_id: str | None
    confidence: float | None
    basis: str
    inputs: TrustCounts
    attested_share: float | None


class PriceCheck(TypedDict):
    market_id: Annotated[str, {"pattern": IDENT}]
    commodity: Annotated[str, {"minLength": 1, "maxLength": 64}]
    price: Annotated[float, {"minimum": 1, "maximum": 1_000_000_000}]
    region: NotRequired[Annotated[str, {"maxLength": 64}]]
    timestamp: NotRequired[Annotated[str, {"maxLength": 40}]]
    device_id: NotRequired[Annotated[str, {"pattern": IDENT}]]


class SeedFlags(TypedDict):
    zscore: bool
    iqr: bool
    ai: bool
    multi_source_ok: bool


class SourceCheck(CheckJson):
    ok: bool


class PriceChecked(TypedDict):
    market_id: str
    commodity: str
    price: int
    outlier: bool
    flagged: bool
    quarantined: bool
    flags: SeedFlags
    sources: dict[str, SourceCheck]  # reporters, nearby, ceiling: those that ran
    stored: Literal[False]
    jejak: VerdictJson


_HIDDEN = r"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"  # what /api/alerts/trigger refuses in a message
_LINE = f"[^{_HIDDEN}]"


class AlertTrigger(TypedDict):
    # One line: no control characters, no bidirectional overrides, and something besides spaces.
    message: Annotated[str, {"minLength": 1, "maxLength": 500, "pattern": rf"^{_LINE}*[^\s{_HIDDEN}]{_LINE}*$"}]
    level: NotRequired[Literal["info", "warning", "critical"]]  # default warning
    commodity: NotRequired[str]
    market_id: NotRequired[str]


class AlertTriggered(TypedDict):
    status: Literal["triggered"]
    type: Literal["alert"]
    id: str
    level: Literal["info", "warning", "critical"]
    message: str
    subject: str
    timestamp: str
    jejak: HubAlert


class Appended(TypedDict):
    index: int
    hash: str
    timestamp: str
    record: str
    device: str
    seq: int
    trust: Literal["attested"]
    attested_by: str


# A non-empty JSON object of at most 64 keys of 1 to 64 characters, nested at most 6 deep; texts of at most
# 512 characters and lists of at most 256 items (checked by the handler, not described here).
APPEND_BODY: dict[str, Any] = {"type": "object", "minProperties": 1, "maxProperties": 64,
                               "propertyNames": {"minLength": 1, "maxLength": 64}}


class DamagedRecord(TypedDict):
    device: str
    seq: int


class StoreCheckJson(TypedDict):
    code: Literal["RECORD_DAMAGED", "INVALID_CHECKPOINT"] | None
    ok: bool
    size: int
    checked: int
    full: bool
    signed_size: int
    roots_ok: bool
    damaged: list[DamagedRecord]
    seconds: float


class Integrity(TypedDict):
    ok: bool
    length: int
    broken_at: NotRequired[int]  # the first damaged seq, or the signed size whose root no longer holds
    checked_at: str  # when the pass that answers ended: one answers for 10 times as long as it took, 1 min at least
    jejak: StoreCheckJson


class MqttStats(TypedDict):
    connected: bool
    messages: int
    handler_errors: int
    last_connect_rc: str | None


class BridgesStatus(TypedDict):
    attestor: str
    attestation_log_length: int
    attested: dict[str, int]  # input path -> inputs attested
    refused: dict[str, int]  # input path -> inputs refused
    legacy_devices: list[LegacyDeviceJson]
    mqtt: MqttStats | None
