"""Bridges for the clients people already have: seed 1's gateways, seed 2's market devices (HTTP and MQTT).

Data that arrives unsigned is never stored as if a device had signed it: the hub signs an "attest" record
in its own log saying what it received, where (path), when (received_at) and from whom (sender), and the
analytics, the public API and exports carry it marked as attested.

hub.app.start_hub builds them from the hub config's [bridges] table (`enabled = false` leaves them out)::

    bridges = Bridges(hub, config.bridges, views=views, state_dir=...)
    await start_bridges(bridges)                       # attestation log, listener, MQTT if enabled
    BridgeRoutes(bridges, auth=auth).register(app)
    ...
    stop_bridges(bridges)
"""

from __future__ import annotations

import asyncio
import logging

from coap_server.limits import Refusals

from .attest import Attestation, Attestor
from .config import BridgeConfig, MqttConfig
from .feed import ATTESTED, derive, trust_of
from .mqtt import MqttBridge
from .payloads import BridgeInputError
from .routes import BridgeRoutes
from .service import Bridges

log = logging.getLogger("jejak.hub.bridges")


def mqtt_handler(bridges: Bridges) -> MqttBridge:
    """The MQTT subscription that turns each `pasar/data` payload into an attest record."""
    cfg = bridges.config.mqtt
    # Logged at most once a minute with their count: any client the broker lets publish may send refused payloads
    # as fast as it likes, and a line each filled the hub's log (a seed 2 fleet that sends no token, every price).
    refusals = Refusals("MQTT payloads", log=log)

    def handle(topic: str, payload: bytes) -> None:
        path = f"mqtt:{topic}"
        # MQTT 3.1.1 does not tell a subscriber who published: the broker authenticated the publisher (per-device
        # credentials); on a device's own topic its ACL bound the topic to the device, on the shared one the
        # payload names the device and carries its token.
        own = topic[len(cfg.topic) + 1:] if topic.startswith(f"{cfg.topic}/") else None
        try:
            bridges.ingest_market(payload, path=path, device=None, topic_device=own,
                                  sender=f"broker {cfg.host}:{cfg.port} topic {topic}, device named by "
                                         f"{'its topic' if own is not None else 'the payload'}")
        except BridgeInputError as exc:
            bridges.refused[path] += 1
            refusals.refuse(f"topic {topic}", f"{exc.code}: {exc.message}" + (f"; fix: {exc.hint}" if exc.hint else ""))

    return MqttBridge(cfg, handle, client_id=f"jejak-hub-{bridges.hub.hub_id.hex()[:12]}")


async def start_bridges(bridges: Bridges) -> None:
    await asyncio.to_thread(bridges.start)
    if bridges.config.mqtt.enabled:
        client = mqtt_handler(bridges)
        await client.start()
        bridges.mqtt = client


def stop_bridges(bridges: Bridges) -> None:
    if bridges.mqtt is not None:
        bridges.mqtt.close()
        bridges.mqtt = None


__all__ = ["ATTESTED", "Attestation", "Attestor", "BridgeConfig", "BridgeInputError", "BridgeRoutes", "Bridges",
           "MqttBridge", "MqttConfig", "derive", "mqtt_handler", "start_bridges", "stop_bridges", "trust_of"]
