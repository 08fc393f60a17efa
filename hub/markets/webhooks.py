"""Alert delivery to subscribers over webhooks (generic JSON, Telegram sendMessage, WhatsApp Cloud API),
with retries, back-off, redelivery of what failed while its alert is open (kept through a restart), and a record
of what was sent."""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from coap_server.wording import agree, count

from ..journal import Lines
from ..redact import mask_url
from ..store import StoreError
from .calendar import date_of
from .errors import BadObservation
from .staleness import HELD_ENDED_WORDS, HELD_RUN_WORDS, HELD_WORDS
from .staleness import WORDS as STALE_WORDS
from .warning import ALPS_BANDS, HELD, Alert, _severity

log = logging.getLogger("jejak.hub.webhooks")

KINDS = ("json", "telegram", "whatsapp")


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriber:
    """Who gets alerts and how. `url` is the endpoint for "json", the Bot API base for "telegram"
    (https://api.telegram.org) and the Graph API base with version for "whatsapp"
    (https://graph.facebook.com/v21.0)."""

    id: str
    kind: str
    url: str
    token: str = ""  # bot token, WhatsApp access token, or a bearer token for "json"
    chat_id: str = ""  # telegram
    phone_number_id: str = ""  # whatsapp: the sending business number's id
    to: str = ""  # whatsapp: recipient in international format without "+"
    commodities: tuple[str, ...] = ()  # empty: every commodity
    regions: tuple[str, ...] = ()  # empty: every region
    # ALPS band from which to notify (IFPA "moderately high" and a series held for a decision count as stress)
    min_band: str = "stress"

    def __post_init__(self) -> None:
        # `where` is the setting at fault, which a config's error names within its entry.
        if self.kind not in KINDS:
            close = difflib.get_close_matches(self.kind.lower(), KINDS, n=1, cutoff=0.6)
            raise BadObservation(f"subscriber kind: expected one of {list(KINDS)}, got {self.kind!r}", where="kind",
                                 hint=f"did you mean {close[0]!r}?" if close else None)
        if not self.url.startswith(("http://", "https://")):
            raise BadObservation(f"subscriber url: expected http:// or https://, got {mask_url(self.url)!r}",
                                 where="url", hint='e.g. url = "https://example.org/alerts"')
        if self.kind == "telegram" and not (self.token and self.chat_id):
            raise BadObservation("telegram subscriber: expected token and chat_id",
                                 where="chat_id" if self.token else "token")
        if self.kind == "whatsapp" and not (self.token and self.phone_number_id and self.to):
            raise BadObservation("whatsapp subscriber: expected token, phone_number_id and to",
                                 where=next(n for n in ("token", "phone_number_id", "to") if not getattr(self, n)))
        if self.min_band not in ALPS_BANDS:
            close = difflib.get_close_matches(self.min_band.lower(), ALPS_BANDS, n=1, cutoff=0.6)
            raise BadObservation(f"min_band: expected one of {list(ALPS_BANDS)}, got {self.min_band!r}",
                                 where="min_band", hint=f"did you mean {close[0]!r}?" if close else None)

    def wants(self, alert: Alert) -> bool:
        if self.commodities and alert.commodity not in self.commodities:
            return False
        if self.regions and alert.region not in self.regions:
            return False
        return _severity(alert.indicator, alert.band) >= ALPS_BANDS.index(self.min_band)


def alert_text(alert: Alert) -> str:
    if alert.indicator == HELD:  # a chat reader gets what the run asks in both languages, as the dashboard says it
        said = (HELD_RUN_WORDS[lang].format(reports=alert.held_reports, days=int(alert.value),
                                            date=date_of(alert.held_since).isoformat()) if alert.held
                else HELD_ENDED_WORDS[lang].format(date=date_of(alert.day).isoformat()) for lang in ("id", "en"))
        return f"Jejak held reports [{alert.band.upper()}]\n{alert.message}\n" + "\n".join(said)
    text = f"Jejak early warning [{alert.band.upper()}]\n{alert.message}"
    if alert.stale:  # a chat reader gets the warning in both languages, as the dashboard shows it
        text += "\n" + "\n".join(STALE_WORDS[lang].format(date=date_of(alert.day).isoformat(), days=alert.stale_days)
                                 for lang in ("id", "en"))
    if alert.held:
        text += "\n" + "\n".join(HELD_WORDS[lang].format(reports=alert.held_reports,
                                                          date=date_of(alert.held_since).isoformat())
                                 for lang in ("id", "en"))
    return text


