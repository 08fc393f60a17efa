"""Each bad input an operator meets, replayed: one line on stderr with a code and a hint, the documented exit code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hub.app import start_hub
from hub.config import HubConfig
from ledger.failures import PortInUse
from tests.ports import free_coap, free_tcp
from tools import example

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "docs" / "examples" / example.NEWER


def jejak(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def one_line(proc: subprocess.CompletedProcess[str], code: str, exit_code: int) -> dict[str, str]:
    """The failure's whole stderr: one JSON line naming `code`, with a hint, and the exit code the class declares."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    error = json.loads(lines[0])["error"]
    assert error["code"] == code, error
    assert error.get("hint"), error
    assert proc.returncode == exit_code, (proc.returncode, proc.stderr)
    return error


def hub_config(tmp_path: Path, text: str, **ports: int) -> Path:
    settings = {"http_port": 0, "coap_port": 0, **ports}
    head = "".join(f"{key} = {value}\n" for key, value in settings.items())
    path = tmp_path / "hub.toml"
    path.write_text(f'mdns = false\ndata_dir = "{tmp_path / "hub"}"\n{head}{text}')
    return path


def test_unknown_hub_setting_names_the_key_and_a_close_one(tmp_path: Path) -> None:
    error = one_line(jejak("hub", "run", "--config", str(hub_config(tmp_path, "checkpoint_intervall = 5\n")),
                           cwd=tmp_path), "CONFIG", 31)
    assert "checkpoint_intervall" in error["message"]
    assert "checkpoint_interval" in error["hint"]


@pytest.mark.parametrize(("text", "key", "where", "close"), [
    ("[webhook_retry]\nbackof_s = 5\n", "backof_s", "webhook_retry.backof_s", "backoff_s"),
    ('[[webhooks]]\nid = "ops"\nkind = "json"\nurl = "https://ops.example.org/alerts"\nmin_bnad = "alert"\n',
     "min_bnad", "webhooks[1].min_bnad", "min_band"),
])
def test_a_misspelt_webhook_setting_names_the_key_and_the_close_one_before_anything_starts(
        tmp_path: Path, text: str, key: str, where: str, close: str) -> None:
    error = one_line(jejak("hub", "run", "--config", str(hub_config(tmp_path, text)), cwd=tmp_path), "CONFIG", 31)
    assert f"unknown setting {key!r}" in error["message"] and error["where"] == where
    assert error["hint"].startswith(f"did you mean {close!r}?")
    assert not (tmp_path / "hub").exists()  # refused before the store or the key was touched


def test_unsupported_store_backend(tmp_path: Path) -> None:
    error = one_line(jejak("hub", "run", "--config", str(hub_config(tmp_path, '[store]\nbackend = "sqlite"\n')),
                           cwd=tmp_path), "CONFIG", 31)
    assert error["where"] == "store.backend"


def test_hub_http_port_in_use(tmp_path: Path) -> None:
    port = free_tcp()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        error = one_line(jejak("hub", "run", "--config", str(hub_config(tmp_path, "", http_port=port)),
                               cwd=tmp_path), "PORT_IN_USE", 80)
    assert f"TCP port {port}" in error["message"] and error["where"] == "http_port"
    assert not (tmp_path / "hub").exists()  # refused before the store or the key was touched


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_hub_coap_port_held_with_reuseport_is_refused(tmp_path: Path, kind: int) -> None:
    """aiocoap's own way of binding (SO_REUSEPORT) must not let a second server share the port."""
    port = free_coap()
    with socket.socket(socket.AF_INET6, kind) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("::ffff:127.0.0.1", port))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        error = one_line(jejak("hub", "run", "--config", str(hub_config(tmp_path, "", coap_port=port)),
                               cwd=tmp_path), "PORT_IN_USE", 80)
    assert f"port {port}" in error["message"] and error["where"] == "coap_port"


