"""coap_server.limits: places taken and given back by address, refusals counted, and logged at most once a
minute however many there are."""

from __future__ import annotations

import logging

import pytest

from coap_server.limits import LOG_EVERY_S, Cap, Slots


def test_places_are_refused_past_the_total_and_an_addresss_share_and_given_back():
    slots = Slots(Cap(total=3, per_address=2), "connections", log=logging.getLogger("test"))
    assert slots.take("10.0.0.5") is None and slots.take("10.0.0.5") is None
    assert "from one address" in (slots.take("10.0.0.5") or "")
    assert slots.take("10.0.0.6") is None
    assert "at most 3" in (slots.take("10.0.0.7") or "")
    slots.give("10.0.0.5")
    assert slots.take("10.0.0.7") is None  # a place given back is another's
    slots.give("10.0.0.9")  # never taken: nothing to give back
    assert (slots.held, slots.refused, slots.held_by("10.0.0.5")) == (3, 2, 1)


def test_a_shared_address_counts_only_in_the_total():
    slots = Slots(Cap(total=4, per_address=1, shared=frozenset({"127.0.0.1"})), "connections",
                  log=logging.getLogger("test"))
    assert all(slots.take("127.0.0.1") is None for _ in range(4))
    assert "at most 4" in (slots.take("127.0.0.1") or "")


def test_refusals_are_logged_at_most_once_a_minute_with_their_count(caplog: pytest.LogCaptureFixture):
    now = [1000.0]
    slots = Slots(Cap(total=1, per_address=1), "CoAP-TCP connections", log=logging.getLogger("test.limits"),
                  clock=lambda: now[0], setting="coap_tcp_connections")
    slots.take("10.0.0.1")
    with caplog.at_level(logging.WARNING, logger="test.limits"):
        for _ in range(1000):
            slots.take("10.0.0.2")
            now[0] += 0.01  # 10 s of a flood
        assert len(caplog.records) == 1 and "raise coap_tcp_connections" in caplog.records[0].getMessage()
        now[0] += LOG_EVERY_S
        slots.take("10.0.0.3")
        assert len(caplog.records) == 2
        assert caplog.records[1].getMessage().startswith("refused 1000 CoAP-TCP connections in the last 60 s")
    assert slots.refused == 1001


def test_refusals_are_tallied_by_reason_past_the_total_and_past_an_addresss_share():
    tally: dict[str, int] = {}
    slots = Slots(Cap(total=2, per_address=1), "CoAP-TCP connections", log=logging.getLogger("test"), tally=tally)
    assert slots.take("10.0.0.1") is None and slots.take("10.0.0.1") is not None
    assert slots.take("10.0.0.2") is None and slots.take("10.0.0.3") is not None
    assert tally == {"coap_tcp_connections_per_address": 1, "coap_tcp_connections": 1}
