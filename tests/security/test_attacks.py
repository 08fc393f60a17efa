"""Attacks from a separate process in the same network namespace (`ip netns`): each is refused with a clear
code and reported, and nothing the attacker sent is stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report():
    ns = f"jejak-sec-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "lo", "multicast", "on"],
                    ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "tests.security.scenario"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_spoofed_mdns_hub_with_another_id_is_not_a_target(report):
    assert report["edge_security"]["refused"]["UNTRUSTED_HUB"] >= 1
    assert report["other_hub_saw"] == []  # the edge never sent it anything


def test_fake_hub_claiming_the_pinned_id_is_not_a_target_beside_the_configured_hub(report):
    # An announcement proves nothing (SECURITY.md): with [hub] address set, the edge syncs with that hub alone,
    # so a fake claiming the pinned id is sent nothing (were it tried, it would see only OSCORE ciphertext).
    assert report["fake_hub_saw"] == []
    assert all(m["oscore"] and m["uri_path"] == [] for m in report["fake_hub_saw"])
    (real,) = report["edge_targets"]
    assert real["last_ok"] is not None and real["pushed"] == 2


def test_fake_hub_checkpoint_refused_real_one_accepted(report):
    assert report["fake_checkpoint"] == "UNTRUSTED_HUB"
    assert report["real_checkpoint"] == 2 + report["hub_own_log"]


def test_replayed_oscore_request_refused_also_after_restart(report):
    first, duplicate, restamped = report["replay"]
    assert first["code"] == "2.04 Changed" and first["oscore"]  # the original, answered protected
    assert duplicate == first  # CoAP deduplication: the cached answer, not a second execution
    assert (restamped["code"], restamped["payload"]) == ("4.01 Unauthorized", "Replay detected")
    assert [r["code"] for r in report["replay_after_restart"]] == ["4.01 Unauthorized"] * 2


def test_stolen_qr_without_device_key_cannot_enroll(report):
    (attempt,) = report["forged_enroll"]
    assert attempt["status"] == 422 and attempt["body"]["error"]["code"] == "INVALID_SIGNATURE"
    assert report["victim_enrolled"] is False and report["victim_context"] is False


def test_revoked_device_records_after_the_point_refused_by_edge(report):
    result = report["revoked"]["result"]
    assert result["accepted"] == 2 and result["problem"].startswith("REVOKED_KEY")
    assert report["revoked"]["stored"] == 2
