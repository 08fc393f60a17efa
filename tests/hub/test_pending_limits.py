"""Where a request waiting for approval is counted: its address and its network (/24, or /64 for IPv6)."""

from __future__ import annotations

import pytest

from hub.pending import (
    PendingLimits,
    TooManyPending,
    TooManyPendingFromSource,
    Waiting,
    address_of,
    network_of,
)


def test_addresses_are_counted_in_their_network():
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("::ffff:192.0.2.77") == "192.0.2.0/24" and address_of("::ffff:192.0.2.77") == "192.0.2.77"
    assert network_of("2001:db8:0:7:aaaa::1") == network_of("2001:db8:0:7::ffff") == "2001:db8:0:7::/64"
    assert network_of("fe80::1%eth0") == "fe80::/64"
    assert network_of("?") == "?" and address_of("x" * 100) == "x" * 64


def test_a_source_is_refused_past_its_address_or_network_places_and_others_are_not():
    limits = PendingLimits(total=10, per_address=2, per_network=3, settings="[bridges] ")
    waiting = Waiting.of(["192.0.2.1", "192.0.2.1", "192.0.2.2", ""])
    with pytest.raises(TooManyPendingFromSource, match=r"192\.0\.2\.1 .*\[bridges\] pending_per_address"):
        waiting.check("192.0.2.1", limits, "seed-2 registrations")
    with pytest.raises(TooManyPendingFromSource, match=r"192\.0\.2\.0/24 .*\[bridges\] pending_per_network"):
        waiting.check("192.0.2.9", limits, "seed-2 registrations")
    waiting.check("198.51.100.1", limits, "seed-2 registrations")
    waiting.check("", limits, "seed-2 registrations")  # made on the hub itself: the total only
    full = Waiting.of([""] * 10)
    with pytest.raises(TooManyPending, match="pending_devices"):
        full.check("198.51.100.1", limits, "seed-2 registrations")
