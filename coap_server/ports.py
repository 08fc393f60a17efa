"""Servers own their ports: edge and hub bind CoAP (UDP, TCP) and HTTP exclusively, and a taken port stops the start.

aiocoap binds its server sockets with SO_REUSEPORT wherever the platform has it, so a second hub on the same
port starts without a word and the kernel hands it part of the first hub's traffic. `serve_coap` turns that off
(aiocoap's only switch is the AIOCOAP_REUSE_PORT environment variable, read at each bind) and checks every port
first, so the second server fails with PORT_IN_USE naming the port and the setting to change.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import MutableMapping, Sequence
from typing import Any

import aiocoap

from coap_server.exchanges import DedupBudget, bounded_context
from coap_server.tcpguard import TcpLimits, serve_tcp
from ledger.failures import PortInUse, bad_address, port_in_use

UDP, TCP = "UDP", "TCP"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def claim(host: str, port: int, transports: Sequence[str], *, setting: str) -> None:
    """Raise PortInUse unless `port` on `host` is free for every transport in `transports` ("UDP", "TCP").

    A probe bind with the options the real server uses: none for UDP (a socket holding the port with or
    without SO_REUSEPORT refuses it), SO_REUSEADDR for TCP (as asyncio's listeners do, so a closed
    connection's TIME_WAIT after a restart is not mistaken for a server)."""
    for transport in transports:
        kind = socket.SOCK_DGRAM if transport == UDP else socket.SOCK_STREAM
        with socket.socket(_family(host), kind) as probe:
            if transport == TCP:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))  # port 0 binds any free one: the address alone is probed
                if transport == TCP:
                    probe.listen(1)
            except socket.gaierror as exc:  # a host name that does not resolve
                raise bad_address(_host_setting(setting), host, str(exc.strerror)) from None
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and port:
                    raise port_in_use(setting, host, port, transport) from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise bad_address(_host_setting(setting), host, str(exc.strerror)) from None
                raise


def _host_setting(port_setting: str) -> str:
    """The setting that names the address beside a port's (http_port: http_host, coap.port: coap.host)."""
    return port_setting.replace("port", "host")


async def serve_coap(site: Any, *, host: str, port: int, tcp: bool, setting: str,
                     budget: DedupBudget = DedupBudget(), tcp_limits: TcpLimits = TcpLimits(),
                     tcp_setting: str = "", tally: MutableMapping[str, int] | None = None) -> aiocoap.Context:
    """A CoAP server context for `site` on `host:port`, UDP (and TCP if `tcp`), owning the port alone, whose
    deduplication state keeps to `budget` (coap_server/exchanges.py) at any request rate, and whose TCP
    connections keep to `tcp_limits` (coap_server/tcpguard.py; `tcp_setting` names where to raise them, and
    `tally` counts the refusals by reason)."""
    transports = [UDP, TCP] if tcp else [UDP]
    claim(host, port, transports, setting=setting)
    # Read by aiocoap at every server bind (udp6 and tcpserver); client sockets never ask for it.
    os.environ["AIOCOAP_REUSE_PORT"] = "0"
    try:
        context = await bounded_context(budget).create_server_context(site, bind=(host, port), transports=["udp6"])
    except OSError as exc:  # taken between the check and the bind
        if exc.errno == errno.EADDRINUSE:
            raise port_in_use(setting, host, port, UDP) from None
        raise
    if tcp:
        try:
            await serve_tcp(context, (host, port), tcp_limits, setting=tcp_setting, tally=tally)
        except BaseException as exc:
            await context.shutdown()
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise port_in_use(setting, host, port, TCP) from None
            raise
    return context


async def start_http_site(site: Any, *, host: str, port: int, setting: str) -> None:
    """Start an aiohttp TCPSite, turning a taken port into PortInUse (aiohttp never shares a listening port)."""
    try:
        await site.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise port_in_use(setting, host, port, TCP) from None
        raise


__all__ = ["TCP", "UDP", "PortInUse", "claim", "serve_coap", "start_http_site"]