async def test_a_second_hub_on_the_same_ports_does_not_start(tmp_path: Path) -> None:
    port = free_coap()
    first = await start_hub(HubConfig(data_dir=str(tmp_path / "a"), http_port=0, coap_port=port, mdns=False))
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):  # the first hub holds both, exclusively
            with socket.socket(socket.AF_INET6, kind) as intruder:
                intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                with pytest.raises(OSError):
                    intruder.bind(("::ffff:127.0.0.1", port))
        with pytest.raises(PortInUse) as refused:
            await start_hub(HubConfig(data_dir=str(tmp_path / "b"), http_port=0, coap_port=port, mdns=False))
        assert refused.value.where == "coap_port"
        assert not (tmp_path / "b").exists()
    finally:
        await first.close()


def test_edge_ports_in_use(tmp_path: Path) -> None:
    port = free_tcp()
    config = tmp_path / "edge.toml"
    config.write_text(f'data_dir = "{tmp_path / "edge"}"\n[coap]\nport = 0\n[http]\nenabled = true\nport = {port}\n')
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        error = one_line(jejak("edge", "run", "--config", str(config), cwd=tmp_path), "PORT_IN_USE", 80)
    assert error["where"] == "http.port"


def test_data_dir_without_permission(tmp_path: Path) -> None:
    """The tests run as root, which file modes do not stop: an immutable directory does."""
    locked = tmp_path / "locked"
    locked.mkdir()
    config = hub_config(tmp_path, "")
    config.write_text(config.read_text().replace(str(tmp_path / "hub"), str(locked / "hub")))
    subprocess.run(["chattr", "+i", str(locked)], check=True)
    try:
        error = one_line(jejak("hub", "run", "--config", str(config), cwd=tmp_path), "NO_PERMISSION", 81)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert str(locked / "hub") in error["message"]


def test_export_with_the_hub_down(tmp_path: Path) -> None:
    port = free_tcp()
    error = one_line(jejak("export", "--hub-url", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "a.jejak"),
                           "--token", "t", cwd=tmp_path), "UNREACHABLE", 82)
    assert f"127.0.0.1:{port}" in error["message"]


def test_a_hub_address_without_its_scheme_is_a_usage_error_that_says_how_to_write_it(tmp_path: Path) -> None:
    error = one_line(jejak("mbg", "summary", "--hub-url", "127.0.0.1:8470", cwd=tmp_path), "USAGE", 2)
    assert error["where"] == "--hub-url" and "http://" in error["message"]
    assert error["hint"].startswith("e.g. --hub-url http://127.0.0.1:8470"), error


def test_export_without_a_token(tmp_path: Path) -> None:
    port = free_tcp()
    error = one_line(jejak("export", "--hub-url", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "a.jejak"),
                           cwd=tmp_path), "UNAUTHORIZED", 1)
    assert "token" in error["message"] and not (tmp_path / "a.jejak").exists()


@pytest.mark.parametrize(("out", "said"), [("audit/a.jejak", "--out audit/a.jejak: the directory audit does not exist"),
                                         (".", "--out .: is a directory, expected the file to write")])
def test_export_to_a_directory_that_is_not_there_is_refused_before_the_hub_is_asked(tmp_path: Path, out: str,
                                                                                    said: str) -> None:
    """A hub that answers would have made the export, and the first write then failed naming a temporary file
    (`audit/a.jejak.part.id: no such file or directory`, NO_SUCH_FILE); nothing listens here, so an answer from
    the hub's side would be UNREACHABLE."""
    error = one_line(jejak("export", "--hub-url", f"http://127.0.0.1:{free_tcp()}", "--out", out, "--token", "t",
                           cwd=tmp_path), "USAGE", 2)
    assert error["message"] == said and not (tmp_path / "audit").exists()


def test_a_qr_png_into_a_directory_that_is_not_there_is_refused_first(tmp_path: Path) -> None:
    error = one_line(jejak("enroll", "qr", "--config", str(hub_config(tmp_path, "")), "--png", "codes/hub.png",
                           cwd=tmp_path), "USAGE", 2)
    assert error["message"] == "--png codes/hub.png: the directory codes does not exist"
    assert "mkdir -p codes" in error["hint"]


