"""`jejak export` streams the bundle to disk with progress and, after a cut, resumes on the same bytes."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from hub.app import start_hub
from hub.auth import hash_token
from hub.config import HubConfig
from tests.hub.conftest import enroll, new_device
from tools import cli


async def test_export_streams_and_resumes_after_a_cut(tmp_path: Path, hub, clock, capsys) -> None:
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    records = [builder.genesis()] + [builder.append("note", {"text": f"n{i}" * 40}) for i in range(300)]
    hub.ingest(device_id, [r.raw for r in records])
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                                        auditor_tokens=(hash_token("auditor"),)),
                              hub=hub)
    try:
        whole = tmp_path / "whole.jejak"
        assert await asyncio.to_thread(cli.main, ["export", "--hub-url", running.http_url, "--out", str(whole), "--token", "auditor"]) == 0
        full = whole.read_bytes()
        assert len(full) > 100_000
        err = capsys.readouterr().err
        assert f"of {len(full) / 1e6:.1f} MB (100%)" in err
        assert not whole.with_name("whole.jejak.part").exists()

        # A cut after 40 kB: the partial file and the export's name are what a killed download leaves.
        name = hashlib.sha256(full).hexdigest()
        cut = tmp_path / "cut.jejak"
        cut.with_name("cut.jejak.part").write_bytes(full[:40_000])
        cut.with_name("cut.jejak.part.id").write_text(name)
        hub.checkpoint(force=True)  # the hub moved on meanwhile; the resumed download is still that export
        assert await asyncio.to_thread(cli.main, ["export", "--hub-url", running.http_url, "--out", str(cut), "--token", "auditor"]) == 0
        assert "resuming at byte 40000" in capsys.readouterr().err
        assert cut.read_bytes() == full
        assert not cut.with_name("cut.jejak.part.id").exists()

        # An export the hub no longer keeps: start again rather than fail.
        gone = tmp_path / "gone.jejak"
        gone.with_name("gone.jejak.part").write_bytes(full[:1000])
        gone.with_name("gone.jejak.part.id").write_text("0" * 64)
        assert await asyncio.to_thread(cli.main, ["export", "--hub-url", running.http_url, "--out", str(gone),
                                                   "--token", "auditor"]) == 0
        assert gone.read_bytes()[:4] == full[:4] and len(gone.read_bytes()) > 100_000
    finally:
        await running.close()


async def test_export_reads_the_auditor_token_from_a_file_never_argv(tmp_path: Path, hub, monkeypatch,
                                                                     capsys) -> None:
    monkeypatch.delenv("JEJAK_TOKEN", raising=False)
    monkeypatch.delenv("JEJAK_TOKEN_FILE", raising=False)
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                                        auditor_tokens=(hash_token("audit-me"),)), hub=hub)
    token_file = tmp_path / "token"
    token_file.write_text("audit-me\n")
    try:
        out = str(tmp_path / "a.jejak")
        assert await asyncio.to_thread(cli.main, ["export", "--hub-url", running.http_url, "--out", out]) != 0
        assert "--token-file" in capsys.readouterr().err  # the refusal says where the token goes
        argv = ["export", "--hub-url", running.http_url, "--out", out, "--token-file", str(token_file)]
        assert await asyncio.to_thread(cli.main, argv) == 0
        monkeypatch.setenv("JEJAK_TOKEN_FILE", str(token_file))
        out2 = str(tmp_path / "b.jejak")
        assert await asyncio.to_thread(cli.main, ["export", "--hub-url", running.http_url, "--out", out2]) == 0
        assert Path(out2).stat().st_size > 0
    finally:
        await running.close()