DELIVERY_HEADER = "X-Jejak-Delivery"


def delivery_id(subscriber: str, alert: Alert) -> str:
    """The id of telling `alert` (a series' band on a day, told as a change from `previous`) to `subscriber`:
    derived from them, not kept, so it is the same on every try, on every round of redelivery and after a
    restart, and a receiver that has seen it drops the request as one it already has. Another subscriber, another
    band or day, or the same band told from another one (eased to it, not raised) is another delivery."""
    return hashlib.sha256(f"jejak-delivery|{subscriber}|{alert.id}|{alert.previous}".encode()).hexdigest()[:32]


def build_request(sub: Subscriber, alert: Alert) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of the request that tells `sub` about `alert`. Every kind carries the delivery's
    id in DELIVERY_HEADER; the generic JSON body has it as `delivery` too."""
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id(sub.id, alert)}
    base = sub.url.rstrip("/")
    if sub.kind == "telegram":
        return (f"{base}/bot{sub.token}/sendMessage", headers,
                {"chat_id": sub.chat_id, "text": alert_text(alert), "disable_web_page_preview": True})
    if sub.kind == "whatsapp":
        headers["Authorization"] = f"Bearer {sub.token}"
        return (f"{base}/{sub.phone_number_id}/messages", headers,
                {"messaging_product": "whatsapp", "recipient_type": "individual", "to": sub.to,
                 "type": "text", "text": {"preview_url": False, "body": alert_text(alert)}})
    if sub.token:
        headers["Authorization"] = f"Bearer {sub.token}"
    return sub.url, headers, {"type": "jejak.market.alert", "delivery": headers[DELIVERY_HEADER],
                              "alert": alert.to_dict(), "text": alert_text(alert)}


ANSWER_BYTES = 64 * 1024  # of a subscriber's answer read, at most: its status is what counts


def shown_url(url: str, token: str = "") -> str:
    """`url` as the hub shows and logs it: masked (`mask_url`), and the subscriber's token never in it."""
    shown = mask_url(url)
    return shown.replace(token, "***") if token else shown


