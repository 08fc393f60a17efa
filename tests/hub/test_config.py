"""The hub's TOML configuration: each [[webhooks]] entry is checked when the file loads, and what does not hold
is a CONFIG error that names the entry, the setting and, for a misspelt one, the closest known setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, HubConfig, load
from hub.markets.webhooks import RetryPolicy, Subscriber

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
    with pytest.raises(ConfigError, match=r"expected a table of settings, got int") as caught:
        _load(tmp_path, text)
    assert caught.value.where == where and f"[{where}]" in (caught.value.hint or "")


def test_a_subscriber_the_entry_does_not_make_is_named_with_its_url_masked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, '[[webhooks]]\nid = "ops"\nkind = "json"\nurl = "ftp://ops:pa55@h.example/T0K3N"\n')
    assert caught.value.where == "webhooks[1]"
    assert "expected http:// or https://, got 'ftp://ops:***@h.example/***'" in caught.value.message
    assert "pa55" not in caught.value.message and "T0K3N" not in caught.value.message
    with pytest.raises(ConfigError, match=r"expected one of \['json', 'telegram', 'whatsapp'\], got 'jsn'"):
        HubConfig(webhooks=({"id": "ops", "kind": "jsn", "url": "https://h.example/"},))


def test_a_misspelt_retry_setting_names_the_close_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'max_backof_s' in \[webhook_retry\]") as caught:
        _load(tmp_path, "[webhook_retry]\nmax_backof_s = 60\n")
    assert caught.value.where == "webhook_retry.max_backof_s"
    assert (caught.value.hint or "").startswith("did you mean 'max_backoff_s'?")
