"""Every HTTP route of a running `jejak hub run` driven from its own OpenAPI document (schemathesis: values
inside and outside each parameter's type and range, random bodies), and every CoAP resource of a hub and an
edge process with hostile queries and bodies: no 5xx (5.03 overload aside), no process exit, nothing stored
that was sent without a credential."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiocoap
import cbor2
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from hub.auth import hash_token
from tests.ports import free_coap, free_tcp

from .test_attacker import resources

ROOT = Path(__file__).resolve().parents[2]
OPERATOR, AUDITOR, GATEWAY = "fuzz-operator-token", "fuzz-auditor-token", "fuzz-gateway-token"
EXAMPLES = 8  # per operation, mode and credential: about 900 HTTP requests in all
# COSE and CBOR bodies (enrollment requests, records messages) are bytes like any other binary body.
schemathesis.serializer.alias("application/cose", "application/octet-stream")
schemathesis.serializer.alias("application/cbor", "application/octet-stream")


def _get(url: str, token: str = OPERATOR) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _wait(proc: subprocess.Popen[bytes], ready: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited with {proc.returncode} while starting"
        try:
            ready()
            return
        except (OSError, ValueError, aiocoap.error.Error):
            time.sleep(0.1)
    raise AssertionError("process did not come up")


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    with running_hub(tmp_path) as running:
        yield running


@contextlib.contextmanager
def running_hub(tmp_path: Path, settings: str = "",
                bridges: str = "") -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """`jejak hub run` on free ports with the suite's tokens, `settings` and `bridges` added to its config and its
    [bridges] table; its output in tmp_path/hub.log."""
    http, coap = free_tcp(), free_coap()
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path / "hub"}"\nhttp_port = {http}\ncoap_port = {coap}\nmdns = false\n'
                      f'operator_tokens = ["{hash_token(OPERATOR)}"]\nauditor_tokens = ["{hash_token(AUDITOR)}"]\n'
                      f'{settings}[bridges]\ngateway_tokens = ["{hash_token(GATEWAY)}"]\n{bridges}'
                      f'[bridges.mqtt]\nenabled = false\n')
    log = (tmp_path / "hub.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        _wait(proc, lambda: _get(f"{url}/api/status"))
        yield url, f"coap://127.0.0.1:{coap}", proc
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def records_held(url: str) -> int:
    return sum(h["length"] for h in _get(f"{url}/api/heads")["heads"])


def fuzz_http(url: str, operations: list[Any], token: str | None, failures: list[str]) -> int:
    """Drive each operation with schemathesis' cases; collect every 5xx. Returns the number of requests."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    sent = [0]
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                drive(op, mode, url, session, headers, failures, sent)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, op.label  # nothing to get wrong in a bare GET
    return sent[0]


def drive(op: Any, mode: GenerationMode, url: str, session: requests.Session, headers: dict[str, str],
          failures: list[str], sent: list[int]) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def one(case: Any) -> None:
        sent[0] += 1
        try:
            # The live stream answers with its headers, then waits for events: a short read timeout there.
            timeout = (5, 0.5) if op.path == "/api/events" else 10
            response = case.call(base_url=url, session=session, headers=headers, timeout=timeout)
        except requests.exceptions.ReadTimeout:
            assert op.path == "/api/events", f"{op.label} did not answer within 10 s"
            return
        if response.status_code >= 500 and response.status_code != 503:
            failures.append(f"{op.label} ({mode.value}, {'token' if headers else 'no token'}): "
                            f"{response.status_code} {response.text[:160]}")

    one()


def test_every_http_route_from_the_openapi_document(hub_process):
    url, _, proc = hub_process
    spec = _get(f"{url}/api/openapi.json")
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    before = records_held(url)
    failures: list[str] = []
    sent = fuzz_http(url, operations, None, failures) + fuzz_http(url, operations, AUDITOR, failures)
    assert proc.poll() is None, "the hub exited under fuzzing"
    assert records_held(url) == before, "a request without the right credential stored a record"
    # The operator's routes' own parsing too (the attackers above stop at the access rule).
    operator_ops = [op for op in operations if op.definition.raw.get("x-access") == "operator"
                    and op.path != "/api/markets/import"]  # a CSV import is meant to store what it is given
    sent += fuzz_http(url, operator_ops, OPERATOR, failures)
    assert proc.poll() is None, "the hub exited under fuzzing"
    assert not failures, "\n".join(failures[:30])
    assert sent > 500


