"""Failed webhook deliveries wait in data_dir/alerts/redelivery.jsonl: a restarted hub (after a clean stop or a
SIGKILL) carries on with their rounds and due times and delivers each once; a damaged line is logged and
skipped; the per-subscriber cap holds on replay; 4xx, 408, 5xx and timeouts are told apart; no secret is kept."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hub.app import start_hub
from hub.auth import hash_token
from hub.config import ConfigError, load
from hub.journal import Journal
from hub.markets.warning import Alert
from hub.markets.webhooks import Redelivery, RetryPolicy, Subscriber, Told, Waiting, WebhookSender
from hub.mbg import Plan
from tests.ports import free_coap, free_tcp
from tests.wait import PATIENCE, wait_for

from .test_api import DAYS, MARKETS, OPERATOR, Device, Env, hub_config, synth_history
from .test_webhooks import _first_try

WAIT_S = 60  # an upper bound; every wait ends as soon as its condition holds
TOKEN = "s3cret-bearer-token"
BOT_TOKEN = "123456:AAH-bot-token"
ALERT = Alert(id="a1", series="pasar-senen/cabai-merah", market="pasar-senen", commodity="cabai-merah",
              region="DKI Jakarta", indicator="ALPS", previous="normal", band="alert", value=1.4, day=19_900,
              price_idr=61_000, message="cabai-merah at pasar-senen: ALPS normal -> alert")


def _alert(series: str, band: str = "alert") -> Alert:
    return replace(ALERT, id=f"{series}-{band}", series=series, band=band)


def lines_of(path: Path) -> list[dict[str, Any]]:
    """The whole lines of a journal another process may be writing (never truncating it, as Journal.read would
    a line being written)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]


