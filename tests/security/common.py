"""Helpers for the security tests: a hub with OSCORE required, edges enrolled with its QR code."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import cbor2

from edge import keys as keyfile
from edge.config import CoapConfig, EdgeConfig, HubConfig, SecurityConfig, SimConfig, SyncConfig
from edge.daemon import EdgeDaemon
from edge.security import enroll
from hub.app import RunningHub, start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig as HubSettings
from hub.config import SecurityConfig as HubSecurityConfig
from tools.cli import enroll_uri

NOW = 1_763_900_000


@contextlib.asynccontextmanager
async def secure_hub(data: Path, *, oscore: bool = True, auto_approve: bool = True,
                     **settings: Any) -> AsyncIterator[RunningHub]:
    settings.setdefault("bridges", BridgeConfig(enabled=False))
    settings.setdefault("coap_port", 0)
    settings.setdefault("http_port", 0)
    config = HubSettings(data_dir=str(data), mdns=False, auto_approve=auto_approve,
                         checkpoint_interval=3600, security=HubSecurityConfig(oscore=oscore), **settings)
    running = await start_hub(config, clock=lambda: NOW)
    try:
        yield running
    finally:
        await running.close()


def qr_text(running: RunningHub) -> str:
    return enroll_uri(running.http_url, running.hub.signer.public_key)


async def enroll_edge(data: Path, running: RunningHub, *, site: str = "sppg-01") -> keyfile.DeviceKey:
    data.mkdir(parents=True, exist_ok=True)
    key = keyfile.load_or_create(data / "device.key")
    await asyncio.to_thread(enroll, qr_text(running), key, data, site=site, role="kitchen_exit", name=site)
    return key


def edge_config(data: Path, *, hub: str = "", oscore: bool = True, peers: tuple[str, ...] = (),
                **security: object) -> EdgeConfig:
    return EdgeConfig(data_dir=str(data), coap=CoapConfig(host="127.0.0.1", port=0),
                      sim=SimConfig(tap_interval_ms=0), sensors=(), site="sppg-01",
                      sync=SyncConfig(mdns=False, interval_s=0.2, peers=peers), hub=HubConfig(address=hub),
                      security=SecurityConfig(oscore=oscore, **security))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def edge(config: EdgeConfig) -> AsyncIterator[EdgeDaemon]:
    daemon = EdgeDaemon(config, clock=lambda: NOW)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.close()


async def coap(ctx: aiocoap.Context, code: aiocoap.Code, uri: str, payload: bytes = b"") -> tuple[str, dict]:
    """(CoAP code name, CBOR body) of one request."""
    msg = aiocoap.Message(code=code, uri=uri, payload=payload, content_format=60 if payload else None)
    response = await asyncio.wait_for(ctx.request(msg).response, 10)
    try:
        body = cbor2.loads(response.payload) if response.payload else {}
    except Exception:
        body = {"raw": response.payload}
    return response.code.name, body if isinstance(body, dict) else {"value": body}
