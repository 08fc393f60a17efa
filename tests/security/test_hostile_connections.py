"""Connections and streams held open against a running `jejak hub run` and `jejak edge run`: over the caps in all
and from one address they are refused (CoAP-TCP with an Abort, HTTP with 503 TOO_MANY_CONNECTIONS, live event
streams with 503 TOO_MANY_STREAMS) and counted on /metrics, an honest client is served once others close (a
stream's place as soon as its client leaves), a CoAP-TCP connection that completes no message (none, or half of
one) is closed after the idle timeout, and a request body trickled slower than the servers wait for is answered
408 BODY_TOO_SLOW and closed while a slow but steady one is read whole. Other loopback addresses (127.0.0.2,
...) stand for other hosts on the LAN."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import ABORT, CSM, PING, PONG, RELEASE
from aiocoap.transports.tcp import _decode_message, _extract_message_size
from prometheus_client.parser import text_string_to_metric_families

from edge.pairing import SECRET_FILE
from hub.auth import hash_token
from tests.ports import free_coap, free_tcp
from tests.wait import PATIENCE, wait_until

from .test_fuzz_routes import OPERATOR, ROOT, _get, _wait

HELD = 60.0  # an idle timeout no test reaches
DEADLINE = 20.0 * PATIENCE  # for a socket's EOF or an answer: generous, never slept


@contextmanager
def hub_running(tmp_path: Path, settings: str) -> Iterator[tuple[str, int]]:
    """A `jejak hub run` with `settings` (TOML lines) added to its config: (HTTP url, CoAP port)."""
    http, coap = free_tcp(), free_coap()
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path / "hub"}"\nhttp_port = {http}\ncoap_port = {coap}\nmdns = false\n'
                      f'operator_tokens = ["{hash_token(OPERATOR)}"]\n{settings}\n'
                      '[bridges]\n[bridges.mqtt]\nenabled = false\n')
    with (tmp_path / "hub.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        _wait(proc, lambda: _get(f"{url}/api/status"))  # answered once CoAP (UDP and TCP) is served too
        yield url, coap
        assert proc.poll() is None, "the hub exited"
    finally:
        proc.terminate()
        proc.wait(30)
    assert "Traceback" not in (tmp_path / "hub.log").read_text()


def refusals(url: str, token: str = "") -> dict[str, float]:
    """The refused connections a server's /metrics counts, by reason."""
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
        text = answer.read().decode()
    return {sample.labels["reason"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name.endswith("_refused_connections_total")}


def connect(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# --- CoAP over TCP ---------------------------------------------------------------------------------------------

class CoapTcp:
    """A raw CoAP-over-TCP client: sends framed messages, reads the server's messages one at a time."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = connect(port, source)
        self.spool = b""
        self.sock.sendall(b"\x00" + bytes([int(CSM)]))  # our CSM: an empty 7.01

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ping(self) -> None:
        self.sock.sendall(b"\x00" + bytes([int(PING)]))

    def next(self) -> aiocoap.Message | None:
        """The server's next message, or None at EOF (or a reset: closed either way)."""
        while True:
            size = _extract_message_size(self.spool)
            if size is not None and sum(size) <= len(self.spool):
                message = _decode_message(self.spool[:sum(size)])
                self.spool = self.spool[sum(size):]
                return message
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.spool += data

    def until_closed(self) -> list[aiocoap.Message]:
        """Every message the server sends until it closes the connection (within DEADLINE, or the test fails)."""
        messages = []
        while (message := self.next()) is not None:
            messages.append(message)
        return messages

    def close(self) -> None:
        self.sock.close()


def _get_over_tcp(port: int) -> aiocoap.Message:
    async def run() -> aiocoap.Message:
        ctx = await aiocoap.Context.create_client_context()
        try:
            request = aiocoap.Message(code=aiocoap.GET, uri=f"coap+tcp://127.0.0.1:{port}/.well-known/core")
            return await asyncio.wait_for(ctx.request(request).response, DEADLINE)
        finally:
            await ctx.shutdown()
    return asyncio.run(run())


def test_coap_tcp_connections_over_the_caps_are_aborted_and_an_honest_client_gets_in_after(tmp_path):
    settings = f"coap_tcp_connections = 3\ncoap_tcp_per_address = 2\ncoap_tcp_idle_s = {HELD}"
    with hub_running(tmp_path, settings) as (url, port):
        held = [CoapTcp(port), CoapTcp(port)]
        for conn in held:
            assert conn.next().code == CSM  # admitted: the server's CSM, and the connection stays
        third = CoapTcp(port)  # a third from the same address
        csm, abort = third.until_closed()
        assert (csm.code, abort.code) == (CSM, ABORT)
        assert b"from one address" in abort.payload
        held.append(CoapTcp(port, "127.0.0.2"))  # another host: within the total
        assert held[-1].next().code == CSM
        over = CoapTcp(port, "127.0.0.3")  # a fourth in all
        assert [m.code for m in over.until_closed()] == [CSM, ABORT]
        held[0].ping()  # the held ones are still served
        assert held[0].next().code == PONG
        held.pop(0).close()
        answer = wait_until(lambda: _get_over_tcp(port), 20, what="an honest CoAP-TCP GET answered",
                            tolerate=(aiocoap.error.Error, TimeoutError))
        assert answer.code == aiocoap.CONTENT and b"</" in answer.payload
        for conn in (*held, third, over):
            conn.close()
        counted = refusals(url)
        assert (counted["coap_tcp_connections_per_address"], counted["coap_tcp_connections"]) == (1, 1)


def test_a_coap_tcp_connection_that_completes_no_message_is_closed_after_the_idle_timeout(tmp_path):
    idle_s = 1.0
    with hub_running(tmp_path, f"coap_tcp_idle_s = {idle_s}") as (_, port):
        silent = CoapTcp(port)
        half = CoapTcp(port)
        busy = CoapTcp(port)
        for conn in (silent, half, busy):
            assert conn.next().code == CSM
        started = time.monotonic()
        # A GET announcing 5 bytes of options and sending 2: a message begun and never finished.
        half.send_raw(b"\x50" + bytes([int(aiocoap.GET)]) + b"\xbb.w")
        closed: dict[str, float] = {}
        while len(closed) < 2:
            assert time.monotonic() - started < DEADLINE, f"still open after {DEADLINE} s: only {sorted(closed)}"
            busy.ping()  # a whole message now and then: never idle
            assert busy.next().code == PONG
            for name, conn in (("silent", silent), ("half", half)):
                if name not in closed:
                    conn.sock.settimeout(0.05)
                    try:
                        if (message := conn.next()) is None:
                            closed[name] = time.monotonic() - started
                        else:
                            assert message.code == RELEASE and b"idle" in message.payload
                    except TimeoutError:
                        pass
        assert min(closed.values()) >= idle_s * 0.9  # closed by the timeout, not at once
        busy.ping()
        assert busy.next().code == PONG  # the connection that sent whole messages is open and served
        for conn in (silent, half, busy):
            conn.close()


# --- HTTP ------------------------------------------------------------------------------------------------------

def http_get(port: int, source: str, path: str) -> tuple[socket.socket, int, dict[str, str], bytes]:
    """Send GET `path` from `source`; (the socket, status, headers, the body's first bytes)."""
    sock = connect(port, source)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: hub\r\n\r\n".encode())
    return (sock, *read_answer(sock))


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """An HTTP answer's status, headers and body (its first bytes if it has no length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "-1"))
    while 0 <= len(body) < length or (length < 0 and not body):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


@contextmanager
def sockets() -> Iterator[list[socket.socket]]:
    """A list of sockets, each closed at the end whatever happened (a server may wait on one at shutdown)."""
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def _refused(answer: tuple[socket.socket, int, dict[str, str], bytes], code: str) -> str:
    sock, status, headers, body = answer
    sock.close()
    assert status == 503, (status, body)
    assert int(headers["retry-after"]) > 0
    error = json.loads(body)["error"]
    assert error["code"] == code
    return str(error["message"])


def test_event_streams_over_the_caps_are_answered_503_and_one_is_served_as_soon_as_another_closes(tmp_path):
    # Nothing written to the streams meanwhile (no keep-alive, no checkpoint event): a dropped stream whose place
    # waited for a write to fail would keep it for the whole test.
    keepalive_s = 3600.0
    settings = (f"event_streams = 3\nevent_streams_per_client = 2\nhttp_proxies = []\nevent_keepalive_s = {keepalive_s}"
                f"\ncheckpoint_interval = {keepalive_s}")
    with hub_running(tmp_path, settings) as (url, _), sockets() as streams:
        port = int(url.rsplit(":", 1)[1])

        def opened(source: str) -> bool:
            sock, status, headers, _ = http_get(port, source, "/api/events")
            if status != 200:
                sock.close()
                return False
            streams.append(sock)
            return headers["content-type"] == "text/event-stream"
        assert opened("127.0.0.1") and opened("127.0.0.1")
        assert "from 127.0.0.1" in _refused(http_get(port, "127.0.0.1", "/api/events"), "TOO_MANY_STREAMS")
        assert opened("127.0.0.2")  # another client: within the total
        assert "at most 3" in _refused(http_get(port, "127.0.0.3", "/api/events"), "TOO_MANY_STREAMS")
        assert _get(f"{url}/api/status")["hub"]  # other routes are answered all along
        counted = refusals(url)
        assert (counted["event_streams_per_address"], counted["event_streams"]) == (1, 1)
        streams.pop(0).close()
        dropped = time.monotonic()
        wait_until(lambda: opened("127.0.0.1"), 30, what="a stream served after another closed")
        assert time.monotonic() - dropped < keepalive_s / 10


def test_http_connections_over_the_caps_are_answered_503_and_closed(tmp_path):
    # Places held by requests under way (an operator's import whose body has not come yet, within its pace): a
    # connection waiting for a request would give its place up instead (the next test).
    settings = "http_connections = 6\nhttp_connections_per_address = 3\nhttp_proxies = []\nhttp_body_grace_s = 600"
    with hub_running(tmp_path, settings) as (url, _), sockets() as held:
        port = int(url.rsplit(":", 1)[1])
        held += [_import(port, "127.0.0.2", 100_000, under_way=True) for _ in range(3)]
        assert "from one address" in _refused(http_get(port, "127.0.0.2", "/api/status"), "TOO_MANY_CONNECTIONS")
        held += [_import(port, "127.0.0.3", 100_000, under_way=True) for _ in range(3)]
        assert "at most 6" in _refused(http_get(port, "127.0.0.4", "/api/status"), "TOO_MANY_CONNECTIONS")
        held.pop().close()

        def served() -> bool:
            sock, status, _, _ = http_get(port, "127.0.0.1", "/api/status")
            sock.close()
            return status == 200
        wait_until(served, 30, what="an honest request served after a connection closed")
        counted = refusals(url)
        assert (counted["http_connections_per_address"], counted["http_connections"]) == (1, 1)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (an answer, if any, read and dropped), waiting for it at most DEADLINE."""
    sock.settimeout(DEADLINE)
    try:
        while chunk := sock.recv(65536):
            del chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_connections_waiting_for_a_request_give_their_place_to_a_new_one(tmp_path):
    # A few hosts opening connections that send nothing, or half a request head, and opening another as soon as
    # one closes, once held every place for the head's deadline (20 s) at a time: phones and operators were
    # answered 503 with a few connections a second. A connection that waits for a request now gives its place up
    # to a new one, the oldest first, of the same address when that address's share is what is full.
    settings = "http_connections = 6\nhttp_connections_per_address = 3\nhttp_proxies = []"
    with hub_running(tmp_path, settings) as (url, _), sockets() as held:
        port = int(url.rsplit(":", 1)[1])
        silent = [connect(port, "127.0.0.2") for _ in range(3)]
        held += silent
        sock, status, _, _ = http_get(port, "127.0.0.2", "/api/status")  # its address's share was full
        held.append(sock)
        assert status == 200
        assert closed_by_server(silent[0])  # the oldest of that address gave its place
        half = [connect(port, "127.0.0.3") for _ in range(3)]
        held += half
        for conn in half:
            conn.sendall(b"GET /api/status HTTP/1.1\r\nHost: hu")  # a head never finished
        busy = _import(port, "127.0.0.5", 100_000, under_way=True)  # a request under way keeps its place
        held.append(busy)
        for source in ("127.0.0.4", "127.0.0.6", "127.0.0.7", "127.0.0.8"):
            sock, status, _, body = http_get(port, source, "/api/status")
            sock.close()
            assert status == 200, body
        # Four places given up, the oldest waiting first: 127.0.0.2's two silent ones and the one that was
        # answered, then the first half head. The request under way and the rest of the half heads are open.
        assert [closed_by_server(conn) for conn in silent[1:]] == [True, True]
        assert closed_by_server(half[0])
        busy.settimeout(0.5)
        with pytest.raises(TimeoutError):
            busy.recv(1)
        counted = refusals(url)
        assert (counted.get("http_connections_per_address"), counted.get("http_connections")) == (None, None), counted


def _trickled(sock: socket.socket, started: float, grace_s: float, trickle: bytes = b"x") -> bytes:
    """Send `trickle` every 0.2 s (a byte: 5 bytes a second) until the server closes the connection, which must
    be an answer 408, not sooner than `grace_s` after `started` and within DEADLINE; the answer's body."""
    sock.settimeout(0.2)
    answer = b""
    while True:
        assert time.monotonic() - started < DEADLINE, f"still open after {DEADLINE} s: {answer!r}"
        with contextlib.suppress(OSError):
            sock.sendall(trickle)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        answer += chunk
    assert time.monotonic() - started >= grace_s * 0.9  # closed by the pace, not at once
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    return body


def _import(port: int, source: str, length: int, *, under_way: bool = False) -> socket.socket:
    """A connection that sent the head of an operator's CSV import of `length` bytes, and none of its body;
    `under_way`: once the server has read the head and its route waits for the body (`_continued`)."""
    sock = connect(port, source)
    expect = "Expect: 100-continue\r\n" if under_way else ""
    sock.sendall(f"POST /api/markets/import?market=pasar-x HTTP/1.1\r\nHost: hub\r\nContent-Type: text/csv\r\n"
                 f"Authorization: Bearer {OPERATOR}\r\nContent-Length: {length}\r\n{expect}\r\n".encode())
    return _continued(sock) if under_way else sock


def _continued(sock: socket.socket) -> socket.socket:
    """`sock` once the server answered its `Expect: 100-continue`: its route is running and reads the body."""
    sock.settimeout(DEADLINE)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)  # a byte at a time: nothing past the interim answer is read
        assert chunk, f"closed before 100 Continue: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 100 "), data
    return sock


