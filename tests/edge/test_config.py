"""Configuration: one TOML file into one frozen tree; defaults alone make a laptop daemon; clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge.config import EdgeConfig, from_dict, load
from edge.errors import ConfigError
from ledger.failures import MissingFile
from tests.config_sweep import check_misspelt, check_wrong_values, settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_work_without_a_file():
    config = load(None)
    assert config.sim.enabled and config.coap.port == 5683 and config.checkpoint.role == "kitchen_exit"
    assert config.limits.map_size >= 1 << 20
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.site = "x"  # type: ignore[misc]


def test_toml_file_read_into_sections(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(
        'site = "sd-negeri-3"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        '[checkpoint]\nrole = "school_gate"\nstaff = ["a1b2c3d4"]\ndup_window_s = 10\n'
        '[coap]\nhost = "127.0.0.1"\nport = 0\n'
        '[limits]\nmap_size = 1048576\n'
        '[[sensors]]\nname = "probe-a"\nkind = "probe"\ninterval_s = 30\n'
        '[[sensors]]\nname = "room"\nkind = "climate"\n')
    config = load(path)
    assert isinstance(config, EdgeConfig)
    assert config.site == "sd-negeri-3" and config.checkpoint.role == "school_gate"
    assert config.checkpoint.staff == ("a1b2c3d4",) and config.checkpoint.dup_window_s == 10
    assert config.coap.port == 0 and config.limits.map_size == 1 << 20
    assert [s.name for s in config.sensors] == ["probe-a", "room"]
    assert config.sensors[1].interval_s == 300


@pytest.mark.parametrize("text, message", [
    ('[checkpoint]\nrole = "garage"\n', "checkpoint.role: expected one of"),
    ('[coap]\nport = 70000\n', "coap.port: expected a port"),
    ('[limits]\nmap_size = 10\n', "limits.map_size: expected 65536 to"),
    ('colour = "blue"\n', "unknown setting 'colour'"),
    ('[coap]\nhots = "x"\n', "unknown setting 'hots' in [coap]"),
    ('[[sensors]]\nname = "a"\nkind = "sonar"\n', "sensors[a].kind"),
    ('site = [\n', "not valid TOML"),
])
def test_bad_config_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(path)


def test_a_typo_names_the_file_the_key_and_the_key_meant(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[reader]\npoll_mss = 50\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(path) in caught.value.message and caught.value.where == "reader.poll_mss"
    assert caught.value.hint and caught.value.hint.startswith("did you mean 'poll_ms'?")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(MissingFile, match="does not exist") as caught:
        load(tmp_path / "nope.toml")
    assert caught.value.code == "NO_SUCH_FILE" and caught.value.where == str(tmp_path / "nope.toml")


def test_hardware_sections(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[reader]\ndriver = "rc522_spi"\nspi_cs = ""\n'
                    '[[sensor]]\nname = "air"\nkind = "climate"\ndriver = "sht31"\n'
                    '[[sensor]]\nname = "room"\nkind = "climate"\ndriver = "dht22"\npin = "D4"\n'
                    '[feedback]\ndriver = "gpio"\namber = ""\nbuzzer = ""\noffline_after_s = 0\n')
    config = load(path)
    assert config.reader.bus() == "SPI CS CE0"
    assert [(s.driver, s.bus()) for s in config.sensors] == [("sht31", "I2C 0x44"), ("dht22", "GPIO D4")]
    assert config.feedback.leds() == {"green": "D17", "red": "D22"} and config.feedback.bus() == \
        "GPIO green D17, red D22"


@pytest.mark.parametrize("text, expected", [
    ('[reader]\ndriver = "acr999"\n', "reader.driver: expected one of"),
    ('[reader]\ni2c_address = 0x99\n', "reader.i2c_address"),
    ('[[sensor]]\nname = "x"\nkind = "crowd"\ndriver = "bme280"\n', "not kind \"crowd\""),
    ('[[sensor]]\nname = "x"\ndriver = "ds18b20"\n', "sensors[x].driver: expected one of"),
    ('[[sensor]]\nname = "x"\n[[sensors]]\nname = "y"\n', "not both"),
    ('[feedback]\ndriver = "neopixel"\n', "feedback.driver"),
    ('[feedback]\ngreen = 17\n', "feedback.green: expected text, got 17"),
])
def test_hardware_sections_refuse_clearly(tmp_path, text, expected):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load(path)


# -- every setting, every mistake: refused with CONFIG, the setting's path and a hint -------------------------------

EDGE_SETTINGS = list(settings(EdgeConfig))


def test_the_sweep_covers_every_setting_of_the_example_config():
    example = tomllib.loads((ROOT / "deploy" / "edge.toml").read_text())
    swept = {s.path for s in EDGE_SETTINGS}
    for key, value in example.items():
        if isinstance(value, dict):
            assert {(key, k) for k in value} <= swept
        else:
            assert (key,) in swept or key == "sensor"
    assert from_dict(example).reader.driver == "pn532_i2c"


@pytest.mark.parametrize("setting", EDGE_SETTINGS, ids=lambda s: s.dotted)
def test_a_misspelt_setting_is_refused_naming_its_path_and_the_setting_meant(setting):
    check_misspelt(setting, from_dict, ConfigError)


@pytest.mark.parametrize("setting", EDGE_SETTINGS, ids=lambda s: s.dotted)
def test_a_value_of_the_wrong_type_is_refused_naming_the_setting(setting):
    check_wrong_values(setting, from_dict, ConfigError)


@pytest.mark.parametrize("text, where", [
    ('[security]\nosocre = true\n', "security.osocre"),
    ('[security]\noscore = "yes"\n', "security.oscore"),
    ('[hub]\nadress = "coap://hub.local"\n', "hub.adress"),
    ('[log]\nlevel = 10\n', "log.level"),
    ('[limits]\nmap_size = 4611686018427387904\n', "limits.map_size"),
    ('[sync]\ninterval_s = "30s"\n', "sync.interval_s"),
    ('[sync]\ninterval_s = nan\n', "sync.interval_s"),
    ('[[sensor]]\nname = "box"\ninterval_s = -5\n', "sensor[1].interval_s"),
    ('[[sensor]]\nkind = "probe"\n', "sensor[1].name"),
    ('[sensor]\nname = "box"\n', "sensor"),
    ('data_dir = ""\n', "data_dir"),
    ('[security]\nhub_key = "hub.example.org"\n', "security.hub_key"),  # was ValueError at start, INTERNAL
    ('[sync]\nannounce = "pi-gate.local"\n', "sync.announce"),  # was a warning at start: mDNS off
    ('[sync]\ninterfaces = ["eth0"]\n', "sync.interfaces"),
    ('[sync]\npeers = ["coap://"]\n', "sync.peers"),
    ('[hub]\naddress = "coap://hub.local:99999"\n', "hub.address"),
])
def test_a_mistake_names_its_setting(tmp_path, text, where):
    refused = _refused(tmp_path, text)
    assert refused.where == where and refused.message.startswith(str(tmp_path / "edge.toml"))


def _refused(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value


@pytest.mark.parametrize(("text", "hint"), [
    ('[hub]\naddress = "hub.example.org"\n', 'write address = "coap://hub.example.org:5683"'),
    ('[hub]\naddress = "http://10.0.0.5:8470"\n', 'write address = "coap://10.0.0.5:5683"'),  # the hub's HTTP
    ('[sync]\npeers = ["dapur-2.local"]\n', 'write peers = ["coap://dapur-2.local:5683"]'),
])
def test_an_address_without_its_scheme_says_how_to_write_it(tmp_path, text, hint):
    assert (_refused(tmp_path, text).hint or "").startswith(hint)


def test_a_bom_and_crlf_are_read_and_bytes_that_are_not_utf8_named(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_bytes('\ufeffsite = "SPPG-001"\r\n[coap]\r\nport = 0\r\n'.encode())
    assert load(path).site == "SPPG-001"
    path.write_bytes(b'site = "SPPG-001"\nname = "dapur \xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        load(path)
    assert caught.value.where == "line 2, column 15"
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path)
    path.write_text(f'data_dir = "{path}/data"\n')
    with pytest.raises(ConfigError, match="is a file") as caught:
        load(path)
    assert caught.value.where == "data_dir"


def _edge_run(tmp_path, text, *flags):
    path = tmp_path / "edge.toml"
    path.write_text(f'data_dir = "{tmp_path}/edge"\n{text}')
    return subprocess.run([sys.executable, "-m", "tools.cli", "edge", "run", "--config", str(path), *flags],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("text, flags, where", [
    ('[security]\nosocre = true\n', (), "security.osocre"),
    ('[log]\nlevel = 10\n', (), "log.level"),  # was INTERNAL: AttributeError
    ('[coap]\nhost = "127.0.0.1"\n', ("--port", "70000"), None),
    ('[coap]\nhost = "127.0.0.1"\n', ("--data-dir", "/etc/hostname/edge"), "--data-dir"),  # was INTERNAL
    ('[coap]\nhost = "127.0.0.1"\n', ("--data-dir", ""), None),  # was ignored: the store went to the config's
])
def test_jejak_edge_run_stops_on_a_config_mistake_with_one_line_and_exit_31(tmp_path, text, flags, where):
    done = _edge_run(tmp_path, text, *flags)
    assert done.returncode == 31 and "Traceback" not in done.stderr, done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "CONFIG" and error.get("where") == where
    assert not (tmp_path / "edge").exists()


@pytest.mark.parametrize(("text", "meant"), [
    ('[checkpoint]\nrole = "kitchen-exit"\n', "did you mean 'kitchen_exit'?"),
    ('[checkpoint]\nrole = "School_Gate"\n', "did you mean 'school_gate'?"),
    ('[reader]\ndriver = "pn532"\n', "did you mean 'pn532_i2c' or 'pn532_spi' or 'pn532_uart'?"),
    ('[[sensor]]\nname = "x"\ndriver = "bme208"\n', "did you mean 'bme280'?"),
    ('[reader]\ndriver = "simulated"\n', "did you mean 'sim'?"),
])
def test_a_value_almost_right_is_refused_with_the_one_meant(tmp_path, text, meant):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert "expected one of" in caught.value.message and caught.value.hint == meant
