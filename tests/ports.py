"""Free ports for the servers tests start: one helper for every test and for the harness."""

from __future__ import annotations

import socket


def _bound(kind: int, host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_tcp(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (HTTP, MQTT)."""
    return _bound(socket.SOCK_STREAM, host)


def free_udp(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to now (an edge's CoAP, a relay, an emulated reader)."""
    return _bound(socket.SOCK_DGRAM, host)


def free_coap(host: str = "127.0.0.1") -> int:
    """A port free for UDP and TCP alike: a hub serves CoAP over both on one port."""
    for _ in range(100):
        port = free_udp(host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((host, port))
            except OSError:
                continue  # taken for TCP (an outgoing connection's port, say): try another
            return port
    raise OSError(f"no port free for both UDP and TCP on {host}")
