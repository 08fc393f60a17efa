"""The hub's TOML configuration: each [[webhooks]] entry is checked when the file loads, and what does not hold
is a CONFIG error that names the entry, the setting and, for a misspelt one, the closest known setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.config import ConfigError, HubConfig, from_dict, load
from hub.markets.webhooks import RetryPolicy, Subscriber
from hub.security import HubSecurity
from ledger.failures import MissingFile
from tests.config_sweep import Setting, check_misspelt, check_wrong_values, settings
from tests.ports import free_coap, free_tcp

ROOT = Path(__file__).resolve().parents[2]

OPS = 'id = "ops"\nkind = "json"\nurl = "https://ops.example.org/alerts"\n'


def _load(tmp_path: Path, text: str) -> HubConfig:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return load(path)


def test_webhook_entries_load_as_the_subscribers_they_name(tmp_path: Path) -> None:
    config = _load(tmp_path, f'[[webhooks]]\n{OPS}commodities = ["beras-medium"]\nmin_band = "alert"\n'
                             '[[webhooks]]\nid = "tg"\nkind = "telegram"\nurl = "https://api.telegram.org"\n'
                             'token = "123:ABC"\nchat_id = "-100"\n')
    assert config.subscribers() == (
        Subscriber(id="ops", kind="json", url="https://ops.example.org/alerts", commodities=("beras-medium",),
                   min_band="alert"),
        Subscriber(id="tg", kind="telegram", url="https://api.telegram.org", token="123:ABC", chat_id="-100"))
    assert config.webhook_retry == RetryPolicy()


@pytest.mark.parametrize(("text", "where", "message", "hint"), [
    (f'[[webhooks]]\n{OPS}[[webhooks]]\nid = "tg"\nkind = "json"\nurl = "https://h.example/"\nregion = ["x"]\n',
     "webhooks[2].region", "unknown setting 'region' in [[webhooks]] number 2 (id 'tg')", "did you mean 'regions'?"),
    (f'[[webhooks]]\n{OPS}tokne = "s3cret"\n', "webhooks[1].tokne",
     "unknown setting 'tokne' in [[webhooks]] number 1 (id 'ops')", "did you mean 'token'?"),
    ('[[webhooks]]\nid = "ops"\nkind = "json"\n', "webhooks[1].url", "[[webhooks]] number 1 (id 'ops'): url not set",
     "a subscriber needs an id"),
    (f'[[webhooks]]\n{OPS}commodities = "beras-medium"\n', "webhooks[1].commodities",
     "commodities: expected a list of names, got 'beras-medium'", 'commodities = ["..."]'),
    (f'[[webhooks]]\n{OPS}min_band = 2\n', "webhooks[1].min_band", "min_band: expected text, got 2", "quote it"),
    (f'[[webhooks]]\n{OPS}[[webhooks]]\n{OPS}', "webhooks[2].id", "id 'ops' is taken by an earlier entry",
     "its own id"),
    ('webhooks = ["https://ops.example.org/alerts"]\n', "webhooks[1]", "expected a table of settings", None),
    # a value the subscriber refuses is named with its setting, and the one meant where one is close
    ('[[webhooks]]\nid = "ops"\nkind = "jsn"\nurl = "https://h.example/"\n', "webhooks[1].kind",
     "subscriber kind: expected one of", "did you mean 'json'?"),
    (f'[[webhooks]]\n{OPS}min_band = "alrt"\n', "webhooks[1].min_band", "min_band: expected one of",
     "did you mean 'alert'?"),
    ('[[webhooks]]\nid = "tg"\nkind = "telegram"\nurl = "https://api.telegram.org"\ntoken = "1:A"\n',
     "webhooks[1].chat_id", "expected token and chat_id", None),
])
def test_a_webhook_entry_that_does_not_hold_stops_the_load_naming_it(
        tmp_path: Path, text: str, where: str, message: str, hint: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert caught.value.code == "CONFIG" and caught.value.where == where
    assert message in caught.value.message and caught.value.message.startswith(str(tmp_path / "hub.toml"))
    if hint is not None:
        assert hint in (caught.value.hint or "")


@pytest.mark.parametrize(("text", "where"), [("store = 5\n", "store"), ("[markets]\nimpact = 7\n", "markets.impact")])
def test_a_setting_where_a_table_belongs_is_a_config_error(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=r"expected a table of settings, got \d+ \(a number\)") as caught:
        _load(tmp_path, text)
    assert caught.value.where == where and f"[{where}]" in (caught.value.hint or "")


def test_a_subscriber_the_entry_does_not_make_is_named_with_its_url_masked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, '[[webhooks]]\nid = "ops"\nkind = "json"\nurl = "ftp://ops:pa55@h.example/T0K3N"\n')
    assert caught.value.where == "webhooks[1].url"
    assert "expected http:// or https://, got 'ftp://ops:***@h.example/***'" in caught.value.message
    assert "pa55" not in caught.value.message and "T0K3N" not in caught.value.message
    with pytest.raises(ConfigError, match=r"expected one of \['json', 'telegram', 'whatsapp'\], got 'jsn'"):
        HubConfig(webhooks=({"id": "ops", "kind": "jsn", "url": "https://h.example/"},))


def test_a_misspelt_retry_setting_names_the_close_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'max_backof_s' in \[webhook_retry\]") as caught:
        _load(tmp_path, "[webhook_retry]\nmax_backof_s = 60\n")
    assert caught.value.where == "webhook_retry.max_backof_s"
    assert (caught.value.hint or "").startswith("did you mean 'max_backoff_s'?")


# -- every setting, every mistake: refused with CONFIG, the setting's path and a hint -------------------------------

HUB_SETTINGS = list(settings(HubConfig))


def test_the_sweep_covers_every_setting_of_the_example_config() -> None:
    example = tomllib.loads((ROOT / "deploy" / "hub.toml").read_text())
    swept = {s.path for s in HUB_SETTINGS}

    def paths(table: dict[str, object], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        for key, value in table.items():
            if isinstance(value, dict):
                yield from paths(value, (*prefix, key))
            else:
                yield (*prefix, key)

    assert set(paths(example)) <= swept
    assert from_dict(example).store.backend == "postgres"


@pytest.mark.parametrize("setting", HUB_SETTINGS, ids=lambda s: s.dotted)
def test_a_misspelt_setting_is_refused_naming_its_path_and_the_setting_meant(setting: Setting) -> None:
    check_misspelt(setting, from_dict, ConfigError)


@pytest.mark.parametrize("setting", HUB_SETTINGS, ids=lambda s: s.dotted)
def test_a_value_of_the_wrong_type_is_refused_naming_the_setting(setting: Setting) -> None:
    check_wrong_values(setting, from_dict, ConfigError)


@pytest.mark.parametrize(("text", "where", "message"), [
    ("[webhooks]\nid = \"ops\"\n", "webhooks", "expected an array of tables"),
    ("operator_tokens = [\"s3cret-token\"]\n", "operator_tokens[1]", "expected SHA-256 digests"),
    ("operator_token = []\n", "operator_token", "unknown setting"),
    ("[security]\npeer_hubs = [\"abcd\"]\n", "security.peer_hubs[1]", "64 hex digits"),
    ("[security]\nread = [\"self\"]\n", "security.read[1]", "<peer>:<log>"),
    ("http_port = 65536\n", "http_port", "expected a port 0..65535"),
    ("checkpoint_interval = 0\n", "checkpoint_interval", "expected > 0 seconds"),
    ("webhook_attempts = 0\n", "webhook_attempts", "expected a number > 0"),
    ("data_dir = \"\"\n", "data_dir", "expected a value, got nothing"),
    ("clock = \"yesterday\"\n", "clock", "expected 'wall' or an ISO instant"),
    ("[store]\nmap_size = 4611686018427387904\n", "store.map_size", "4 TiB"),
    ("[store]\nbackend = \"postgres\"\ndsn = \"\"\n", "store.dsn", "got nothing"),
    # no dsn: the hub ran on the local server's `test` database, the default a test suite uses
    ("[store]\nbackend = \"postgres\"\n", "store.dsn", "got nothing"),
    ("name = \"Hub Jabar\"\n[store]\nbackend = \"postgres\"\ndsn = \"postgresql://127.0.0.1/jejak\"\n", "name", "schema"),
    ("[markets]\nhorizon = 0\n", "markets.horizon", "expected at least 1"),
    ("[markets]\nheld_alert_days = 0\n", "markets.held_alert_days", "expected at least 1"),
    ("[markets.impact]\nrecent_days = 0\n", "markets.impact.recent_days", "expected a number > 0"),
    ("[markets.validation]\nwindow = 2\n", "markets.validation", "window >= 3"),
    ("[bridges]\nmax_batch = 0\n", "bridges.max_batch", "expected 1..10000"),
    ("[bridges.mqtt]\nqos = 3\n", "bridges.mqtt.qos", "expected 0, 1 or 2"),
])
def test_a_value_its_setting_refuses_is_a_config_error_at_its_path(
        tmp_path: Path, text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert caught.value.code == "CONFIG" and caught.value.where == where
    assert message in caught.value.message and caught.value.message.startswith(str(tmp_path / "hub.toml"))


def test_store_path_is_where_the_lmdb_store_is_kept(tmp_path: Path) -> None:
    assert _load(tmp_path, f'data_dir = "{tmp_path}/hub"\n').store_path == tmp_path / "hub" / "store"
    assert _load(tmp_path, f'[store]\npath = "{tmp_path}/lmdb"\n').store_path == tmp_path / "lmdb"


# -- the file itself ---------------------------------------------------------------------------------------------

def test_a_bom_and_crlf_line_ends_are_read_as_an_editor_shows_them(tmp_path: Path) -> None:
    (tmp_path / "hub.toml").write_bytes("\ufeffname = \"hub-jabar\"\r\n[store]\r\nbackend = \"lmdb\"\r\n".encode())
    assert load(tmp_path / "hub.toml").name == "hub-jabar"


@pytest.mark.parametrize(("data", "where", "message"), [
    (b'name = "hub"\nregion = "jawa\xe9barat"\n', "line 2, column 15", "not UTF-8 text"),
    (b'name = "hub"\n[store\nbackend = "lmdb"\n', "line 2, column 7", "the table header [store at line 2 has no "
                                                                       "closing ]"),
    (b'name = hub\n', "line 1, column 8", "not valid TOML"),
])
def test_a_file_that_is_not_toml_names_line_and_column(tmp_path: Path, data: bytes, where: str, message: str) -> None:
    (tmp_path / "hub.toml").write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "hub.toml")
    assert caught.value.where == where and message in caught.value.message


def test_a_missing_config_a_directory_and_a_file_for_data_dir_are_named(tmp_path: Path) -> None:
    with pytest.raises(MissingFile) as missing:
        load(tmp_path / "nope.toml")
    assert missing.value.code == "NO_SUCH_FILE" and missing.value.where == str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="data_dir: expected a directory") as caught:
        _load(tmp_path, f'data_dir = "{tmp_path}/file/hub"\n')
    assert caught.value.where == "data_dir"


# -- through `jejak hub run`: one JSON line, the exit code of CONFIG, nothing started or written --------------------

def _hub_run(tmp_path: Path, text: str | bytes) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "hub.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    return subprocess.run([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize(("text", "where", "hint"), [
    ("[security]\nosocre = true\n", "security.osocre", "did you mean 'oscore'?"),
    ("auto_approve = \"false\"\n", "auto_approve", "without quotes"),
    ("[webhooks]\nid = \"ops\"\nkind = \"json\"\nurl = \"https://h.example/\"\n", "webhooks", "[[webhooks]]"),
    ("[store]\nbackend = \"postgres\"\ndsn = \"postgresql://hub:pa55w0rd@[::1/jejak\"\n", "store.dsn", "libpq URI"),
    (b"name = \"hub\"\nregion = \"jawa\xe9barat\"\n", "line 2, column 15", "UTF-8"),
])
def test_jejak_hub_run_stops_on_a_config_mistake_with_one_line_and_exit_31(
        tmp_path: Path, text: str | bytes, where: str, hint: str) -> None:
    prefix = f'data_dir = "{tmp_path}/hub"\nhttp_port = {free_tcp()}\ncoap_port = {free_coap()}\nmdns = false\n'
    done = _hub_run(tmp_path, (prefix.encode() + text) if isinstance(text, bytes) else prefix + text)
    assert done.returncode == ConfigError.exit_code == 31, done.stderr
    assert "Traceback" not in done.stderr and "pa55w0rd" not in done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "CONFIG" and error["where"] == where.replace("line 2", "line 6") and hint in error["hint"]
    assert not (tmp_path / "hub").exists()  # no key, no store: the mistake stops it before anything is written


def test_jejak_hub_run_takes_a_config_with_a_bom_and_crlf_line_ends(tmp_path: Path) -> None:
    text = f'\ufeffdata_dir = "{tmp_path}/hub"\r\nhttp_port = {free_tcp()}\r\ncoap_port = {free_coap()}\r\nmdns = false\r\n'
    (tmp_path / "hub.toml").write_bytes(text.encode())
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(tmp_path / "hub.toml")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stderr is not None
        lines = iter(proc.stderr.readline, "")  # the log, JSON line by line, up to its "started" line
        started = next(line for line in map(json.loads, lines) if "http" in line)
        assert started["msg"].startswith("hub ") and started["http"].startswith("http://"), started
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert (tmp_path / "hub" / "store").is_dir()


@pytest.mark.parametrize(("setting", "host"), [("http_host", "no-such-host.invalid"), ("coap_host", "192.0.2.7")])
def test_jejak_hub_run_on_an_address_it_cannot_listen_on_names_the_setting(tmp_path: Path, setting: str,
                                                                            host: str) -> None:
    done = _hub_run(tmp_path, f'data_dir = "{tmp_path}/hub"\nhttp_port = 0\ncoap_port = 0\nmdns = false\n'
                              f'{setting} = "{host}"\n')
    assert done.returncode == 88 and "Traceback" not in done.stderr, done.stderr  # was INTERNAL (gaierror)
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "BAD_ADDRESS" and error["where"] == setting and host in error["message"]
    assert not (tmp_path / "hub").exists()


# -- the preflight: a file or service the hub needs that is missing stops it before data_dir is written -----------

def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("setting", "code", "exit_code", "where", "hint"), [
    ('mbg_plan = "{tmp}/plans/mbg.toml"\n', "NO_SUCH_FILE", 84, "mbg_plan", "mbg_plan"),  # docs/ERRORS.md
    ('mbg_plan = "{tmp}/broken.toml"\n', "MBG_PLAN", 41, "mbg_plan", "TOML"),
    ('[store]\nbackend = "postgres"\ndsn = "postgresql://jejak:pa55w0rd@127.0.0.1:{port}/test"\n', "STORE_ERROR", 33,
     "store.dsn", "start PostgreSQL"),
])
def test_jejak_hub_run_checks_the_plan_and_the_store_before_it_writes_a_key(
        tmp_path: Path, setting: str, code: str, exit_code: int, where: str, hint: str) -> None:
    data = tmp_path / "hub"
    data.mkdir()
    (data / "NOTES").write_text("the operator's own file\n")
    (tmp_path / "broken.toml").write_text("[[kitchens]\nid = \"SPPG-001\"\n")
    before = _tree(data)
    closed = free_tcp()  # nothing listens there: PostgreSQL "down"
    done = _hub_run(tmp_path, f'data_dir = "{data}"\nhttp_port = {free_tcp()}\ncoap_port = {free_coap()}\n'
                              f'mdns = false\n' + setting.format(tmp=tmp_path, port=closed))
    assert not (data / "hub.key").exists()  # was written first, then the start stopped: a new hub behind a typo
    assert _tree(data) == before
    assert done.returncode == exit_code, done.stderr
    assert "Traceback" not in done.stderr and "pa55w0rd" not in done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == code and error["where"] == where and hint in error["hint"], error


@pytest.mark.parametrize(("data", "where", "said", "hint"), [
    # a key pasted twice: tomllib says only "Cannot overwrite a value"
    (b'name = "hub"\nhttp_port = 8470\nhttp_port = 8471\n', "line 3, column 17",
     "http_port at line 3 is set twice (first at line 2)", "delete one of the two http_port lines"),
    (b'[store]\nbackend = "lmdb"\n[security]\noscore = true\noscore = false\n', "line 5, column 15",
     "oscore at line 5 is set twice in [security] (first at line 4)", "delete one"),
    # a section header copied where a list was meant: tomllib says "Cannot declare ('webhooks',) twice"
    (b"[webhooks]\nurl = \"http://a\"\n[webhooks]\nurl = \"http://b\"\n", "line 3, column 10",
     "[webhooks] at line 3 is given twice (first at line 1)", "write [[webhooks]] at each one"),
    # a header whose ] was lost: tomllib reads "[store" as [store] declared twice
    (b'[store]\nbackend = "lmdb"\n[store\n', "line 3, column 7", "the table header [store at line 3 has no closing ]",
     "write it as [store]"),
])
def test_a_key_or_table_given_twice_is_named_with_both_lines(tmp_path: Path, data: bytes, where: str, said: str,
                                                              hint: str) -> None:
    (tmp_path / "hub.toml").write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "hub.toml")
    assert caught.value.where == where and said in caught.value.message
    assert str(tmp_path / "hub.toml") in caught.value.message and hint in (caught.value.hint or "")


# -- upstream: one entry per regional hub key ------------------------------------------------------------------------

REGION_KEY = "5a" * 32


def test_two_upstream_entries_with_one_region_key_are_refused_naming_both(tmp_path: Path) -> None:
    """Both opened (and locked) the one OSCORE context of that key: the start failed as UNREACHABLE "file lock"."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f'upstream = ["coap://10.0.0.9:5683", "coap://10.0.0.2:5693 {REGION_KEY}", '
                        f'"coap://region-b.invalid:5683 {REGION_KEY} checkpoints"]\n')
    assert caught.value.where == "upstream[3]"
    message = caught.value.message
    assert "entries 2 (coap://10.0.0.2:5693) and 3 (coap://region-b.invalid:5683)" in message, message
    assert REGION_KEY in message and "one region key belongs to one entry" in message


