"""Configuration: one TOML file into one frozen tree; defaults alone make a laptop daemon; clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from edge.config import EdgeConfig, load
from edge.errors import ConfigError


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
    ('[limits]\nmap_size = 10\n', "limits.map_size: expected at least"),
    ('colour = "blue"\n', "unknown key 'colour'"),
    ('[coap]\nhots = "x"\n', "coap: unknown keys ['hots']"),
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
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")


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
    ('[feedback]\ngreen = 17\n', "board pin name"),
])
def test_hardware_sections_refuse_clearly(tmp_path, text, expected):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load(path)