def test_a_body_trickled_slower_than_the_pace_is_answered_408_and_closed_and_a_steady_one_is_read(tmp_path):
    grace_s, rate = 2.0, 1000
    settings = (f"http_body_grace_s = {grace_s}\nhttp_body_min_rate = {rate}\nhttp_connections_per_address = 1\n"
                "http_proxies = []")
    with hub_running(tmp_path, settings) as (url, _), sockets() as held:
        port = int(url.rsplit(":", 1)[1])
        slow = _import(port, "127.0.0.2", 100_000, under_way=True)
        held.append(slow)
        started = time.monotonic()
        assert "from one address" in _refused(http_get(port, "127.0.0.2", "/api/status"), "TOO_MANY_CONNECTIONS")
        assert json.loads(_trickled(slow, started, grace_s))["error"]["code"] == "BODY_TOO_SLOW"

        def served() -> bool:  # its address's one place is free again
            sock, status, _, _ = http_get(port, "127.0.0.2", "/api/status")
            sock.close()
            return status == 200
        wait_until(served, 30, what="a request from the slow body's address served")
        assert refusals(url)["slow_http_request_bodies"] == 1

        # 16 KB at about 4,000 bytes a second: longer than the grace, never behind the pace.
        rows = "".join(f"2024-{1 + i // 28 % 12:02d}-{1 + i % 28:02d},beras,{12000 + i}\n" for i in range(700))
        csv = ("tanggal,komoditas,harga\n" + rows).encode()
        steady = _import(port, "127.0.0.3", len(csv))
        held.append(steady)
        started = time.monotonic()
        for at in range(0, len(csv), 1000):
            steady.sendall(csv[at:at + 1000])
            time.sleep(0.25)  # the client's pace, not a wait for the server
        assert time.monotonic() - started > grace_s
        status, _, body = read_answer(steady)
        assert status == 200, body
        assert json.loads(body)["bytes"] == len(csv)