def test_verify_into_a_closed_pipe(tmp_path: Path) -> None:
    """`jejak-verify bundle | head -0`: the reader is gone before the report is written."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tools.verify", str(BUNDLE)], stdout=write, stderr=subprocess.PIPE,
                          text=True, env=env, timeout=120)
    os.close(write)
    one_line(proc, "OUTPUT_CLOSED", 83)


def test_verify_missing_bundle_is_usage(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tools.verify", str(tmp_path / "none.jejak")], capture_output=True,
                          text=True, env=env, timeout=120)
    one_line(proc, "USAGE", 2)


def test_traceback_only_with_verbose(tmp_path: Path) -> None:
    config = str(hub_config(tmp_path, "bogus = 1\n"))
    quiet = jejak("hub", "run", "--config", config, cwd=tmp_path)
    assert "Traceback" not in quiet.stderr
    loud = jejak("-v", "hub", "run", "--config", config, cwd=tmp_path)
    assert "Traceback" in loud.stderr and loud.returncode == 31
    assert json.loads(loud.stderr.strip().splitlines()[-1])["error"]["code"] == "CONFIG"


def test_version(tmp_path: Path) -> None:
    proc = jejak("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("jejak ")


def test_edge_status_of_a_daemon_that_is_not_running(tmp_path: Path) -> None:
    port = free_coap()
    error = one_line(jejak("edge", "status", "--url", f"coap://127.0.0.1:{port}", cwd=tmp_path), "UNREACHABLE", 82)
    assert f"127.0.0.1:{port}" in error["message"]


def test_demo_on_a_taken_port(tmp_path: Path) -> None:
    port = free_tcp()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        error = one_line(jejak("demo", "--port", str(port), "--data-dir", str(tmp_path / "demo"), cwd=tmp_path),
                         "PORT_IN_USE", 80)
    assert f"TCP port {port}" in error["message"]


def test_hub_store_that_is_not_an_lmdb_file(tmp_path: Path) -> None:
    store = tmp_path / "hub" / "store"
    store.mkdir(parents=True)
    (store / "data.mdb").write_bytes(b"\x00not lmdb\x00" * 2000)
    error = one_line(jejak("hub", "run", "--config", str(hub_config(tmp_path, "")), cwd=tmp_path), "STORE_ERROR", 33)
    assert "not an LMDB file" in error["message"]


@pytest.mark.parametrize("command", [("devices", "list"), ("export", "--out", "a.jejak"), ("mbg", "deliveries"),
                                     ("hub", "regions", "list")])
def test_every_command_that_asks_a_hub_asks_the_one_jejak_hub_url_names(tmp_path: Path, command: tuple[str, ...]):
    """$JEJAK_HUB_URL set once is where each of them goes (export and mbg went to 127.0.0.1:8470 whatever it said)."""
    url = f"http://127.0.0.1:{free_tcp()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JEJAK_HUB_URL": url, "JEJAK_TOKEN": "t"}
    proc = subprocess.run([sys.executable, "-m", "tools.cli", *command], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    error = one_line(proc, "UNREACHABLE", 82)
    assert url in error["message"], error


def test_markets_import_takes_the_hub_from_jejak_hub_url(monkeypatch: pytest.MonkeyPatch):
    from tools import markets

    monkeypatch.setenv("JEJAK_HUB_URL", "http://hub.example.org:8470")
    assert markets.parser().parse_args(["import", "prices.csv"]).hub_url == "http://hub.example.org:8470"


def test_the_hub_on_an_install_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    """An edge's install has no numpy: `jejak hub run` there names the extra, not an INTERNAL error to report."""
    config = hub_config(tmp_path, "", http_port=free_tcp(), coap_port=free_coap())
    blocked = ("import sys; sys.modules['numpy'] = None; from tools.cli import main; "
               f"sys.exit(main(['hub', 'run', '--config', {str(config)!r}]))")
    proc = subprocess.run([sys.executable, "-c", blocked], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    error = one_line(proc, "NOT_INSTALLED", 92)
    assert "numpy" in error["message"] and "jejak[hub]" in error["hint"], error
