"""Exports carry attested data as what it is: "attest" records in the hub's own log, signed by the hub key
named in the bundle, beside device logs signed by the devices; `ledger.verify_bundle` checks both."""

from __future__ import annotations

from datetime import UTC, datetime

from ledger import decode_bundle, decode_record, device_id_for, verify_bundle

from .conftest import OPERATOR, signed_price_device
from .test_hub_seed2 import bearer, payload, register


async def test_export_tells_attested_from_device_signed_records(hubenv):
    device_id, signed = signed_price_device(hubenv, days=3)
    reg = await register(hubenv)
    code, ingested = await hubenv.post("/ingest", json=payload(), headers=bearer(reg["token"]))
    assert code == 200
    scan = {"nfc_tag_id": "NFC_TAG_ALPHA", "timestamp": datetime.now(UTC).replace(tzinfo=None).isoformat(),
            "status_scan": "makanan_keluar", "gateway_id": "GW-1"}
    code, synced = await hubenv.post("/api/sync_gateway_data", json=[scan])
    assert code == 201

    async with hubenv.session.get(hubenv.url + "/api/export", headers={"Authorization": f"Bearer {OPERATOR}"}) as resp:
        assert resp.status == 200
        data = await resp.read()
    report = verify_bundle(data)
    assert report.ok, report.to_json()
    assert report.receipts_checked > 0

    bundle = decode_bundle(data)
    logs = {log.device_id: log for log in bundle.logs}
    # The attestations are in the hub key's own log, with its decisions (approvals): never among device logs.
    assert device_id_for(bundle.hub_key) == hubenv.hub.hub_id and hubenv.hub.hub_id not in logs
    hub_records = [decode_record(r) for r in bundle.hub_log]
    assert {r.kind for r in hub_records} == {"key", "attest", "authority"}
    attested_ids = {r.id.hex() for r in hub_records if r.kind == "attest"}
    assert ingested["record"] in attested_ids and set(synced["records"]) <= attested_ids
    by_path = {r.body["path"] for r in hub_records if r.kind == "attest"}
    assert by_path == {"http:/ingest", "http:/api/sync_gateway_data"}

    device_records = [decode_record(r) for r in logs[device_id].records]
    assert [r.kind for r in device_records] == ["key", "price", "price", "price"]
    assert [r.id for r in device_records] == [r.id for r in signed]
    # No device log holds an attest record, and the hub's log holds no observation as if signed by it.
    for log in logs.values():
        assert "attest" not in {decode_record(r).kind for r in log.records}
    reports = {d.device: d for d in report.devices}
    assert report.hub_log == len(hub_records) and not reports[device_id.hex()].problems


async def test_tampered_attestation_fails_verification(hubenv):
    reg = await register(hubenv)
    code, _ = await hubenv.post("/ingest", json=payload(), headers=bearer(reg["token"]))
    assert code == 200
    async with hubenv.session.get(hubenv.url + "/api/export", headers={"Authorization": f"Bearer {OPERATOR}"}) as resp:
        data = await resp.read()
    # Change the attested price inside the attest record (CBOR 15000 -> 16000, same length): the hub's
    # signature over it no longer holds.
    raw = decode_bundle(data).hub_log[-1]
    assert decode_record(raw).kind == "attest" and b"\x19\x3a\x98" in raw
    tampered = data.replace(raw, raw.replace(b"\x19\x3a\x98", b"\x19\x3e\x80", 1))
    assert tampered != data and len(tampered) == len(data)
    report = verify_bundle(tampered)
    assert not report.ok
    problems = report.all_problems
    assert problems and hubenv.hub.hub_id.hex() in (problems[0].where or "")