@pytest.fixture
def edge_http(tmp_path: Path) -> Iterator[tuple[int, int]]:
    coap, http = free_coap(), free_tcp()
    config = tmp_path / "edge.toml"
    config.write_text(f'site = "sppg-limits"\ndata_dir = "{tmp_path / "edge"}"\nsensors = []\n'
                      f'[coap]\nhost = "127.0.0.1"\nport = {coap}\n[sync]\nmdns = false\n[sim]\ntap_interval_ms = 0\n'
                      f'[http]\nenabled = true\nport = {http}\n'
                      '[limits]\nhttp_connections = 4\nhttp_connections_per_address = 2\nhttp_body_grace_s = 6\n'
                      'coap_observers = 4\ncoap_observers_per_address = 2\n')
    with (tmp_path / "edge.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "edge", "run", "--config", str(config)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        sock, status, _, _ = http_get(http, "127.0.0.1", "/status")
        sock.close()
        return status == 401  # the pairing secret is asked for: the server answers
    try:
        _wait(proc, up)
        yield http, coap
        assert proc.poll() is None, "the edge exited"
    finally:
        proc.terminate()
        proc.wait(30)
    assert "Traceback" not in (tmp_path / "edge.log").read_text()


def test_the_edges_http_connections_over_the_caps_or_too_slow_are_answered_and_counted(edge_http, tmp_path):
    port, _ = edge_http
    secret = (tmp_path / "edge" / SECRET_FILE).read_text().strip()
    with sockets() as held:
        _edge_caps(port, held, secret)
        slow = _scan(port, "127.0.0.5", secret)
        held.append(slow)
        # None of the body: seed 1's route answers whatever first bytes come (400 for a lone "x")
        assert json.loads(_trickled(slow, time.monotonic(), 6, b""))["error"]["code"] == "BODY_TOO_SLOW"
    counted = refusals(f"http://127.0.0.1:{port}", secret)
    assert (counted["http_connections_per_address"], counted["http_connections"]) == (1, 1)
    assert counted["slow_http_request_bodies"] == 1


def _scan(port: int, source: str, secret: str) -> socket.socket:
    """A connection that sent the head of a phone's scan of 4,000 bytes, and none of its body: a request under way
    for the body's grace (6 s), which holds its place as a connection waiting for a request would not."""
    sock = connect(port, source)
    sock.sendall(f"POST /api/log_scan HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                 f"Authorization: Bearer {secret}\r\nContent-Length: 4000\r\nExpect: 100-continue\r\n\r\n".encode())
    return _continued(sock)


def _edge_caps(port: int, held: list[socket.socket], secret: str) -> None:
    held += [_scan(port, "127.0.0.2", secret) for _ in range(2)]
    assert "from one address" in _refused(http_get(port, "127.0.0.2", "/status"), "TOO_MANY_CONNECTIONS")
    held += [_scan(port, "127.0.0.3", secret) for _ in range(2)]
    assert "at most 4" in _refused(http_get(port, "127.0.0.4", "/status"), "TOO_MANY_CONNECTIONS")
    held.pop().close()

    def answered() -> bool:
        sock, status, _, _ = http_get(port, "127.0.0.1", "/status")
        sock.close()
        return status == 401
    wait_until(answered, 30, what="a phone answered after a connection closed")
    while held:  # closed before their bodies' grace ends: not counted as slow bodies
        held.pop().close()


def observe(port: int, source: str, *path: str) -> aiocoap.Message:
    """The answer to one GET /log/<path> (/log/own without one) with Observe, sent from `source` (a raw UDP
    socket, never read again: the observation, if accepted, stays registered)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(DEADLINE)
    request = aiocoap.Message(mtype=aiocoap.CON, code=aiocoap.GET, mid=1, observe=0)
    request.token = os.urandom(8)
    request.opt.uri_path = ("log", *(path or ("own",)))
    sock.sendto(request.encode(), ("127.0.0.1", port))
    try:
        return aiocoap.Message.decode(sock.recv(65536))
    finally:
        sock.close()


def test_the_edges_coap_observations_over_the_caps_are_answered_without_observe_and_counted(edge_http, tmp_path):
    """Observations were not capped: one host registering them with new tokens grew an edge by 12 KB each, and
    every record notified them all. Past the caps the head is still answered, once, without Observe."""
    http, coap = edge_http
    secret = (tmp_path / "edge" / SECRET_FILE).read_text().strip()
    for _ in range(3):  # an observation answered 4.04 gives its place back at once
        assert observe(coap, "127.0.0.5", "00" * 16).code == aiocoap.NOT_FOUND
    # a range is not observable: answered once (it was, with a traceback in the edge's log for each)
    ranged = observe(coap, "127.0.0.5", "own", "records")
    assert ranged.code == aiocoap.CONTENT and ranged.opt.observe is None
    first = [observe(coap, "127.0.0.2") for _ in range(3)]
    assert [m.code for m in first] == [aiocoap.CONTENT] * 3
    assert [m.opt.observe is not None for m in first] == [True, True, False]  # two from one address
    more = [observe(coap, "127.0.0.3") for _ in range(2)] + [observe(coap, "127.0.0.4")]
    assert [m.code for m in more] == [aiocoap.CONTENT] * 3
    assert [m.opt.observe is not None for m in more] == [True, True, False]  # four in all
    counted = refusals(f"http://127.0.0.1:{http}", secret)
    assert (counted["coap_observations_per_address"], counted["coap_observations"]) == (1, 1)
