"""mDNS discovery of Jejak peers and hubs (`_jejak._udp.local.`) with python-zeroconf."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ledger.sync import Head

log = logging.getLogger("jejak.discovery")
SERVICE = "_jejak._udp.local."
PROTOCOL_VERSION = "1"


def heads_summary(heads: Sequence[Head]) -> str:
    """A short digest of the log heads, so peers see at a glance whether anything changed."""
    h = hashlib.sha256()
    total = 0
    for head in sorted(heads, key=lambda x: x.device_id):
        h.update(head.device_id + head.length.to_bytes(8, "big") + head.head)
        total += head.length
    return f"{len(heads)}:{total}:{h.hexdigest()[:12]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """A node seen on the LAN: where to reach it and what it says about itself."""

    name: str
    role: str
    device: str
    protocol: str
    heads: str
    host: str
    port: int
    tcp: bool = False  # also serves CoAP over TCP, which carries bulk sync without block-wise transfer

    @property
    def coap_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"coap{'+tcp' if self.tcp else ''}://{host}:{self.port}"


class Discovery:
    """Announces this node and keeps the set of peers currently on the LAN."""

    def __init__(self, *, role: str, device_id: bytes, port: int, addresses: Sequence[str],
                 heads: Callable[[], Sequence[Head]] = list,
                 on_change: Callable[[str, Peer], None] | None = None,
                 interfaces: Sequence[str] | None = None, tcp: bool = False) -> None:
        self.role = role
        self.tcp = tcp
        self.device_id = device_id
        self.port = port
        self.addresses = list(addresses)
        self._heads = heads
        self.on_change = on_change
        self.interfaces = list(interfaces) if interfaces else None
        self.peers: dict[str, Peer] = {}
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return f"{self.role}-{self.device_id.hex()[:12]}.{SERVICE}"

    def _properties(self) -> dict[str, str]:
        props = {"role": self.role, "id": self.device_id.hex(), "proto": PROTOCOL_VERSION,
                 "heads": heads_summary(list(self._heads()))}
        if self.tcp:
            props["tcp"] = "1"
        return props

    async def start(self) -> None:
        self._zc = AsyncZeroconf(ip_version=IPVersion.V4Only, interfaces=self.interfaces or InterfaceChoice.All)
        self._info = AsyncServiceInfo(
            SERVICE, self.name, port=self.port, properties=self._properties(),
            addresses=[socket.inet_aton(a) for a in self.addresses], server=f"{self.name.split('.')[0]}.local.")
        await self._zc.async_register_service(self._info)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE, handlers=[self._on_state])

    async def update(self) -> None:
        """Re-announce with fresh heads (after new records)."""
        if self._zc is None or self._info is None:
            return
        self._info = AsyncServiceInfo(SERVICE, self.name, port=self.port, properties=self._properties(),
                                      addresses=self._info.addresses, server=self._info.server)
        await self._zc.async_update_service(self._info)

    def _on_state(self, zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if name == self.name:
            return
        if state_change is ServiceStateChange.Removed:
            peer = self.peers.pop(name, None)
            if peer is not None and self.on_change:
                self.on_change("removed", peer)
            return
        task = asyncio.ensure_future(self._resolve(service_type, name))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zc.zeroconf, 3000):
            return
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not all(a.startswith("127.") for a in self.addresses):
            # A loopback address heard on a real interface belongs to another host's own loopback.
            addresses = [a for a in addresses if not a.startswith("127.")]
        if not addresses or props.get("proto") != PROTOCOL_VERSION:
            log.info("ignoring %s: no address or another protocol (%s)", name, props.get("proto"))
            return
        peer = Peer(name=name, role=props.get("role", "?"), device=props.get("id", ""),
                    protocol=props.get("proto", ""), heads=props.get("heads", ""), host=addresses[0],
                    port=info.port or 0, tcp=props.get("tcp") == "1")
        change = "updated" if name in self.peers else "added"
        self.peers[name] = peer
        if self.on_change:
            self.on_change(change, peer)

    def hubs(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.role == "hub"]

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            if self._info is not None:
                # Awaiting the returned task is what actually sends the goodbye packets.
                await (await self._zc.async_unregister_service(self._info))
            await self._zc.async_close()
