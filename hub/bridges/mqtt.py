"""The hub's MQTT subscription to seed-2 devices' topic (`pasar/data`), with TLS and its own credentials."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import MqttConfig

log = logging.getLogger("jejak.hub.bridges.mqtt")
Handler = Callable[[str, bytes], None]


class MqttBridge:
    """Subscribes with paho's network thread; `handle(topic, payload)` runs on that thread, so a QoS 1
    message is acknowledged to the broker only after the handler returned (after the hub stored it)."""

    def __init__(self, config: MqttConfig, handle: Handler, *, client_id: str) -> None:
        self.config = config
        self.handle = handle
        self.stats: dict[str, Any] = {"connected": False, "messages": 0, "handler_errors": 0,
                                      "last_connect_rc": None}
        self._subscribed: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id or client_id,
                        protocol=mqtt.MQTTv311, clean_session=config.clean_session)
        if config.username:
            c.username_pw_set(config.username, config.password or None)
        if config.tls:
            c.tls_set(ca_certs=config.tls_ca or None, certfile=config.tls_cert or None,
                      keyfile=config.tls_key or None, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            c.tls_insecure_set(config.tls_insecure)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client = c

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and wait until the broker confirmed the subscription."""
        self._loop = asyncio.get_running_loop()
        self._subscribed = self._loop.create_future()
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        self.client.loop_start()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._subscribed)
        except TimeoutError:
            self.close()
            raise ConnectionError(f"MQTT broker {self.config.host}:{self.config.port} did not accept the "
                                  f"subscription to {self.topics} within {timeout} s "
                                  f"(last connect result {self.stats['last_connect_rc']})") from None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _resolve(self, error: Exception | None) -> None:
        fut, loop = self._subscribed, self._loop
        if fut is None or loop is None or loop.is_closed():
            return

        def done() -> None:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)
        loop.call_soon_threadsafe(done)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        self.stats["last_connect_rc"] = str(rc)
        if rc.is_failure:
            log.warning("MQTT connect to %s:%s refused: %s", self.config.host, self.config.port, rc)
            return
        self.stats["connected"] = True
        client.subscribe([(topic, self.config.qos) for topic in self.topics])

    @property
    def topics(self) -> list[str]:
        """The shared topic, and each device's own under it (`device_topics`)."""
        return [self.config.topic, *([f"{self.config.topic}/+"] if self.config.device_topics else [])]

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any = None) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        self._resolve(ConnectionError(f"subscription to {self.topics} refused: {failed}") if failed else None)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        self.stats["connected"] = False

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.stats["messages"] += 1
        try:
            self.handle(message.topic, bytes(message.payload))
        except Exception:  # a bad message must never stop the subscription
            self.stats["handler_errors"] += 1
            log.exception("MQTT message on %s not handled", message.topic)
