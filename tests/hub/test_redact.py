"""URLs as the hub shows and logs them: a webhook's secret (user information, token-like path, query values)
and a store's password masked, where it goes still readable."""

from __future__ import annotations

import pytest

from hub.pg import PgHubStore, shown_dsn
from hub.redact import mask_url
from hub.store import StoreError
from tests.ports import free_tcp


@pytest.mark.parametrize(("url", "shown"), [
    # Plain words and numbers stay: where the alert goes.
    ("https://ops.example.org/jejak/alerts", "https://ops.example.org/jejak/alerts"),
    ("https://graph.facebook.com/v21.0/1055/messages", "https://graph.facebook.com/v21.0/1055/messages"),
    ("http://[::1]:8080/hook/", "http://[::1]:8080/hook/"),
    ("https://h.example", "https://h.example"),
    # An id or a token, and whatever follows it.
    ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
     "https://hooks.slack.com/services/***/***/***"),
    ("https://hooks.example/T000/B000/XXXX", "https://hooks.example/***/***/***"),
    ("https://discord.com/api/webhooks/123456789012345678/abcdefghij", "https://discord.com/api/webhooks/***/***"),
    ("https://api.telegram.org/bot123:ABC/sendMessage", "https://api.telegram.org/***/***"),
    ("https://h.example/alerts/averyveryverylongword", "https://h.example/alerts/***"),
    ("https://h.example/a%2Fb/c", "https://h.example/***/***"),
    # The user information's password (and a user name that is not a word), the query's values, the fragment.
    ("https://user:pass@host.example:8443/a?key=abc&x=1&flag#frag",
     "https://user:***@host.example:8443/a?key=***&x=***&***#***"),
    ("https://tok3n@host.example/a", "https://***@host.example/a"),
    ("postgresql://jejak-hub:pa55@/jejak?host=/run/postgresql", "postgresql://jejak-hub:***@/jejak?host=***"),
    # Not a URL: nothing of it.
    ("hooks.example/T000", "***"),
    ("mailto:ops@example.org", "***"),
    ("http://127.0.0.1:99999/x", "***"),
])
def test_what_could_be_a_secret_is_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_an_unreachable_store_is_named_without_its_password() -> None:
    port = free_tcp()  # nothing listens there
    dsn = f"postgresql://jejak:pa55word@127.0.0.1:{port}/test"
    with pytest.raises(StoreError) as caught:
        PgHubStore(dsn)
    assert f"cannot reach PostgreSQL at postgresql://jejak:***@127.0.0.1:{port}/test" in caught.value.message
    assert "pa55word" not in str(caught.value.to_dict())
    assert shown_dsn("host=db user=jejak password='a b' dbname=test") == "host=db user=jejak password=*** dbname=test"
    assert shown_dsn("host=db password=pa55word") == "host=db password=***"
