"""The daemon: graceful SIGTERM, supervised restarts, map full under load, HTTP metrics, the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from coap_server.client import EdgeClient
from coap_server.errors import CoapError
from edge.cli import main as edge_main
from edge.config import HttpConfig, Limits
from edge.daemon import Supervisor
from edge.metrics import Metrics
from edge.pairing import load_or_create_secret
from edge.store import LmdbLogStore
from edge.sync import ReplicaQuota, SyncAgent
from ledger import verify_chain
from tests.ports import free_udp
from tests.wait import wait_for

from .common import DaemonProcess, edge_config, read_log, running, write_config

REPO = Path(__file__).resolve().parents[2]


async def test_sigterm_flushes_and_restart_resumes(tmp_path):
    port = free_udp()
    config = write_config(tmp_path / "edge.toml", tmp_path / "data", port)
    proc = DaemonProcess(config, tmp_path / "run1.log")
    ready = await asyncio.to_thread(proc.wait_ready)
    async with EdgeClient(f"coap://127.0.0.1:{port}", timeout=5) as client:
        answers = await asyncio.gather(*(client.submit("note", {"text": f"n{i}"}) for i in range(30)))
    assert await asyncio.to_thread(proc.terminate) == 0
    log = read_log(tmp_path / "run1.log")
    assert any(e.get("msg") == "stopped" for e in log)
    assert ready["boot"] == 1

    proc = DaemonProcess(config, tmp_path / "run2.log")
    ready2 = await asyncio.to_thread(proc.wait_ready)
    assert ready2["device"] == ready["device"] and ready2["boot"] == 2 and ready2["seq"] == 31
    async with EdgeClient(f"coap://127.0.0.1:{port}", timeout=5) as client:
        nxt = await client.submit("note", {"text": "after restart"})
        raws = await client.range(bytes.fromhex(ready["device"]), 0, 100)
    assert await asyncio.to_thread(proc.terminate) == 0
    assert nxt.seq == 31 and verify_chain(raws).length == 32
    assert {a.id for a in answers} <= {__import__("hashlib").sha256(r).digest() for r in raws}


async def test_supervisor_restarts_a_crashed_task_with_backoff():
    metrics = Metrics()
    sup = Supervisor(metrics, base=0.01, cap=0.05)
    runs = []

    async def flaky():
        runs.append(1)
        if len(runs) < 4:
            raise RuntimeError("driver fell over")
        await asyncio.sleep(3600)

    sup.spawn("flaky", flaky)
    await wait_for(lambda: len(runs) >= 4, what="three restarts")
    assert len(runs) == 4 and metrics.restarts["flaky"] == 3
    await sup.stop()
    assert not sup.tasks


async def test_supervisor_stop_is_bounded_when_a_task_drops_a_cancel():
    metrics = Metrics()
    sup = Supervisor(metrics)
    cancels = []
    started = []

    async def deaf():
        started.append(1)
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # as asyncio.wait_for on Python 3.11 can, the first time
                cancels.append(1)
                if len(cancels) > 1:
                    raise

    sup.spawn("deaf", deaf)
    await wait_for(lambda: started, what="the task to start")
    task = sup.tasks["deaf"]
    try:
        stopping = asyncio.create_task(sup.stop(grace=0.2))
        done, _ = await asyncio.wait({stopping}, timeout=10)
        assert done and task.cancelled() and len(cancels) == 2
    finally:
        while not task.done():  # after a failure above: it takes two cancels
            task.cancel()
            await asyncio.wait({task}, timeout=1)


async def test_supervisor_does_not_restart_a_task_that_fails_while_stopping():
    metrics = Metrics()
    sup = Supervisor(metrics, base=0.01, cap=0.05)
    runs = []

    async def untidy():
        runs.append(1)
        try:
            await asyncio.sleep(3600)
        finally:
            if len(runs) == 1:  # only the first run, so a restart (the fault) can still be stopped
                raise RuntimeError("cleanup fell over")

    sup.spawn("untidy", untidy)
    await wait_for(lambda: runs, what="the task to start")
    task = sup.tasks["untidy"]
    stopping = asyncio.create_task(sup.stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)
    assert done and len(runs) == 1 and metrics.restarts["untidy"] == 0
    assert isinstance(task.exception(), RuntimeError)


async def test_sync_loop_stops_when_cancelled_as_it_is_woken(tmp_path):
    """trigger() and a cancel in the same loop steps: Python 3.11's wait_for kept the wake-up and dropped the
    cancel, so the loop ran on and the daemon's close waited for it forever."""
    store = LmdbLogStore(tmp_path / "store")
    try:
        for steps in range(6):
            agent = SyncAgent(ReplicaQuota(store, max_records=100, own=None), interval=3600)
            task = asyncio.create_task(agent.run())
            while agent.rounds < 1:  # no targets: the round is empty, then it waits to be woken
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.01)
            agent.trigger()
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            while not task.done():  # after a failed trial: stop it before the store closes
                task.cancel()
                await asyncio.wait({task}, timeout=1)
            assert done, f"the sync loop ran on after a cancel {steps} loop steps after trigger()"
    finally:
        store.close()