def backoff(failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The wait after `failures` failures: `base_s` doubling each time up to `cap_s`, drawn from half to one and a
    half times that (jitter, so senders that failed together do not all come back together)."""
    return min(cap_s, base_s * 2 ** (failures - 1)) * (0.5 + rng.random())


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """What was sent to whom, how often, and how it ended. `url` is shown with what could be a secret in it
    masked (`mask_url`), and the subscriber's token left out; `delivery` is the id the request carried
    (`delivery_id`)."""

    alert_id: str
    delivery: str
    subscriber: str
    kind: str
    url: str
    body_sha256: str
    body: dict[str, Any]
    attempts: int
    statuses: tuple[int | str, ...]  # HTTP status per attempt, or the error's name
    ok: bool
    started_at: float
    finished_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"alert": self.alert_id, "delivery": self.delivery, "subscriber": self.subscriber, "kind": self.kind,
                "url": self.url, "body_sha256": self.body_sha256, "attempts": self.attempts,
                "statuses": list(self.statuses), "ok": self.ok, "started_at": self.started_at,
                "finished_at": self.finished_at}

    @property
    def worth_retrying(self) -> bool:
        """A failure that a later try may not meet: no answer, a timeout, 408, 429 or 5xx (another 4xx will not
        get better by sending the same request again)."""
        last = self.statuses[-1] if self.statuses else "none"
        return not self.ok and (isinstance(last, str) or retried(last))


def retried(status: int) -> bool:
    """Whether an HTTP answer is worth trying again: the receiver timed out waiting (408), asks to slow down
    (429) or failed (5xx)."""
    return status in (408, 429) or status >= 500


class WebhookSender:
    """Sends alerts with up to `max_attempts` tries. Connection errors, timeouts, 408, 429 and 5xx are retried
    after an exponential back-off with jitter (or the server's Retry-After, in seconds); other 4xx are not,
    because sending the same request again cannot fix it."""

    def __init__(self, *, session: aiohttp.ClientSession | None = None, max_attempts: int = 4,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, timeout_s: float = 10.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        if max_attempts < 1:
            raise BadObservation(f"max_attempts: expected at least 1, got {max_attempts}")
        self._session = session
        self._own_session = session is None
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.log: list[Delivery] = []

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                asked = float(retry_after)
            except ValueError:  # an HTTP date, or junk: our own back-off
                asked = -1.0
            if 0 <= asked < float("inf"):  # NaN and negatives are junk too
                return min(asked, self.max_backoff_s)
        return backoff(attempt, self.backoff_s, self.max_backoff_s, self.rng)

    async def send(self, sub: Subscriber, alert: Alert) -> Delivery:
        url, headers, body = build_request(sub, alert)
        data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
        shown = shown_url(url, sub.token)
        session = await self._get_session()
        started = self.clock()
        statuses: list[int | str] = []
        ok = False
        for attempt in range(1, self.max_attempts + 1):
            retry_after = None
            try:
                # A redirect is not followed (the subscriber's address is the operator's choice, not the
                # answering server's: no hop to the hub's own network), and of the answer only its status
                # counts: its body is read no further than ANSWER_BYTES.
                async with session.post(url, data=data, headers=headers, timeout=self.timeout,
                                        allow_redirects=False) as resp:
                    await resp.content.read(ANSWER_BYTES)
                    statuses.append(resp.status)
                    if 200 <= resp.status < 300:
                        ok = True
                        break
                    if not retried(resp.status):
                        break
                    retry_after = resp.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as e:
                statuses.append(type(e).__name__)
            if attempt < self.max_attempts:
                await self.sleep(self._delay(attempt, retry_after))
        delivery = Delivery(alert_id=alert.id, delivery=headers[DELIVERY_HEADER], subscriber=sub.id, kind=sub.kind,
                            url=shown, body_sha256=hashlib.sha256(data).hexdigest(), body=body, attempts=len(statuses),
                            statuses=tuple(statuses), ok=ok, started_at=started, finished_at=self.clock())
        self.log.append(delivery)
        if not ok:
            log.warning("webhook %s: alert %s to %s not delivered (delivery %s); each try answered: %s", sub.id,
                        alert.id, shown, delivery.delivery, ", ".join(map(str, statuses)))
        return delivery

    async def broadcast(self, subscribers: Sequence[Subscriber], alerts: Sequence[Alert], *,
                        concurrency: int = 8) -> list[Delivery]:
        """Send every alert to every subscriber that wants it, a few at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def one(sub: Subscriber, alert: Alert) -> Delivery:
            async with gate:
                return await self.send(sub, alert)

        jobs = [one(s, a) for a in alerts for s in subscribers if s.wants(a)]
        return list(await asyncio.gather(*jobs))


class Told:
    """What each subscriber was last told about each series' indicator (its band), kept in a journal so a
    restarted hub, which derives its alerts again, neither sends an alert a subscriber already has nor misses
    telling it that the band changed since. An alert is told when its band differs from the one told: a
    worse band when the early warning raises it, a better one (eased, or back to normal) as soon as it is
    judged, to every subscriber that was told the worse one."""

    def __init__(self, journal: Lines | None = None) -> None:
        self.journal = journal
        self._lock = threading.Lock()
        self._bands: dict[tuple[str, str, str], str] = {}  # (subscriber, series, indicator) -> band
        lines = journal.read() if journal is not None else []
        for item in lines:
            try:
                self._bands[(str(item["subscriber"]), str(item["series"]), str(item["indicator"]))] = str(item["band"])
            except KeyError:
                continue
        if journal is not None and len(lines) > 2 * len(self._bands) + 64:
            journal.rewrite(self._line(*k, b) for k, b in self._bands.items())

    @staticmethod
    def _line(subscriber: str, series: str, indicator: str, band: str) -> dict[str, Any]:
        return {"subscriber": subscriber, "series": series, "indicator": indicator, "band": band}

    def series(self, indicator: str, band: str) -> set[str]:
        """The series whose `indicator` some subscriber was last told at `band`."""
        with self._lock:
            return {s for (_, s, i), b in self._bands.items() if i == indicator and b == band}

    def band(self, subscriber: str, series: str, indicator: str) -> str | None:
        with self._lock:
            return self._bands.get((subscriber, series, indicator))

    def outbox(self, subscribers: Sequence[Subscriber], raised: Sequence[Alert],
               latest: Mapping[tuple[str, str], Alert],
               held: Callable[[str, Alert], bool] | None = None) -> list[tuple[Subscriber, Alert, str | None]]:
        """The alerts to send now, each with the band its subscriber was told before. They count as told at
        once (a derivation while they are on their way does not send them again); `settle` keeps them, or
        takes them back if the delivery failed. An alert whose band already waits for its next round
        (`held(subscriber, alert)`, `Redelivery.held`) is left to that round: a restarted hub, which raises
        every series again, keeps the back-off."""
        out: list[tuple[Subscriber, Alert, str | None]] = []
        with self._lock:
            for sub in subscribers:
                for a in raised:
                    told = self._bands.get((sub.id, a.series, a.indicator))
                    if sub.wants(a) and told != a.band and not (held is not None and held(sub.id, a)):
                        eased = told is not None and _severity(a.indicator, told) > _severity(a.indicator, a.band)
                        # Judged afresh after a restart, a series raised from normal may have eased since told.
                        out.append((sub, a.since(told) if eased and told is not None else a, told))
                        self._bands[(sub.id, a.series, a.indicator)] = a.band
            by_id = {sub.id: sub for sub in subscribers}
            for (sid, series, indicator), told in list(self._bands.items()):
                now = latest.get((series, indicator))
                if sid not in by_id or now is None or _severity(indicator, now.band) >= _severity(indicator, told):
                    continue
                if held is not None and held(sid, now):
                    continue
                out.append((by_id[sid], now.since(told), told))
                self._bands[(sid, series, indicator)] = now.band
        return out

    def claim(self, subscriber: str, alert: Alert) -> tuple[bool, str | None]:
        """Count `alert` as told to `subscriber` unless that band is already told (sent, or on its way by another
        delivery): whether it was claimed, and the band told before, for `settle`."""
        key = (subscriber, alert.series, alert.indicator)
        with self._lock:
            told = self._bands.get(key)
            if told == alert.band:
                return False, told
            self._bands[key] = alert.band
            return True, told

    def settle(self, delivery: Delivery, alert: Alert, told_before: str | None) -> None:
        """Keep a delivered alert as told (durably); a failed one is told again when it is raised again."""
        key = (delivery.subscriber, alert.series, alert.indicator)
        if delivery.ok:
            if self.journal is not None:
                self.journal.append(self._line(*key, alert.band))
            return
        with self._lock:
            if self._bands.get(key) == alert.band:
                if told_before is None:
                    del self._bands[key]
                else:
                    self._bands[key] = told_before



@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When a failed delivery is sent again: after `backoff_s`, doubling each round up to `max_backoff_s`, with
    jitter (`backoff`); at most `queue` alerts wait per subscriber, and none longer than `max_age_s` after its
    first failure."""

    backoff_s: float = 60.0
    max_backoff_s: float = 3600.0
    queue: int = 256
    max_age_s: float = 7 * 86400.0  # a week: about as long as the hub lists an early warning (mbg_keep_days)

    def __post_init__(self) -> None:
        if not 0 < self.backoff_s <= self.max_backoff_s:
            raise ValueError(f"webhook_retry: expected 0 < backoff_s <= max_backoff_s, got {self.backoff_s} "
                             f"and {self.max_backoff_s}")
        if self.queue < 1:
            raise ValueError(f"webhook_retry.queue: expected at least 1, got {self.queue}")
        if not self.max_age_s > 0:
            raise ValueError(f"webhook_retry.max_age_s: expected > 0 seconds, got {self.max_age_s}")

    def delay(self, rounds: int, rng: random.Random) -> float:
        """The wait before round `rounds` + 1, after `rounds` failed rounds."""
        return backoff(rounds, self.backoff_s, self.max_backoff_s, rng)


_ALERT_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "series": (str,), "market": (str,), "commodity": (str,), "region": (str,), "indicator": (str,),
    "previous": (str,), "band": (str,), "value": (int, float), "day": (int,), "price_idr": (int,),
    "message": (str,)}


def _alert_line(alert: Alert) -> dict[str, Any]:
    return {**{name: getattr(alert, name) for name in _ALERT_FIELDS}, "stale_days": alert.stale_days,
            "held_reports": alert.held_reports, "held_since": alert.held_since}


def _alert_of(item: object) -> Alert:
    if not isinstance(item, dict):
        raise ValueError(f"alert: expected an object, got {type(item).__name__}")
    for name, types in _ALERT_FIELDS.items():
        value = item.get(name)
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"alert.{name}: expected {' or '.join(t.__name__ for t in types)}, got {value!r}")
    counts = {}
    for name in ("stale_days", "held_reports", "held_since"):
        value = item.get(name, 0)  # lines kept before alerts said so have none
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"alert.{name}: expected a whole number, got {value!r}")
        counts[name] = value
    alert = Alert(**{name: item[name] for name in _ALERT_FIELDS}, stale_days=counts["stale_days"],
                  held_reports=counts["held_reports"], held_since=counts["held_since"])
    try:
        _severity(alert.indicator, alert.band)
    except ValueError:
        raise ValueError(f"alert: expected an ALPS band or an IFPA class, got {alert.indicator} "
                         f"{alert.band!r}") from None
    return alert


def _number(item: dict[str, Any], name: str) -> float:
    value = item.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    """A failed delivery waiting for its next round, as the redelivery journal keeps it: the subscriber by its
    id (its URL and token stay in the configuration), the alert, the rounds failed so far (the first delivery
    is round 1), when the next one is due and when the first one failed (wall-clock seconds)."""

    subscriber: str
    alert: Alert
    rounds: int
    due: float
    since: float

    @property
    def key(self) -> tuple[str, str, str]:
        return self.subscriber, self.alert.series, self.alert.indicator

    def to_line(self) -> dict[str, Any]:
        return {"subscriber": self.subscriber, "alert": _alert_line(self.alert), "rounds": self.rounds,
                "due": self.due, "since": self.since}

    @classmethod
    def from_line(cls, item: dict[str, Any]) -> Waiting:
        """The waiting delivery a journal line holds; ValueError saying what is wrong with it."""
        subscriber, rounds = item.get("subscriber"), item.get("rounds")
        if not isinstance(subscriber, str) or not subscriber:
            raise ValueError(f"subscriber: expected an id, got {subscriber!r}")
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            raise ValueError(f"rounds: expected a whole number from 1, got {rounds!r}")
        return cls(subscriber=subscriber, alert=_alert_of(item.get("alert")), rounds=rounds,
                   due=_number(item, "due"), since=_number(item, "since"))


def _ended_line(key: tuple[str, str, str], reason: str) -> dict[str, Any]:
    return {"subscriber": key[0], "series": key[1], "indicator": key[2], "end": reason}


def _ended_key(item: dict[str, Any]) -> tuple[str, str, str]:
    key = (item.get("subscriber"), item.get("series"), item.get("indicator"))
    if not all(isinstance(k, str) for k in key) or not isinstance(item.get("end"), str):
        raise ValueError("expected subscriber, series, indicator and end, as text")
    return key  # type: ignore[return-value]


_DROPS = {
    "superseded": "a newer alert of the series takes its place",
    "queue_full": "{queued} already {wait} for this subscriber",
    "closed": "the alert is no longer open",
    "told": "its band was told meanwhile",
    "refused": "the subscriber refused it",
    "expired": "it has waited longer than webhook_retry.max_age_s ({max_age_s:g} s)",
    "unsubscribed": "the subscriber is no longer configured",
}


class Redelivery:
    """Failed deliveries sent again while their alert is still open, with capped exponential back-off and
    jitter (`RetryPolicy`), instead of only when the alert is raised again.

    Each subscriber has a bounded queue of alerts waiting, one per series' indicator (a newer alert for the
    same series takes the older one's place). A round is skipped for good when the alert is no longer open
    (`still_open`), when its band was told meanwhile (`Told.claim`: nothing is sent twice once it succeeded),
    when the subscriber refuses it (a 4xx other than 408 and 429) or when it has waited `max_age_s`; an alert
    that finds its subscriber's queue full is dropped. Every drop is counted by reason (`dropped`) and logged.

    With a `journal` the queue survives a restart: each change (queued, a failed round with its next due time,
    ended) is a line, written and fsync'd in order by one writer off the event loop. A new `Redelivery` reads
    it back (a damaged line is logged and skipped), drops what expired, what belongs to a subscriber no longer
    in `subscribers` and what exceeds the cap, and `resume` carries on with the rest at their due times."""

    def __init__(self, sender: WebhookSender, told: Told, *, still_open: Callable[[Alert], Awaitable[bool]],
                 policy: RetryPolicy | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None, journal: Lines | None = None,
                 subscribers: Sequence[Subscriber] = (), clock: Callable[[], float] = time.time) -> None:
        self.sender = sender
        self.told = told
        self.still_open = still_open
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.journal = journal
        self.subscribers = {sub.id: sub for sub in subscribers}
        self.clock = clock
        self.dropped: Counter[str] = Counter()
        self.delivered = 0
        # What waits, by (subscriber, series, indicator); read from other threads by `held`, changed on the loop.
        self._entries: dict[tuple[str, str, str], Waiting] = {}
        self._tasks: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self._unwritten: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None
        self._lines = 0  # lines in the journal, to know when rewriting it pays
        if journal is not None:
            self._load(journal)

    def _load(self, journal: Lines) -> None:
        try:
            lines = journal.read_numbered()
        except (OSError, StoreError) as exc:
            log.error("%s cannot be read (%s): the deliveries that waited before the restart are sent again only "
                      "as their alerts are derived again", journal.where, exc)
            return
        kept: dict[tuple[str, str, str], Waiting] = {}
        damaged = 0
        for n, item in lines:
            try:
                if "end" in item:
                    kept.pop(_ended_key(item), None)
                    continue
                entry = Waiting.from_line(item)
            except ValueError as exc:
                damaged += 1
                log.warning("%s:%d: not a waiting webhook delivery (%s); skipped, the other lines are replayed",
                            journal.where, n, exc)
                continue
            kept.pop(entry.key, None)  # the newest line of a key is its state
            kept[entry.key] = entry
        now = self.clock()
        per_subscriber: Counter[str] = Counter()
        for key, entry in sorted(kept.items(), key=lambda kv: kv[1].since):
            sub = self.subscribers.get(entry.subscriber)
            if sub is None:
                self._drop("unsubscribed", entry.subscriber, entry.alert)
            elif now - entry.since >= self.policy.max_age_s:
                self._drop("expired", entry.subscriber, entry.alert)
            elif per_subscriber[entry.subscriber] >= self.policy.queue:
                self._drop("queue_full", entry.subscriber, entry.alert)
            else:
                per_subscriber[entry.subscriber] += 1
                self._entries[key] = entry
        if len(lines) != len(self._entries) or damaged:
            journal.rewrite(e.to_line() for e in self._entries.values())
        self._lines = len(self._entries)
        if lines:
            log.info("%s: %d webhook deliveries wait from before the restart", journal.where, len(self._entries))

    def resume(self) -> None:
        """Start the rounds of the deliveries read from the journal (call on the event loop, once)."""
        for key in list(self._entries):
            if key not in self._tasks:
                self._tasks[key] = asyncio.get_running_loop().create_task(self._retry(key))

    def waiting(self) -> int:
        return len(self._entries)

    def held(self, subscriber: str, alert: Alert) -> bool:
        """Whether a delivery of `alert`'s band to `subscriber` waits here (safe from any thread): one to leave to
        its next round rather than send at once, so a restart keeps the back-off."""
        entry = self._entries.get((subscriber, alert.series, alert.indicator))
        return entry is not None and entry.alert.band == alert.band

    def add(self, sub: Subscriber, alert: Alert, delivery: Delivery) -> None:
        """Queue `alert`, whose `delivery` failed, to be sent again (call on the event loop); one the subscriber
        refused is dropped."""
        if delivery.ok:
            return
        if not delivery.worth_retrying:
            self._drop("refused", sub.id, alert)
            return
        key = (sub.id, alert.series, alert.indicator)
        older = self._tasks.pop(key, None)
        if key in self._entries:
            if older is not None:
                older.cancel()
            self._drop("superseded", sub.id, alert)
        elif sum(1 for k in self._entries if k[0] == sub.id) >= self.policy.queue:
            self._drop("queue_full", sub.id, alert)
            return
        self.subscribers[sub.id] = sub
        now = self.clock()
        self._entries[key] = entry = Waiting(subscriber=sub.id, alert=alert, rounds=1,
                                             due=now + self.policy.delay(1, self.rng), since=now)
        self._keep(entry.to_line())
        self._tasks[key] = asyncio.get_running_loop().create_task(self._retry(key))

    def _drop(self, reason: str, subscriber: str, alert: Alert) -> None:
        self.dropped[reason] += 1
        log.warning("webhook %s: alert %s (%s %s %s) is not sent again: %s", subscriber, alert.id, alert.series,
                    alert.indicator, alert.band,
                    _DROPS[reason].format(queued=count(self.policy.queue, "alert"),
                                          wait=agree(self.policy.queue, "waits", "wait"), max_age_s=self.policy.max_age_s))

    async def _retry(self, key: tuple[str, str, str]) -> None:
        entry = self._entries[key]
        sub = self.subscribers[entry.subscriber]
        end: str | None = None
        try:
            while True:
                wait = min(entry.due, entry.since + self.policy.max_age_s) - self.clock()
                if wait > 0:
                    await self.sleep(wait)
                if self.clock() - entry.since >= self.policy.max_age_s:
                    end = "expired"
                    break
                if not await self.still_open(entry.alert):
                    end = "closed"
                    break
                claimed, told_before = self.told.claim(sub.id, entry.alert)
                if not claimed:
                    end = "told"
                    break
                delivery = await self.sender.send(sub, entry.alert)
                await asyncio.to_thread(self.told.settle, delivery, entry.alert, told_before)
                if delivery.ok:
                    self.delivered += 1
                    end = "delivered"
                    break
                if not delivery.worth_retrying:
                    end = "refused"
                    break
                rounds = entry.rounds + 1
                entry = replace(entry, rounds=rounds, due=self.clock() + self.policy.delay(rounds, self.rng))
                self._entries[key] = entry
                self._keep(entry.to_line())
        finally:
            # Cancelled (the hub stops, or a newer alert took the place): the journal keeps what it said.
            if end is not None and self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
                del self._entries[key]
                self._keep(_ended_line(key, end))
        if end is not None and end != "delivered":
            self._drop(end, sub.id, entry.alert)

    def _keep(self, line: dict[str, Any]) -> None:
        """Write `line` to the journal after those before it, off the event loop (call on the loop)."""
        if self.journal is None:
            return
        self._unwritten.append(line)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(self.journal))

    async def _write(self, journal: Lines) -> None:
        while self._unwritten:
            lines, self._unwritten = self._unwritten, []
            try:
                await asyncio.to_thread(journal.append, *lines)
                self._lines += len(lines)
                if self._lines > 2 * len(self._entries) + 64 and not self._unwritten:
                    # What waits now is what the lines written so far say: keep only that.
                    now = [e.to_line() for e in self._entries.values()]
                    await asyncio.to_thread(journal.rewrite, now)
                    self._lines = len(now)
            except (OSError, StoreError) as exc:
                log.error("%s: keeping %d changes of the waiting webhook deliveries failed (%s); they are sent "
                          "again while the hub runs, and after a restart only as their alerts are derived again",
                          journal.where, len(lines), exc)

    async def close(self) -> None:
        """Stop the rounds; what waits stays in the journal for the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._writer is not None:
            await asyncio.shield(self._writer)
        self._entries.clear()
