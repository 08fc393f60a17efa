"""Alert delivery to subscribers over webhooks (generic JSON, Telegram sendMessage, WhatsApp Cloud API),
with retries, back-off, redelivery of what failed while its alert is open, and a record of what was sent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..journal import Journal
from .errors import BadObservation
from .warning import ALPS_BANDS, Alert, _severity

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
    min_band: str = "stress"  # ALPS band from which to notify (IFPA "moderately high" counts as stress)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadObservation(f"subscriber kind: expected one of {list(KINDS)}, got {self.kind!r}")
        if not self.url.startswith(("http://", "https://")):
            raise BadObservation(f"subscriber url: expected http:// or https://, got {self.url!r}")
        if self.kind == "telegram" and not (self.token and self.chat_id):
            raise BadObservation("telegram subscriber: expected token and chat_id")
        if self.kind == "whatsapp" and not (self.token and self.phone_number_id and self.to):
            raise BadObservation("whatsapp subscriber: expected token, phone_number_id and to")
        if self.min_band not in ALPS_BANDS:
            raise BadObservation(f"min_band: expected one of {list(ALPS_BANDS)}, got {self.min_band!r}")

    def wants(self, alert: Alert) -> bool:
        if self.commodities and alert.commodity not in self.commodities:
            return False
        if self.regions and alert.region not in self.regions:
            return False
        return _severity(alert.indicator, alert.band) >= ALPS_BANDS.index(self.min_band)


def alert_text(alert: Alert) -> str:
    return f"Jejak early warning [{alert.band.upper()}]\n{alert.message}"


def build_request(sub: Subscriber, alert: Alert) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of the request that tells `sub` about `alert`."""
    headers = {"Content-Type": "application/json"}
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
    return sub.url, headers, {"type": "jejak.market.alert", "alert": alert.to_dict(), "text": alert_text(alert)}


