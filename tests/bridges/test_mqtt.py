"""MQTT ingest through real Mosquitto brokers: the machine's broker on 127.0.0.1:1883 (a topic of this test
run only), and a broker of our own with a TLS listener, a test CA and per-device passwords."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import socket
import subprocess
import uuid

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from hub.bridges import MqttConfig
from tests.ports import free_tcp
from tests.wait import wait_for, wait_until

from .conftest import MARKET, close_hub, make_hub, unique_topic
from .test_hub_seed2 import payload, register


def seed2_publish(topic: str, body: dict, *, device_id: str, token: str | None, port: int = 1883,
                  tls_ca: str | None = None) -> None:
    """Publish as seed 2's device client does (client id = device id, token as password, QoS 1)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-{uuid.uuid4().hex[:6]}")
    if token:
        c.username_pw_set(username=device_id, password=token)
    if tls_ca:
        c.tls_set(ca_certs=tls_ca)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        info = c.publish(topic, json.dumps(body), qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


async def test_mqtt_publish_becomes_an_attested_record(hubenv):
    reg = await register(hubenv)
    before = hubenv.attest_length()
    await asyncio.to_thread(seed2_publish, hubenv.topic, payload(token=reg["token"]), device_id="DEV-001",
                            token=reg["token"])
    await wait_for(lambda: hubenv.attest_length() == before + 1)
    rec = hubenv.attested()[-1]
    body = rec.body
    assert reg["token"] not in json.dumps(body)
    assert rec.device_id == hubenv.hub.hub_id and body["kind"] == "price"
    assert body["path"] == f"mqtt:{hubenv.topic}"
    assert "127.0.0.1:1883" in body["sender"] and body["data"]["device_id"] == "DEV-001"
    assert body["data"]["prices"]["cabai-merah"] == 15000
    code, live = await hubenv.get("/api/public/commodity/price/live", params={"commodity": "bawang"})
    assert code == 200
    mine = [p for p in live["prices"] if p["market_id"] == MARKET]
    assert mine and mine[0]["trust"] == "attested" and mine[0]["source"] == f"attested:mqtt:{hubenv.topic}"


async def test_mqtt_payload_from_unregistered_or_bad_device_is_refused(hubenv):
    reg = await register(hubenv)
    before = hubenv.attest_length()
    path = f"mqtt:{hubenv.topic}"
    bad = [payload(device_id="DEV-UNKNOWN"), payload(market_id="PASAR-ENTAH"), {k: v for k, v in payload().items()
                                                                               if k != "device_id"},
           payload(token="wrong-token")]
    for n, body in enumerate(bad, start=1):
        await asyncio.to_thread(seed2_publish, hubenv.topic, body, device_id="DEV-001", token=reg["token"])
        await wait_for(lambda n=n: hubenv.bridges.refused[path] == n)
    # Not JSON at all: refused, and the subscription goes on.
    await asyncio.to_thread(seed2_publish, hubenv.topic, "not json", device_id="DEV-001", token=None)
    await wait_for(lambda: hubenv.bridges.refused[path] == len(bad) + 1)
    assert hubenv.attest_length() == before
    await asyncio.to_thread(seed2_publish, hubenv.topic, payload(token=reg["token"]), device_id="DEV-001",
                            token=reg["token"])
    await wait_for(lambda: hubenv.attest_length() == before + 1)


async def test_a_client_cannot_send_prices_as_another_device_on_the_shared_topic(hubenv, caplog):
    """MQTT does not tell the hub who published: a payload naming a registered device was taken as that device's
    from any client the broker let publish on the topic. It now needs that device's token (require_token, on
    unless a config turns it off)."""
    reg = await register(hubenv)
    await register(hubenv, device_id="DEV-002")
    path = f"mqtt:{hubenv.topic}"
    before = hubenv.attest_length()
    # Another device's client (or anyone, on an open broker) naming DEV-001: no token, then DEV-002's own token.
    await asyncio.to_thread(seed2_publish, hubenv.topic, payload(), device_id="DEV-002", token=None)
    await wait_for(lambda: hubenv.bridges.refused[path] == 1)
    other = await register(hubenv, device_id="DEV-003")
    await asyncio.to_thread(seed2_publish, hubenv.topic, payload(token=other["token"]), device_id="DEV-003",
                            token=None)
    await wait_for(lambda: hubenv.bridges.refused[path] == 2)
    assert hubenv.attest_length() == before
    # Said in the log once a minute with their count, the first with its fix: a line each filled the log.
    said = [r.getMessage() for r in caplog.records if "MQTT payloads" in r.getMessage()]
    assert len(said) == 1 and "UNAUTHORIZED" in said[0] and "device_topics" in said[0], said
    await asyncio.to_thread(seed2_publish, hubenv.topic, payload(token=reg["token"]), device_id="DEV-001",
                            token=None)
    await wait_for(lambda: hubenv.attest_length() == before + 1)
    assert hubenv.attested()[-1].body["data"]["device_id"] == "DEV-001"


async def test_a_device_topic_is_taken_as_that_devices_without_a_token(tmp_path):
    """With device_topics, a payload on <topic>/<device_id> is that device's (the broker's ACL lets only its user
    publish there), with no token in it, and may not name another device."""
    topic = unique_topic()
    env = await make_hub(tmp_path, mqtt=MqttConfig(enabled=True, topic=topic, clean_session=True, device_topics=True,
                                                   client_id=f"jejak-hub-test-{uuid.uuid4().hex[:8]}"), topic=topic)
    try:
        await register(env)
        await register(env, device_id="DEV-002")
        before = env.attest_length()
        await asyncio.to_thread(seed2_publish, f"{topic}/DEV-002", payload(), device_id="DEV-002", token=None)
        await wait_for(lambda: env.bridges.refused[f"mqtt:{topic}/DEV-002"] == 1)  # names DEV-001 on DEV-002's
        await asyncio.to_thread(seed2_publish, topic, payload(), device_id="DEV-002", token=None)
        await wait_for(lambda: env.bridges.refused[f"mqtt:{topic}"] == 1)  # the shared topic still wants a token
        no_name = {k: v for k, v in payload().items() if k != "device_id"}
        for body in (payload(), no_name):
            await asyncio.to_thread(seed2_publish, f"{topic}/DEV-001", body, device_id="DEV-001", token=None)
        await wait_for(lambda: env.attest_length() == before + 2)
        for rec in env.attested()[-2:]:
            assert rec.body["path"] == f"mqtt:{topic}/DEV-001" and rec.body["data"]["device_id"] == "DEV-001"
            assert "device named by its topic" in rec.body["sender"]
    finally:
        await close_hub(env)


# --- TLS and per-device credentials on a broker of our own ------------------------------------------------

def _write_tls(tmp) -> tuple[str, str, str]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jejak test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def tls_broker(tmp_path):
    """Mosquitto with only a TLS listener, a password per user (the hub's and one device's) and an ACL."""
    ca, cert, key = _write_tls(tmp_path)
    passwd = tmp_path / "passwd"
    users = {"jejak-hub": "hub-password", "DEV-TLS": "device-password"}
    for n, (user, password) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd", "-b", *([] if n else ["-c"]), str(passwd), user, password],
                       check=True, capture_output=True, timeout=20)
    acl = tmp_path / "acl"
    # Each device user may publish on the shared topic and on its own (pasar/data/<its user name>) only.
    acl.write_text("user jejak-hub\ntopic read pasar/data\ntopic read pasar/data/+\n\n"
                   "pattern write pasar/data\npattern write pasar/data/%u\n")
    port = free_tcp()
    conf = tmp_path / "mosquitto.conf"
    # As root, mosquitto would drop to its own user, who cannot read pytest's private tmp directory.
    conf.write_text(f"user {getpass.getuser()}\nper_listener_settings false\nallow_anonymous false\npassword_file {passwd}\n"
                    f"acl_file {acl}\npersistence false\nlog_dest stderr\n"
                    f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    log = open(tmp_path / "mosquitto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(["mosquitto", "-c", str(conf), "-v"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _accepts(port), what="mosquitto to listen")
        yield {"port": port, "ca": ca, "users": users}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


async def test_mqtt_over_tls_with_per_device_credentials(tmp_path, tls_broker):
    cfg = MqttConfig(enabled=True, port=tls_broker["port"], topic="pasar/data", tls=True, tls_ca=tls_broker["ca"],
                     username="jejak-hub", password=tls_broker["users"]["jejak-hub"], clean_session=True,
                     device_topics=True)
    env = await make_hub(tmp_path, mqtt=cfg, topic="pasar/data")
    try:
        reg = await register(env, device_id="DEV-TLS")
        await register(env, device_id="DEV-OTHER")
        before = env.attest_length()

        def device_publish(password: str) -> int:
            """Connect as the device with its own broker password over TLS; publish, as another device on that
            one's topic (the broker's ACL drops it) and then on its own, with no token; return CONNACK code."""
            result: list[int] = []
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="DEV-TLS")
            c.username_pw_set("DEV-TLS", password)
            c.tls_set(ca_certs=tls_broker["ca"])
            c.on_connect = lambda cl, u, f, rc, p=None: result.append(rc.value)
            c.connect("127.0.0.1", tls_broker["port"], keepalive=30)
            c.loop_start()
            try:
                wait_until(lambda: result, what="the broker's CONNACK")
                if result[0] == 0:
                    c.publish("pasar/data/DEV-OTHER", json.dumps(payload(device_id="DEV-OTHER")),
                              qos=1).wait_for_publish(10)
                    c.publish("pasar/data/DEV-TLS", json.dumps(payload(device_id="DEV-TLS")), qos=1).wait_for_publish(10)
            finally:
                c.disconnect()
                c.loop_stop()
            return result[0]

        assert await asyncio.to_thread(device_publish, "wrong-password") != 0
        assert await asyncio.to_thread(device_publish, tls_broker["users"]["DEV-TLS"]) == 0
        await wait_for(lambda: env.attest_length() == before + 1)
        rec = env.attested()[-1]
        assert rec.body["path"] == "mqtt:pasar/data/DEV-TLS" and rec.body["data"]["device_id"] == "DEV-TLS"
        assert env.attest_length() == before + 1 and not env.bridges.refused  # DEV-OTHER's never reached it
        assert reg["token"] not in json.dumps(rec.body)
        assert env.bridges.mqtt.stats["connected"] is True
    finally:
        await close_hub(env)


async def test_hub_refuses_to_start_against_a_broker_that_rejects_it(tmp_path, tls_broker):
    cfg = MqttConfig(enabled=True, port=tls_broker["port"], topic="pasar/data", tls=True, tls_ca=tls_broker["ca"],
                     username="jejak-hub", password="not-the-password", clean_session=True)
    with pytest.raises(ConnectionError, match="did not accept"):
        await make_hub(tmp_path, mqtt=cfg, topic="pasar/data")