HOSTILE_QUERY = st.lists(st.one_of(
    st.sampled_from(["d=", "from=-3", f"from={10**30}", "to=1e9", "d=zz", "from=0x10", "r=00", "to=-1",
                     f"d={'00' * 16}&d={'11' * 16}", "from=" + "9" * 400, "token=x"]),
    st.text(max_size=40).map(lambda t: t.replace("&", "")),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["d", "from", "to", "r"]), st.text(max_size=30))),
    max_size=4)
HOSTILE_BODY = st.one_of(
    st.binary(max_size=2048),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=20),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                 max_leaves=20).map(cbor2.dumps),
    st.just(b"\x81" * 3000 + b"\x00"))  # nested 3,000 deep


def hostile_cases() -> list[tuple[list[str], bytes, aiocoap.Code]]:
    """A fixed sample (derandomized) of hostile queries, bodies and methods, drawn once for every resource."""
    batch: list[tuple[list[str], bytes, aiocoap.Code]] = []

    @given(query=HOSTILE_QUERY, body=HOSTILE_BODY,
           method=st.sampled_from([aiocoap.GET, aiocoap.POST, aiocoap.PUT, aiocoap.DELETE]))
    @settings(max_examples=40, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def draw(query: list[str], body: bytes, method: aiocoap.Code) -> None:
        batch.append((query, body, method))

    draw()
    return batch


async def fuzz_coap(url: str, failures: list[str]) -> int:
    paths = await resources(url)
    batch = hostile_cases()
    ctx = await aiocoap.Context.create_client_context()
    sent = 0
    try:
        for path in paths:
            for query, body, method in batch:
                msg = aiocoap.Message(code=method, uri=f"{url}/{'/'.join(path)}", payload=body)
                msg.opt.uri_query = tuple(q for q in query if q)
                try:
                    response = await asyncio.wait_for(ctx.request(msg).response, 10)
                except (aiocoap.error.Error, ValueError) as exc:
                    if isinstance(exc, aiocoap.error.RequestTimedOut | aiocoap.error.NetworkError):
                        failures.append(f"{url} /{'/'.join(path)}: no answer ({exc})")
                    continue  # aiocoap refused to build or send it: nothing reached the server
                sent += 1
                if response.code.class_ == 5 and response.code != aiocoap.SERVICE_UNAVAILABLE:
                    failures.append(f"{url} {method} /{'/'.join(path)}?{'&'.join(query)[:60]}: {response.code}")
    finally:
        await ctx.shutdown()
    return sent


async def test_every_coap_resource_of_hub_and_edge_with_hostile_input(hub_process, tmp_path):
    url, coap_url, proc = hub_process
    port = free_coap()
    config = tmp_path / "edge.toml"
    config.write_text(f'site = "sppg-fuzz"\ndata_dir = "{tmp_path / "edge"}"\nsensors = []\n'
                      f'[coap]\nhost = "127.0.0.1"\nport = {port}\n[sync]\nmdns = false\n'
                      f'[sim]\ntap_interval_ms = 0\n')
    log = (tmp_path / "edge.log").open("wb")
    edge = subprocess.Popen([sys.executable, "-m", "tools.cli", "edge", "run", "--config", str(config)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    edge_url = f"coap://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(_wait, edge, lambda: asyncio.run(resources(edge_url)))
        before = records_held(url)
        failures: list[str] = []
        sent = await fuzz_coap(coap_url, failures) + await fuzz_coap(edge_url, failures)
        assert proc.poll() is None and edge.poll() is None, "a server exited under fuzzing"
        assert not failures, "\n".join(failures[:30])
        assert records_held(url) == before
        assert sent > 300
    finally:
        edge.terminate()
        edge.wait(30)
        log.close()
