"""docs/DEPLOY.md's PostgreSQL backup and restore, run as written (paths and names moved to the test's own) against
a hub's real store: the restore succeeds, the hub verifies what it brought back, and `jejak hub take-back` takes
what the dump lacked back from a bundle the hub exported after it."""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig, StoreConfig
from hub.lastsigned import OlderStore
from tests.hub.conftest import Clock, enroll, new_device
from tests.pg import PG_DSN

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_MD = ROOT / "docs" / "DEPLOY.md"


def _documented(db: str, backups: Path) -> tuple[str, str]:
    """The cron line's pg_dump and the restore block of DEPLOY.md, with the database `db`, the backups in
    `backups`, this user for the hub's and postgres's, and the unit's start and stop left out (no systemd here)."""
    text = DEPLOY_MD.read_text()
    dump = re.search(r"postgres (pg_dump [^']*)'", text)
    assert dump, "DEPLOY.md lost its daily pg_dump"
    at = text.index("Restore into an empty")
    restore = text[at:].split("```sh\n", 1)[1].split("```", 1)[0]
    assert "pg_restore" in restore and "dropdb" in restore, restore

    def local(script: str) -> str:
        script = script.replace("\\%", "%").replace("/var/backups/jejak", str(backups))
        script = script.replace("sudo -u postgres ", "").replace("--owner jejak-hub", f"--owner {getpass.getuser()}")
        lines = [line for line in script.splitlines() if "systemctl" not in line]
        return "\n".join(re.sub(r"(?<=[\s=])jejak(?=\s|$)", db, line) for line in lines)

    return local(dump[1]), local(restore)


def _count(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {schema}.records").fetchone()
    assert row is not None
    return int(row[0])


async def test_the_documented_restore_brings_back_a_store_the_hub_verifies(tmp_path: Path) -> None:
    db = f"jejak_restore_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:  # the test PostgreSQL missing fails here, loudly
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = make_conninfo(PG_DSN, dbname=db)
    server = conninfo_to_dict(PG_DSN)
    env = {**os.environ, "PGHOST": str(server.get("host", "127.0.0.1")), "PGPORT": str(server.get("port", 5432))}
    if server.get("user"):
        env["PGUSER"] = str(server["user"])
    try:
        config = HubConfig(name="hub-restore", data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0,
                           mdns=False, bridges=BridgeConfig(enabled=False),
                           store=StoreConfig(backend="postgres", dsn=dsn))
        running = await start_hub(config)  # its first start writes the hub's own log into the partitioned table
        await running.close()
        before = _count(dsn, "hub_restore")
        assert before >= 1
        (tmp_path / "backups").mkdir()
        dump, restore = _documented(db, tmp_path / "backups")
        done = await asyncio.to_thread(subprocess.run, ["bash", "-euo", "pipefail", "-c", dump], env=env,
                                       capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        made = list((tmp_path / "backups").glob("*.dump"))
        assert len(made) == 1, made
        running = await start_hub(config)  # a day after the dump: a device enrolled, its records, a bundle exported
        try:
            clock = Clock(int(time.time()))
            signer, builder = new_device(clock)
            device_id = enroll(running.hub, signer, clock)
            assert running.hub.ingest(device_id, [builder.genesis().raw] + [
                builder.append("note", {"text": f"after the dump {i}"}).raw for i in range(20)]).accepted == 21
            bundle = tmp_path / "exported.jejak"
            bundle.write_bytes(running.hub.export())
            lost = running.hub.latest_checkpoint()
            assert lost is not None and lost.tree_size > before
        finally:
            await running.close()
        restore = re.sub(r"\S+\.dump", str(made[0]), restore)
        done = await asyncio.to_thread(subprocess.run, ["bash", "-euo", "pipefail", "-c", restore], env=env,
                                       capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{restore}\n{done.stderr}"
        assert _count(dsn, "hub_restore") == before
        toml = tmp_path / "hub.toml"
        toml.write_text(f'name = "hub-restore"\ndata_dir = "{tmp_path / "hub"}"\nhttp_port = 0\n[store]\n'
                        f'backend = "postgres"\ndsn = "{dsn}"\n')
        verified = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "tools.cli", "hub", "verify", "--config", str(toml)], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0 and verified.stdout.startswith("ok"), verified.stdout + verified.stderr
        with pytest.raises(OlderStore):
            await start_hub(config)
        taken = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "tools.cli", "hub", "take-back", "--config", str(toml), str(bundle)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
        assert taken.returncode == 0 and taken.stdout.startswith("the log is whole again"), taken.stdout + taken.stderr
        running = await start_hub(config)  # without --accept-older-store: the log holds what the hub signed
        try:
            assert running.hub.latest_checkpoint() == lost and running.hub.tree.root(lost.tree_size) == lost.root
            assert running.hub.store.get_device(device_id).status == "active"
            assert running.hub.ingest(device_id, [builder.append("note", {"text": "next"}).raw]).accepted == 1
        finally:
            await running.close()
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