def test_two_upstream_entries_with_one_address_are_refused_naming_both(tmp_path: Path) -> None:
    """One regional hub pulled twice, or, with two keys, one of them refused each round as if the region's own."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f'upstream = ["coap://10.0.0.2:5683", "coap://10.0.0.9:5683", '
                        f'"coap://10.0.0.2:5683 {REGION_KEY} checkpoints"]\n')
    assert caught.value.where == "upstream[3]"
    assert "entries 1 and 3 both name coap://10.0.0.2:5683" in caught.value.message, caught.value.message
    assert "delete the other" in (caught.value.hint or "")


def test_upstream_entries_with_different_keys_or_none_load(tmp_path: Path) -> None:
    entries = ("coap://a:5683", "coap://b:5683", f"coap://c:5683 {REGION_KEY}", f"coap://d:5683 {'6b' * 32}")
    assert HubConfig(upstream=entries).upstream == entries


def test_jejak_hub_run_with_one_region_key_twice_stops_with_exit_31_not_unreachable(tmp_path: Path) -> None:
    done = _hub_run(tmp_path, f'data_dir = "{tmp_path}/hub"\nhttp_port = {free_tcp()}\ncoap_port = {free_coap()}\n'
                              f'mdns = false\nupstream = ["coap://127.0.0.1:1 {REGION_KEY}", '
                              f'"coap://no-such-host.invalid:5683 {REGION_KEY}"]\n')
    assert done.returncode == ConfigError.exit_code == 31, done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "CONFIG" and error["where"] == "upstream[2]" and "one region key" in error["message"]
    assert not (tmp_path / "hub").exists()


def test_an_upstream_entry_with_this_hubs_own_key_is_a_config_error(tmp_path: Path, hub) -> None:
    security = HubSecurity(hub, tmp_path / "data")
    try:
        with pytest.raises(ConfigError) as caught:
            security.upstream_contexts((f"coap://10.0.0.2:5683 {REGION_KEY}",
                                        f"coap://10.0.0.3:5683 {hub.signer.public_key.hex()}"))
        assert caught.value.where == "upstream[2]" and "this hub's own key" in caught.value.message
    finally:
        security.close()