def waiting_in(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """What a journal says waits, by (subscriber, series, indicator): the newest line of each key."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in lines_of(path):
        if "end" in item:
            out.pop((item["subscriber"], item["series"], item["indicator"]), None)
        else:
            out[(item["subscriber"], item["alert"]["series"], item["alert"]["indicator"])] = item
    return out


@dataclass
class Receiver:
    """A webhook receiver on loopback that is down (its port bound, nothing listening: connections are refused)
    until `up`, then answers each path as `answers` says (200 by default) and records what arrived, when."""

    sock: socket.socket
    answers: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer, in turn
    got: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.got.append((time.time(), request.path, body))
        statuses = self.answers.get(request.path)
        status = statuses.pop(0) if statuses else 200
        return web.json_response({"ok": status < 300}, status=status)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()


@pytest.fixture
async def down() -> AsyncIterator[Receiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    receiver = Receiver(sock)
    try:
        yield receiver
    finally:
        if receiver.runner is not None:
            await receiver.runner.cleanup()
        sock.close()


def _toml(config_dir: Path, data_dir: Path, url: str, http: int, coap: int) -> Path:
    path = config_dir / "hub.toml"
    path.write_text(f'''name = "markets-api"
data_dir = "{data_dir}"
http_port = {http}
coap_port = {coap}
mdns = false
auto_approve = true
checkpoint_interval = 3600
operator_tokens = {json.dumps([hash_token(OPERATOR)])}
webhook_attempts = 1

[[webhooks]]
id = "ops"
kind = "json"
url = "{url}/hook"
token = "{TOKEN}"
min_band = "stress"
regions = ["Jawa Barat"]

[webhook_retry]
backoff_s = 0.2
max_backoff_s = 0.8
queue = 256

[markets.validation]
max_age_s = {(DAYS + 2) * 86400}

[bridges.mqtt]
enabled = false
''')
    return path


async def _hub_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        async def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the hub exited with {proc.returncode}")
            try:
                async with session.get(f"{url}/api/status") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        deadline = time.monotonic() + WAIT_S
        while not await answers():
            assert time.monotonic() < deadline, "the hub did not come up"
            await asyncio.sleep(0.05)


async def test_a_queued_alert_survives_a_stop_and_a_sigkill_and_arrives_once(tmp_path: Path, down: Receiver) -> None:
    """The receiver is down while the hub raises its alerts; the hub stops, starts again as `jejak hub run`
    (still down: it carries on with the rounds the journal kept) and is killed; the receiver comes up and the
    hub starts again: each alert that waited arrives exactly once, the one that failed, and nothing waits."""
    # Jawa Barat's early warnings: the held run of Pasar Johar's chilli (Jawa Tengah) is derived only once the
    # whole history is in, maybe after the first deliveries wait (the restart derives it at once).
    config = replace(hub_config(tmp_path, webhooks=({"id": "ops", "kind": "json", "url": f"{down.url}/hook",
                                                      "token": TOKEN, "min_band": "stress",
                                                      "regions": ["Jawa Barat"]},)),
                     webhook_retry=RetryPolicy(backoff_s=0.2, max_backoff_s=0.8))
    journal = tmp_path / "hub" / "alerts" / "redelivery.jsonl"
    plan = Plan(kitchens=(), schools=())
    session = aiohttp.ClientSession()
    try:
        running = await start_hub(config, plan=plan)
        try:
            env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
            synth_history(env, seed=11, shocks=24.0)
            await env.push()
            again = running.views.alerts.redelivery
            assert again is not None
            await wait_for(lambda: again.waiting() and not running.views.alerts._sends
                           and len(waiting_in(journal)) == again.waiting()
                           and all(w["rounds"] >= 2 for w in waiting_in(journal).values()), WAIT_S,
                           what="every failed alert waiting, in the journal, after a failed round")
        finally:
            await running.close()
        queued = waiting_in(journal)
        assert queued and all(k[0] == "ops" for k in queued)
        assert TOKEN.encode() not in journal.read_bytes() and b"Bearer" not in journal.read_bytes()

        # `jejak hub run` on the same data_dir, the receiver still down: the rounds go on from the journal.
        http, coap = free_tcp(), free_coap()
        hub_toml = _toml(tmp_path, tmp_path / "hub", down.url, http, coap)
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(hub_toml)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await _hub_up(f"http://127.0.0.1:{http}", proc)
            await wait_for(lambda: waiting_in(journal).keys() == queued.keys() and all(
                waiting_in(journal)[k]["rounds"] > queued[k]["rounds"] for k in queued), WAIT_S,
                what="a later round of every waiting alert failed and was kept")
            kept = waiting_in(journal)
            assert {k: (w["alert"], w["since"]) for k, w in kept.items()} == {
                k: (w["alert"], w["since"]) for k, w in queued.items()}, "the same deliveries, not new ones"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        before_restart = waiting_in(journal)
        assert before_restart.keys() == queued.keys()

        await down.up()
        running = await start_hub(config, plan=plan)
        try:
            views = running.views
            again = views.alerts.redelivery
            sender = views.alerts.sender
            assert again is not None and sender is not None
            await wait_for(lambda: views.derive_seconds > 0 and not views.alerts._sends and not again.waiting(),
                           WAIT_S, what="the alerts derived and the waiting ones delivered")
            arrived = Counter((b["alert"]["series"], b["alert"]["indicator"]) for _, _, b in down.got)
            assert arrived == Counter({(k[1], k[2]): 1 for k in queued}), "each waiting alert arrives once"
            assert sorted(b["alert"]["id"] for _, _, b in down.got) == sorted(w["alert"]["id"] for w in queued.values())
            # The restart's derivation raised every series again; it left the waiting ones to their rounds.
            assert all(d.ok for d in sender.log) and len(sender.log) == len(queued)
            assert again.delivered == len(queued) and not again.dropped
            await wait_for(lambda: waiting_in(journal) == {}, WAIT_S, what="the journal told of the deliveries")
            told = Told(Journal(tmp_path / "hub" / "alerts" / "told.jsonl"))
            assert all(told.band("ops", w["alert"]["series"], w["alert"]["indicator"]) == w["alert"]["band"]
                       for w in queued.values())
        finally:
            await running.close()
        assert waiting_in(journal) == {}
    finally:
        await session.close()


async def _open(alert: Alert) -> bool:
    return True


async def test_damaged_lines_are_logged_and_skipped_and_the_rest_keeps_its_rounds_and_due_time(
        tmp_path: Path, down: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alerts" / "redelivery.jsonl"
    path.parent.mkdir()
    now = time.time()
    policy = RetryPolicy(backoff_s=0.2, max_backoff_s=5.0, max_age_s=3600)
    first = Waiting(subscriber="ops", alert=_alert("pasar-senen/cabai-merah"), rounds=3, due=now + 1.5, since=now - 60)
    second = Waiting(subscriber="ops2", alert=_alert("pasar-johar/cabai-merah", "crisis"), rounds=1, due=now - 5,
                     since=now - 30)
    ended = Waiting(subscriber="ops", alert=_alert("pasar-kosambi/cabai-merah"), rounds=2, due=now, since=now - 20)
    good = [json.dumps(w.to_line()).encode() + b"\n" for w in (first, second, ended)]
    path.write_bytes(
        good[0]
        + b'{"subscriber": "ops", "alert": {"id": "x", "series": "pasar-senen/beras-m\n'  # cut short mid-file
        + b"\x00\x00\x00\x00\xff\xfe\n"  # what a power cut can leave
        + json.dumps(replace(second, alert=replace(second.alert, band="purple")).to_line()).encode() + b"\n"
        + json.dumps({**second.to_line(), "rounds": "three"}).encode() + b"\n"
        + json.dumps(replace(first, subscriber="gone").to_line()).encode() + b"\n"
        + json.dumps(replace(ended, alert=_alert("pasar-baru/cabai-merah"), since=now - 7200).to_line()).encode()
        + b"\n" + good[1] + good[2]
        + json.dumps({"subscriber": "ops", "series": ended.alert.series, "indicator": "ALPS", "end": "closed"}).encode()
        + b"\n" + b'{"subscriber": "ops", "alert": {"id": "torn')  # a crash while writing the last line
    sub = Subscriber(id="ops", kind="json", url=f"{down.url}/hook", token=TOKEN)
    other = Subscriber(id="ops2", kind="json", url=f"{down.url}/other")
    down.answers["/hook"] = [503]  # the first round of `first` fails once more
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)
        await asyncio.sleep(s)

    async with WebhookSender(max_attempts=1) as sender:
        told = Told(Journal(tmp_path / "alerts" / "told.jsonl"))
        with caplog.at_level(logging.INFO):
            again = Redelivery(sender, told, still_open=_open, policy=policy, journal=Journal(path),
                               subscribers=[sub, other], sleep=sleep, rng=random.Random(3))
        messages = [r.getMessage() for r in caplog.records]
        assert not any(m.startswith(f"{path}:1:") for m in messages)
        for n, what in ((2, "not a JSON object"), (3, "not a JSON object"), (4, "expected an ALPS band"),
                        (5, "rounds: expected a whole number")):
            assert any(m.startswith(f"{path}:{n}: ") and what in m for m in messages), (n, messages)
        assert any("line cut short" in m for m in messages)
        assert any("no longer configured" in m for m in messages) and any("max_age_s" in m for m in messages)
        assert again.waiting() == 2 and again.dropped == Counter({"unsubscribed": 1, "expired": 1})
        assert again.held("ops", first.alert) and not again.held("ops", replace(first.alert, band="crisis"))
        assert not again.held("ops", second.alert) and again.held("ops2", second.alert)
        # The journal now says only what waits.
        assert [Waiting.from_line(item) for item in Journal(path).read()] == [first, second]

        await down.up()
        again.resume()
        await wait_for(lambda: again.delivered == 2 and not again.waiting(), WAIT_S, what="both delivered")
        at = {b["alert"]["id"]: t for t, _, b in down.got}
        assert [b["alert"]["id"] for _, _, b in down.got] == [second.alert.id, first.alert.id, first.alert.id]
        assert min(t for t, _, b in down.got if b["alert"]["id"] == first.alert.id) >= first.due, "its due time kept"
        assert at[second.alert.id] < first.due  # overdue: sent at once
        # The round that failed was round 4: its wait is the fourth's (0.2 s doubled three times, with jitter).
        assert len(sleeps) == 2 and 0.8 <= sleeps[1] <= 2.4 + 0.01, sleeps
        await again.close()
    assert Redelivery(sender, told, still_open=_open, journal=Journal(path), subscribers=[sub, other]).waiting() == 0
    assert TOKEN.encode() not in path.read_bytes()


async def test_the_cap_holds_on_replay_and_the_bot_token_is_not_kept(tmp_path: Path, down: Receiver) -> None:
    path = tmp_path / "redelivery.jsonl"
    tg = Subscriber(id="tg", kind="telegram", url=down.url, token=BOT_TOKEN, chat_id="-100200")
    series = ["pasar-senen/cabai-merah", "pasar-johar/cabai-merah", "pasar-kosambi/cabai-merah"]
    policy = RetryPolicy(backoff_s=30, max_backoff_s=60, queue=2)  # no round comes due during the test
    async with WebhookSender(max_attempts=1) as sender:
        told = Told(None)
        again = Redelivery(sender, told, still_open=_open, policy=policy, journal=Journal(path), subscribers=[tg])
        for s in series:
            await _first_try(sender, told, again, tg, _alert(s))
        assert again.waiting() == 2 and again.dropped == Counter({"queue_full": 1})
        # /bot<token>/sendMessage: the token, and what follows it, masked.
        assert [d.url for d in sender.log] == [f"{down.url.rstrip('/')}/***/***"] * 3
        await again.close()
    assert sorted(waiting_in(path)) == [("tg", s, "ALPS") for s in sorted(series[:2])]
    assert BOT_TOKEN.encode() not in path.read_bytes() and b"-100200" not in path.read_bytes()

    # The same cap: both wait again. A smaller one: the one that failed first is kept, the other dropped.
    assert Redelivery(sender, Told(None), still_open=_open, policy=policy, journal=Journal(path),
                      subscribers=[tg]).waiting() == 2
    smaller = Redelivery(sender, Told(None), still_open=_open, policy=replace(policy, queue=1),
                         journal=Journal(path), subscribers=[tg])
    assert smaller.waiting() == 1 and smaller.dropped == Counter({"queue_full": 1})
    assert list(waiting_in(path)) == [("tg", series[0], "ALPS")] and len(lines_of(path)) == 1


@pytest.fixture
async def answering() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A receiver that answers each path's status (/400, /408, /429, /500), /nan and /negative with 503 and a
    junk Retry-After, and /slow not before the test ends."""
    done = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        tail = request.match_info["tail"]
        if tail == "slow":
            await done.wait()
            return web.json_response({})
        if tail in ("nan", "negative"):
            return web.Response(status=503, headers={"Retry-After": {"nan": "nan", "negative": "-30"}[tail]})
        return web.Response(status=int(tail))

    app = web.Application()
    app.router.add_post("/{tail}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", free_tcp())
    await site.start()
    try:
        yield site.name, done
    finally:
        done.set()
        await runner.cleanup()


async def test_4xx_is_refused_and_408_5xx_and_timeouts_wait(tmp_path: Path, answering: tuple[str, asyncio.Event]) -> None:
    base, _ = answering
    path = tmp_path / "redelivery.jsonl"
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    subs = {name: Subscriber(id=name, kind="json", url=f"{base}/{name}")
            for name in ("400", "404", "408", "429", "500", "nan", "negative", "slow")}
    policy = RetryPolicy(backoff_s=30, max_backoff_s=60)
    # Only /slow is to time out (it never answers): the others' answers must come within the timeout on a busy
    # machine too, where half a second was short.
    async with WebhookSender(max_attempts=2, timeout_s=PATIENCE, backoff_s=0.5, max_backoff_s=4, sleep=sleep,
                             rng=random.Random(5)) as sender:
        told = Told(None)
        again = Redelivery(sender, told, still_open=_open, policy=policy, journal=Journal(path),
                           subscribers=list(subs.values()))
        for sub in subs.values():
            await _first_try(sender, told, again, sub, ALERT)
        statuses = {d.subscriber: d.statuses for d in sender.log}
        assert statuses["400"] == (400,) and statuses["404"] == (404,)  # not sent again: it cannot get better
        assert statuses["408"] == (408, 408) and statuses["429"] == (429, 429) and statuses["500"] == (500, 500)
        assert statuses["nan"] == (503, 503) and statuses["negative"] == (503, 503)
        assert len(statuses["slow"]) == 2 and all(isinstance(s, str) and "Timeout" in s for s in statuses["slow"])
        # One wait per subscriber tried twice; a junk Retry-After (NaN, negative) gives the sender's own back-off.
        assert len(sleeps) == 6 and all(0.25 <= s <= 0.75 for s in sleeps), sleeps
        assert again.dropped == Counter({"refused": 2}) and again.waiting() == 6
        await again.close()
    assert {k[0] for k in waiting_in(path)} == {"408", "429", "500", "nan", "negative", "slow"}
    assert all(math.isfinite(w["due"]) for w in waiting_in(path).values())


def test_webhook_retry_settings_load_and_a_bad_one_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[webhook_retry]\nbackoff_s = 5\nmax_backoff_s = 600\nqueue = 16\nmax_age_s = 86400\n")
    assert load(path).webhook_retry == RetryPolicy(backoff_s=5, max_backoff_s=600, queue=16, max_age_s=86400)
    assert load(None).webhook_retry.max_age_s == 7 * 86400
    path.write_text("[webhook_retry]\nmax_age_s = 0\n")
    with pytest.raises(ConfigError, match=r"webhook_retry.max_age_s: expected > 0 seconds, got 0"):
        load(path)
    path.write_text("[webhook_retry]\nmax_age = 60\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'max_age' in \[webhook_retry\]") as caught:
        load(path)
    assert "did you mean 'max_age_s'" in (caught.value.hint or "")


async def test_the_journal_stays_small_over_many_rounds_and_keeps_the_count(tmp_path: Path, down: Receiver) -> None:
    path = tmp_path / "redelivery.jsonl"
    sub = Subscriber(id="ops", kind="json", url=f"{down.url}/hook")
    policy = RetryPolicy(backoff_s=0.001, max_backoff_s=0.002)
    async with WebhookSender(max_attempts=1) as sender:
        told = Told(None)
        again = Redelivery(sender, told, still_open=_open, policy=policy, journal=Journal(path), subscribers=[sub])
        await _first_try(sender, told, again, sub, ALERT)
        await wait_for(lambda: len(sender.log) >= 200, WAIT_S, what="200 failed rounds")
        await again.close()
        assert len(lines_of(path)) <= 2 * 1 + 64 + 1, "rewritten as it grows"
        [kept] = waiting_in(path).values()
        # A round stopped by the close after its request went out is not counted: the journal may say one less.
        assert len(sender.log) - 1 <= kept["rounds"] <= len(sender.log) >= 200
        assert kept["since"] == pytest.approx(sender.log[0].finished_at, abs=1)
        assert Redelivery(sender, told, still_open=_open, policy=policy, journal=Journal(path),
                          subscribers=[sub]).waiting() == 1
