"""docs/DEPLOY.md's webhook receiver, run as written (its port, token and database moved to the test's own): a
delivery sent again, by a hub restarted before it kept the receiver's answer, is answered 200 and acted on once."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

from hub.markets.warning import Alert
from hub.markets.webhooks import Subscriber, WebhookSender, alert_text
from tests.ports import free_tcp
from tests.wait import PATIENCE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_MD = ROOT / "docs" / "DEPLOY.md"
TOKEN = "s3cret-bearer-token"
ALERT = Alert(id="a1", series="pasar-senen/cabai-merah", market="pasar-senen", commodity="cabai-merah",
              region="DKI Jakarta", indicator="ALPS", previous="normal", band="alert", value=1.4, day=19_900,
              price_idr=61_000, message="cabai-merah at pasar-senen: ALPS normal -> alert")


def _documented(port: int) -> str:
    """The receiver's code block in DEPLOY.md, listening on `port` and expecting TOKEN."""
    text = DEPLOY_MD.read_text()
    at = text.index("A receiver that pages once per delivery")
    code = text[at:].split("```python\n", 1)[1].split("```", 1)[0]
    assert "X-Jejak-Delivery" in code and "INSERT OR IGNORE" in code, code
    code, moved = re.subn(r'\("127\.0\.0\.1", 8080\)', f'("127.0.0.1", {port})', code)
    code, told = re.subn(r'^TOKEN = ".*"$', f'TOKEN = "{TOKEN}"', code, flags=re.M)
    assert moved == told == 1, code
    return code


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_the_documented_receiver_acts_once_on_a_delivery_sent_again(tmp_path: Path) -> None:
    port = free_tcp()
    eased_alert = replace(ALERT, id="a2", band="stress").since("alert")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _documented(port), cwd=tmp_path,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async def up() -> bool:
            assert proc.returncode is None, await proc.communicate()
            return await _listening(port)

        deadline = asyncio.get_running_loop().time() + 30 * PATIENCE
        while not await up():
            assert asyncio.get_running_loop().time() < deadline, "the receiver did not listen"
            await asyncio.sleep(0.05)
        sub = Subscriber(id="ops", kind="json", url=f"http://127.0.0.1:{port}/jejak/alerts", token=TOKEN)
        async with WebhookSender(max_attempts=1) as sender:  # the hub before its stop
            first = await sender.send(sub, ALERT)
        async with WebhookSender(max_attempts=1) as sender:  # after the restart: the same delivery, then news
            again = await sender.send(sub, ALERT)
            eased = await sender.send(sub, eased_alert)
            stranger = await sender.send(replace(sub, token="guessed"), ALERT)
        assert first.ok and again.ok and eased.ok and first.delivery == again.delivery != eased.delivery
        assert stranger.statuses == (401,)
    finally:
        proc.terminate()
        out, err = await proc.communicate()
    pages = out.decode().splitlines()
    assert pages == [f"page: {alert_text(a)}".replace("\n", " ") for a in (ALERT, eased_alert)], (pages, err.decode())
    with sqlite3.connect(tmp_path / "jejak-alerts.db") as db:
        kept = [row[0] for row in db.execute("SELECT delivery FROM alerts ORDER BY rowid")]
    assert kept == [first.delivery, eased.delivery]
