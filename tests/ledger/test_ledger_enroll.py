"""The enrollment messages on disk read back to the values they carry, and each refuses what is not its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import (
    BadSignature,
    Ed25519Signer,
    LedgerError,
    MalformedRecord,
    VerificationError,
    cbor,
    device_id_for,
)
from ledger.cose import ALG_EDDSA, HDR_ALG, HDR_KID, sign1
from ledger.enroll import (
    ENROLL_AAD,
    GRANT_AAD,
    REVOCATIONS_AAD,
    make_enroll_request,
    make_grant,
    read_enroll_request,
    read_grant,
    read_revocations,
)
from tests.vectors import generate

VALID = Path(generate.__file__).resolve().parent / "valid"
SPEC = json.loads((VALID / "enrollment.json").read_text())
HUB_KEY = bytes.fromhex(SPEC["hub_public_key"])


def test_request_vector_reads_back_to_its_fields() -> None:
    raw = (VALID / SPEC["request"]["file"]).read_bytes()
    assert raw.hex() == SPEC["request"]["cose"]
    req = read_enroll_request(raw)
    want = SPEC["request"]
    assert (req.pubkey.hex(), req.site, req.role, req.name, req.time, req.hub.hex()) == (
        want["pubkey"], want["site"], want["role"], want["name"], want["time"], want["hub"])
    assert req.device_id.hex() == SPEC["grant"]["device_id"]


def test_grant_vector_verifies_with_the_hub_key_only() -> None:
    raw = (VALID / SPEC["grant"]["file"]).read_bytes()
    grant = read_grant(raw, HUB_KEY)
    want = SPEC["grant"]
    assert (grant.hub_id.hex(), grant.device_id.hex(), grant.request_digest.hex(), grant.status) == (
        want["hub_id"], want["device_id"], want["request_digest"], want["status"])
    with pytest.raises(BadSignature):
        read_grant(raw, Ed25519Signer.generate().public_key)


def test_revocations_vector_reads_back_to_its_points() -> None:
    raw = (VALID / SPEC["revocations"]["file"]).read_bytes()
    got = read_revocations(raw, HUB_KEY)
    assert got.time == SPEC["revocations"]["time"]
    assert {d.hex(): seq for d, seq in got.points.items()} == SPEC["revocations"]["points"]
    assert len(got.points) == 2


def test_one_message_never_passes_as_another() -> None:
    """Each message signs under its own AAD: a grant is not a revocation list, a request is not a grant."""
    grant = (VALID / SPEC["grant"]["file"]).read_bytes()
    request = (VALID / SPEC["request"]["file"]).read_bytes()
    with pytest.raises(LedgerError):
        read_revocations(grant, HUB_KEY)
    with pytest.raises(LedgerError):
        read_grant(request, HUB_KEY)


def test_a_request_signed_by_another_key_than_it_names_is_refused() -> None:
    honest, thief = Ed25519Signer.generate(), Ed25519Signer.generate()
    raw = make_enroll_request(honest, site="s", role="kitchen_exit", name="n", time=1, hub_id=b"\x00" * 16)
    parsed = cbor.decode(raw, tag=18)
    forged = cbor.encode([parsed.value[0], parsed.value[1], parsed.value[2], thief.sign(b"x")], tag=18)
    with pytest.raises(BadSignature):
        read_enroll_request(forged)
    with pytest.raises(MalformedRecord, match="expected \\[pubkey"):
        read_enroll_request(sign1(honest, headers={HDR_ALG: ALG_EDDSA}, unprotected={}, payload=cbor.encode([1]),
                                  external_aad=b"jejak/enroll/v1"))


def test_a_grant_or_list_naming_another_hub_is_refused() -> None:
    hub = Ed25519Signer.generate()
    request = make_enroll_request(Ed25519Signer.generate(), site="s", role="r", name="n", time=1, hub_id=b"h" * 16)
    assert read_grant(make_grant(hub, request, "pending"), hub.public_key).status == "pending"
    other_hub_list = sign1(hub, headers={HDR_ALG: ALG_EDDSA}, unprotected={HDR_KID: b"\x01" * 16},
                           payload=cbor.encode([b"\x01" * 16, 5, []]), external_aad=REVOCATIONS_AAD)
    with pytest.raises(VerificationError, match="another hub"):
        read_revocations(other_hub_list, hub.public_key)
    bad_entry = sign1(hub, headers={HDR_ALG: ALG_EDDSA}, unprotected={},
                      payload=cbor.encode([device_id_for(hub.public_key), 5, [[b"short", 1]]]), external_aad=REVOCATIONS_AAD)
    with pytest.raises(MalformedRecord, match="16-byte device id"):
        read_revocations(bad_entry, hub.public_key)


def _signed(signer: Ed25519Signer, item: list[object], aad: bytes) -> bytes:
    return sign1(signer, headers={HDR_ALG: ALG_EDDSA}, unprotected={}, payload=cbor.encode(item), external_aad=aad)


@pytest.mark.parametrize("entries", [
    [[b"\x02" * 16, 3], [b"\x01" * 16, 0]],  # not sorted by device id
    [[b"\x01" * 16, 0], [b"\x01" * 16, 9]],  # one device twice: the later point shadowed the earlier
    [[b"\x01" * 16, True]],  # a seq that is true, not an integer
])
def test_a_revocation_list_is_strict_about_its_entries(entries: list[object]) -> None:
    # Before the fix each read: unsorted and repeated entries (the last repeat's point won), true as seq 1.
    hub = Ed25519Signer.generate()
    raw = _signed(hub, [device_id_for(hub.public_key), 5, entries], REVOCATIONS_AAD)
    with pytest.raises(MalformedRecord, match="revocation list"):
        read_revocations(raw, hub.public_key)


def test_enrollment_messages_have_exact_types() -> None:
    # Before the fix: a time of true or -1, a hub id, device id or request digest of any length were read.
    hub, device = Ed25519Signer.generate(), Ed25519Signer.generate()
    hub_id = device_id_for(hub.public_key)
    for time, wanted_hub in ((True, hub_id), (-1, hub_id), (1, hub_id[:15])):
        raw = _signed(device, [device.public_key, "s", "r", "n", time, wanted_hub], ENROLL_AAD)
        with pytest.raises(MalformedRecord, match="enrollment request"):
            read_enroll_request(raw)
    for device_id, digest in ((device_id_for(device.public_key)[:15], bytes(32)), (bytes(16), bytes(31))):
        with pytest.raises(MalformedRecord, match="enrollment grant"):
            read_grant(_signed(hub, [hub_id, device_id, digest, "active"], GRANT_AAD), hub.public_key)
    with pytest.raises(MalformedRecord, match="revocation list"):
        read_revocations(_signed(hub, [hub_id, -1, []], REVOCATIONS_AAD), hub.public_key)