async def test_map_full_refuses_clearly_and_keeps_serving_reads(tmp_path):
    config = edge_config(tmp_path, limits=Limits(map_size=256 * 1024))
    acked = []
    async with running(config) as (daemon, client):
        refused = None
        for i in range(400):
            try:
                acked.extend(await client.submit_many(
                    [("note", {"text": f"{i}.{j} " + "m" * 300}) for j in range(10)]))
            except CoapError as exc:
                refused = exc
                break
        assert refused is not None and refused.code == "STORE_FULL" and refused.coap_code.startswith("5.03")
        assert "map_size" in refused.hint
        for i in range(2000):  # smaller records may still fit: fill the last pages too
            try:
                acked.append(await client.submit("note", {"text": f"small {i}"}))
            except CoapError as exc:
                assert exc.code == "STORE_FULL"
                break
        # A tap is refused at the reader with the same reason, and reads keep working.
        # (LMDB may still find room for a record or two smaller than the one refused: tap until it is full.)
        await client.tap("5a000001")
        tapped = 0  # accepted taps: each is one record beside the acknowledged submissions
        for n in range(200):
            fb = await client.tap(f"04{n:012x}")
            if fb[-1]["status"] != "accepted":
                break
            tapped += 1
        assert fb[-1]["status"] == "error" and fb[-1]["reason"] == "store_full"
        status = await client.status()
        assert "STORE_FULL" in status["last_error"] and status["errors"]["STORE_FULL"] >= 2
        raws = await client.range(daemon.key.device_id, 0, len(acked) + tapped + 1)
        assert len(raws) == len(acked) + tapped + 1
    bigger = edge_config(tmp_path, limits=Limits(map_size=4 << 20))
    async with running(bigger) as (daemon, client):
        raws = await client.range(daemon.key.device_id, 0, 10**6)
        assert verify_chain(raws).length == len(acked) + tapped + 1
        assert all(raws[a.seq] and hashlib.sha256(raws[a.seq]).digest() == a.id for a in acked)
        assert (await client.submit("note", {"text": "room again"})).seq == len(acked) + tapped + 1


async def test_http_metrics_endpoint(tmp_path):
    config = edge_config(tmp_path, http=HttpConfig(enabled=True, host="127.0.0.1", port=0))
    async with running(config) as (daemon, client):
        await client.submit("note", {"text": "m"})
        url = f"http://127.0.0.1:{daemon.http_port}"
        auth = {"Authorization": f"Bearer {load_or_create_secret(daemon.config.data_path)}"}  # jejak edge pair

        def get(path: str) -> bytes:
            request = urllib.request.Request(url + path, headers=auth)
            return bytes(urllib.request.urlopen(request, timeout=5).read())

        text = (await asyncio.to_thread(get, "/metrics")).decode()
        assert "# TYPE jejak_edge_records_total counter" in text
        assert 'jejak_edge_records_total{source="coap"} 1' in text
        status = json.loads(await asyncio.to_thread(get, "/status"))
        assert status["own"]["length"] == 2


async def test_refuses_to_start_with_an_exposed_key(tmp_path):
    port = free_udp()
    config = write_config(tmp_path / "edge.toml", tmp_path / "data", port)
    (tmp_path / "data").mkdir()
    key = tmp_path / "data" / "device.key"
    key.write_bytes(b"\x01" * 32)
    key.chmod(0o644)
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "edge.cli", "run", "--config",
                                                   str(config)], cwd=REPO, capture_output=True, timeout=30)
    assert out.returncode == 32
    err = json.loads(out.stderr.decode().strip().splitlines()[-1])["error"]
    assert err["code"] == "KEY_FILE" and "0644" in err["message"] and "chmod 600" in err["hint"]
    assert b"\x01" * 4 not in out.stderr and "01010101" not in out.stderr.decode()


def test_cli_status_id_and_verify_read_the_store(tmp_path, capsys):
    config = edge_config(tmp_path / "d")

    async def fill():
        async with running(config) as (_, client):
            await client.submit("note", {"text": "cli"})

    asyncio.run(fill())
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    assert edge_main(["id", "--config", str(cfg)]) == 0
    ident = json.loads(capsys.readouterr().out)
    assert edge_main(["status", "--config", str(cfg)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["device"] == ident["device"] and status["logs"][0]["length"] == 2
    assert edge_main(["verify", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out) == {"device": ident["device"], "verified": 2}


def test_cli_reports_config_errors(tmp_path, capsys):
    cfg = tmp_path / "edge.toml"
    cfg.write_text('[checkpoint]\nrole = "garage"\n')
    assert edge_main(["run", "--config", str(cfg)]) == 31
    assert "checkpoint.role" in json.loads(capsys.readouterr().err)["error"]["message"]


@pytest.mark.parametrize("argv", [["run", "--help"], ["status", "--help"]])
def test_cli_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        edge_main(argv)
    assert info.value.code == 0 and "--config" in capsys.readouterr().out
