"""`jejak hub regions list|show` against a national hub's answers, served by a real HTTP server."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ledger import device_id_for
from tools import cli

KEY = bytes(range(32))
FOLLOWED_ID = "ab" * 16
SINCE = 1_764_900_000
REFUSED = {"code": "REGION_UNPROTECTED", "hint": "pin the new key in a new upstream entry", "since": SINCE,
           "last": SINCE + 60, "rounds": 3,
           "message": "regional hub coap://10.0.0.2:5683 answered outside the OSCORE context its pinned key derives "
                      "(a replaced key, a hub that does not name this one in security.peer_hubs, or another host)"}
PULLED = {"url": "coap://10.0.0.2:5683", "mode": "records", "state": "refused", "problem": REFUSED}
BARE = {"url": "coap://10.0.0.3:5683", "mode": "records", "state": "pulled", "problem": None}
FOLLOWED = {"url": "coap://10.0.0.4:5683", "hub": FOLLOWED_ID, "mode": "checkpoints", "state": "followed",
            "problem": None, "checkpoint": {"tree_size": 1200}, "accepted": 3, "split_views": [], "resumes": []}


class FakeNational:
    """Answers GET /api/regions and /api/regions/<hub> as the national hub does (hub/tiers.py TierLinks)."""

    def __init__(self, regions: list[dict[str, Any]]) -> None:
        self.regions = regions
        self.asked: list[str] = []

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        self.asked.append(path)
        if path == "/api/regions":
            return 200, {"regions": self.regions}
        hub = path.removeprefix("/api/regions/")
        for region in self.regions:
            if region.get("mode") == "checkpoints" and region.get("hub") == hub:
                return 200, {**region, "checkpoints": []}
        return 404, {"error": {"code": "UNKNOWN_REGION", "message": f"no region with hub id {hub} is followed by "
                               "its checkpoints", "hint": "GET /api/regions lists them; the hub's config names them "
                               "in `upstream`"}}


@pytest.fixture
def national() -> Iterator[tuple[FakeNational, str]]:
    fake = FakeNational([FOLLOWED, PULLED, BARE])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = fake.answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_list_shows_why_a_region_is_refused_and_since_when_in_local_time(national, capsys) -> None:
    _, url = national
    assert cli.main(["hub", "regions", "list", "--hub-url", url]) == 0
    followed, refused, bare = capsys.readouterr().out.splitlines()
    assert followed.startswith(f"{FOLLOWED_ID}  checkpoints followed") and followed.endswith("coap://10.0.0.4:5683")
    assert "REGION_UNPROTECTED: regional hub coap://10.0.0.2:5683 answered outside" in refused
    local = datetime.datetime.fromtimestamp(SINCE).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert f"(since {local} " in refused and str(SINCE) not in refused
    assert "…" in refused and len(refused) < 260, "the message is shortened to fit the line"
    assert bare.startswith("-  ") and "pulled" in bare and bare.endswith("coap://10.0.0.3:5683")


def test_list_shows_the_hub_id_of_a_pulled_regions_pinned_key_when_the_answer_carries_it(national, capsys) -> None:
    fake, url = national
    fake.regions = [{**PULLED, "key": KEY.hex()}, {**BARE, "hub": "cd" * 16}]
    assert cli.main(["hub", "regions", "list", "--hub-url", url]) == 0
    keyed, named = capsys.readouterr().out.splitlines()
    assert keyed.startswith(device_id_for(KEY).hex() + "  records")
    assert named.startswith("cd" * 16 + "  records")


def test_show_of_a_pulled_region_says_so_with_its_list_line(national, capsys) -> None:
    fake, url = national
    hub = device_id_for(KEY).hex()
    fake.regions = [FOLLOWED, {**PULLED, "key": KEY.hex()}]
    assert cli.main(["hub", "regions", "show", hub, "--hub-url", url]) == 0
    out, err = capsys.readouterr()
    assert f"regional hub {hub} is pulled record by record" in out and "not followed by its checkpoints" in out
    assert out.splitlines()[-1].startswith(f"{hub}  records     refused") and "REGION_UNPROTECTED" in out
    assert "UNKNOWN_REGION" not in out + err and "GET /api/regions" not in out + err
    assert fake.asked == [f"/api/regions/{hub}", "/api/regions"]


def test_show_of_an_id_no_region_has_names_the_regions_it_may_be_and_where_to_look(national, capsys) -> None:
    _, url = national
    assert cli.main(["hub", "regions", "show", "ee" * 16, "--hub-url", url]) == 85
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]
    assert error["code"] == "HUB_REFUSED" and f"no region with hub id {'ee' * 16}" in error["message"]
    assert "coap://10.0.0.2:5683, coap://10.0.0.3:5683" in error["message"]
    assert "jejak hub regions list" in error["hint"] and "GET /api/regions" not in error["hint"]


def test_show_of_a_followed_region_prints_its_answer(national, capsys) -> None:
    _, url = national
    assert cli.main(["hub", "regions", "show", FOLLOWED_ID, "--hub-url", url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["hub"] == FOLLOWED_ID and shown["checkpoints"] == []