def backoff(failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The wait after `failures` failures: `base_s` doubling each time up to `cap_s`, drawn from half to one and a
    half times that (jitter, so senders that failed together do not all come back together)."""
    return min(cap_s, base_s * 2 ** (failures - 1)) * (0.5 + rng.random())


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """What was sent to whom, how often, and how it ended. Secrets are left out of `url`."""

    alert_id: str
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
        return {"alert": self.alert_id, "subscriber": self.subscriber, "kind": self.kind, "url": self.url,
                "body_sha256": self.body_sha256, "attempts": self.attempts, "statuses": list(self.statuses),
                "ok": self.ok, "started_at": self.started_at, "finished_at": self.finished_at}

    @property
    def worth_retrying(self) -> bool:
        """A failure that a later try may not meet: no answer, a timeout, 429 or 5xx (a 4xx will not get
        better by sending the same request again)."""
        last = self.statuses[-1] if self.statuses else "none"
        return not self.ok and (isinstance(last, str) or last == 429 or last >= 500)


class WebhookSender:
    """Sends alerts with up to `max_attempts` tries. Connection errors, timeouts, 429 and 5xx are retried
    after an exponential back-off with jitter (or the server's Retry-After); other 4xx are not, because
    sending the same request again cannot fix it."""

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
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass
        return backoff(attempt, self.backoff_s, self.max_backoff_s, self.rng)

    async def send(self, sub: Subscriber, alert: Alert) -> Delivery:
        url, headers, body = build_request(sub, alert)
        data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
        shown = url.replace(sub.token, "***") if sub.token else url
        session = await self._get_session()
        started = self.clock()
        statuses: list[int | str] = []
        ok = False
        for attempt in range(1, self.max_attempts + 1):
            retry_after = None
            try:
                async with session.post(url, data=data, headers=headers, timeout=self.timeout) as resp:
                    await resp.read()
                    statuses.append(resp.status)
                    if 200 <= resp.status < 300:
                        ok = True
                        break
                    if resp.status != 429 and resp.status < 500:
                        break
                    retry_after = resp.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as e:
                statuses.append(type(e).__name__)
            if attempt < self.max_attempts:
                await self.sleep(self._delay(attempt, retry_after))
        delivery = Delivery(alert_id=alert.id, subscriber=sub.id, kind=sub.kind, url=shown,
                            body_sha256=hashlib.sha256(data).hexdigest(), body=body, attempts=len(statuses),
                            statuses=tuple(statuses), ok=ok, started_at=started, finished_at=self.clock())
        self.log.append(delivery)
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

    def __init__(self, journal: Journal | None = None) -> None:
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

    def band(self, subscriber: str, series: str, indicator: str) -> str | None:
        with self._lock:
            return self._bands.get((subscriber, series, indicator))

    def outbox(self, subscribers: Sequence[Subscriber], raised: Sequence[Alert],
               latest: Mapping[tuple[str, str], Alert]) -> list[tuple[Subscriber, Alert, str | None]]:
        """The alerts to send now, each with the band its subscriber was told before. They count as told at
        once (a derivation while they are on their way does not send them again); `settle` keeps them, or
        takes them back if the delivery failed."""
        out: list[tuple[Subscriber, Alert, str | None]] = []
        with self._lock:
            for sub in subscribers:
                for a in raised:
                    told = self._bands.get((sub.id, a.series, a.indicator))
                    if sub.wants(a) and told != a.band:
                        eased = told is not None and _severity(a.indicator, told) > _severity(a.indicator, a.band)
                        # Judged afresh after a restart, a series raised from normal may have eased since told.
                        out.append((sub, a.since(told) if eased and told is not None else a, told))
                        self._bands[(sub.id, a.series, a.indicator)] = a.band
            by_id = {sub.id: sub for sub in subscribers}
            for (sid, series, indicator), told in list(self._bands.items()):
                now = latest.get((series, indicator))
                if sid not in by_id or now is None or _severity(indicator, now.band) >= _severity(indicator, told):
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
    jitter (`backoff`); at most `queue` alerts wait per subscriber."""

    backoff_s: float = 60.0
    max_backoff_s: float = 3600.0
    queue: int = 256

    def __post_init__(self) -> None:
        if not 0 < self.backoff_s <= self.max_backoff_s:
            raise ValueError(f"webhook_retry: expected 0 < backoff_s <= max_backoff_s, got {self.backoff_s} "
                             f"and {self.max_backoff_s}")
        if self.queue < 1:
            raise ValueError(f"webhook_retry.queue: expected at least 1, got {self.queue}")

    def delay(self, rounds: int, rng: random.Random) -> float:
        """The wait before round `rounds` + 1, after `rounds` failed rounds."""
        return backoff(rounds, self.backoff_s, self.max_backoff_s, rng)


class Redelivery:
    """Failed deliveries sent again while their alert is still open, with capped exponential back-off and
    jitter (`RetryPolicy`), instead of only when the alert is raised again or the hub restarts.

    Each subscriber has a bounded queue of alerts waiting, one per series' indicator (a newer alert for the
    same series takes the older one's place). A round is skipped for good when the alert is no longer open
    (`still_open`), when its band was told meanwhile (`Told.claim`: nothing is sent twice once it succeeded),
    or when the subscriber refuses it (a 4xx); an alert that finds its subscriber's queue full is dropped.
    Every drop is counted by reason (`dropped`) and logged."""

    def __init__(self, sender: WebhookSender, told: Told, *, still_open: Callable[[Alert], Awaitable[bool]],
                 policy: RetryPolicy | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.sender = sender
        self.told = told
        self.still_open = still_open
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.dropped: Counter[str] = Counter()
        self.delivered = 0
        self._waiting: dict[str, dict[tuple[str, str], asyncio.Task[None]]] = {}

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def add(self, sub: Subscriber, alert: Alert, delivery: Delivery) -> None:
        """Queue `alert`, whose `delivery` failed, to be sent again (call on the event loop); one the subscriber
        refused is dropped."""
        if delivery.ok:
            return
        if not delivery.worth_retrying:
            self._drop("refused", sub, alert)
            return
        queue = self._waiting.setdefault(sub.id, {})
        key = (alert.series, alert.indicator)
        older = queue.pop(key, None)
        if older is not None:
            older.cancel()
            self._drop("superseded", sub, alert)
        elif len(queue) >= self.policy.queue:
            self._drop("queue_full", sub, alert)
            return
        queue[key] = asyncio.get_running_loop().create_task(self._retry(sub, alert))

    def _drop(self, reason: str, sub: Subscriber, alert: Alert) -> None:
        self.dropped[reason] += 1
        log.warning("webhook %s: alert %s (%s %s %s) is not sent again: %s", sub.id, alert.id, alert.series,
                    alert.indicator, alert.band, {
                        "superseded": "a newer alert of the series takes its place",
                        "queue_full": f"{self.policy.queue} alerts already wait for this subscriber",
                        "closed": "the alert is no longer open",
                        "told": "its band was told meanwhile",
                        "refused": "the subscriber refused it"}[reason])

    async def _retry(self, sub: Subscriber, alert: Alert) -> None:
        rounds, end = 1, "closed"
        try:
            while True:
                await self.sleep(self.policy.delay(rounds, self.rng))
                if not await self.still_open(alert):
                    break
                claimed, told_before = self.told.claim(sub.id, alert)
                if not claimed:
                    end = "told"
                    break
                delivery = await self.sender.send(sub, alert)
                await asyncio.to_thread(self.told.settle, delivery, alert, told_before)
                if delivery.ok:
                    self.delivered += 1
                    end = ""
                    break
                if not delivery.worth_retrying:
                    end = "refused"
                    break
                rounds += 1
        finally:
            queue = self._waiting.get(sub.id, {})
            if queue.get((alert.series, alert.indicator)) is asyncio.current_task():
                del queue[(alert.series, alert.indicator)]
        if end:
            self._drop(end, sub, alert)

    async def close(self) -> None:
        tasks = [t for q in self._waiting.values() for t in q.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._waiting.clear()
