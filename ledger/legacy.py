"""Seed 1's scan vocabulary: its status words as scan events, its tag ids, and the body a scan becomes."""

from __future__ import annotations

import re
from typing import Any

from .bodies import CHECKPOINTS, SCAN_EVENTS, validate_body
from .errors import LedgerError

# Seed 1 logs two statuses ('makanan_keluar' at the kitchen, 'makanan_diterima' at the school). The others
# are the same words for the other steps of a container's day, so staff can use the page for all of them.
LEGACY_STATUS: dict[str, str] = {
    "makanan_dimasak": "cooked",
    "makanan_dikemas": "packed",
    "makanan_keluar": "departed",
    "makanan_tiba": "arrived",
    "makanan_diterima": "received",
    "makanan_disajikan": "served",
    "ompreng_kembali": "returned",
    "ompreng_rusak": "damaged",
    "ompreng_hilang": "lost",
}
# Seed 1's checkpoint for each status when the edge's own role does not say it better.
_CHECKPOINT_FOR = {"cooked": "kitchen", "packed": "kitchen", "departed": "kitchen_exit",
                   "arrived": "school_gate", "received": "school_gate", "served": "school_gate",
                   "returned": "return", "damaged": "return", "lost": "return"}
TAG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")
ALLOWED_KEYS = ("nfc_tag_id", "status_scan")
OPTIONAL_KEYS = ("staff",)  # the staff card of whoever scanned (a checkpoint with a staff allow-list needs it)


class LegacyInputError(LedgerError, ValueError):
    """Seed-1 input that Jejak refuses; `message` is what goes into seed 1's {"error": ...}."""

    code = "LEGACY_INPUT"
    coap = "4.00"
    http = 400


def scan_event(status: Any) -> str:
    """Map a seed-1 status (or a Jejak scan event name) to the scan event it means."""
    if not isinstance(status, str):
        raise LegacyInputError(f'"status_scan" harus teks / must be text, got {type(status).__name__}')
    if status in LEGACY_STATUS:
        return LEGACY_STATUS[status]
    if status in SCAN_EVENTS:
        return status
    raise LegacyInputError(f'"status_scan" tidak dikenal / unknown: expected one of '
                           f"{sorted(LEGACY_STATUS)} (or {list(SCAN_EVENTS)}), got {status[:60]!r}")


def check_tag(tag: Any, name: str = "nfc_tag_id") -> str:
    if not isinstance(tag, str):
        raise LegacyInputError(f'"{name}" harus teks / must be text, got {type(tag).__name__}')
    if not TAG_ID.fullmatch(tag):
        raise LegacyInputError(f'"{name}": expected 1 to 128 letters, digits or _ . : - (starting with a '
                               f"letter or digit), got {tag[:60]!r}")
    return tag


def parse_log_scan(data: Any) -> tuple[str, str, str | None]:
    """(tag, scan event, staff card or None) from a seed-1 `/api/log_scan` JSON value; LegacyInputError says what
    is wrong. Seed 1 sends the first two; `staff` is Jejak's, for a checkpoint that takes scans only from the
    staff cards on its allow-list."""
    if not isinstance(data, dict) or "nfc_tag_id" not in data or "status_scan" not in data:
        raise LegacyInputError('Data tidak lengkap. Butuh "nfc_tag_id" dan "status_scan".')
    extra = sorted(set(data) - set(ALLOWED_KEYS) - set(OPTIONAL_KEYS))
    if extra:
        raise LegacyInputError(f"unexpected keys {extra[:5]}; expected {list(ALLOWED_KEYS)} and optionally "
                               f"{list(OPTIONAL_KEYS)}")
    staff = data.get("staff")
    return (check_tag(data["nfc_tag_id"]), scan_event(data["status_scan"]),
            None if staff is None else check_tag(staff, "staff").lower())


def scan_body(*, tag: str, event: str, site: str, role: str | None, source: str,
              staff: str | None = None) -> dict[str, Any]:
    """The "scan" record body for one legacy scan at this edge."""
    checkpoint = role if role in CHECKPOINTS else _CHECKPOINT_FOR.get(event)
    if source == "checkin-page":
        checkpoint = "phone"
    body: dict[str, Any] = {"event": event, "site": site, "tags": [tag], "source": source}
    if checkpoint is not None:
        body["checkpoint"] = checkpoint
    if staff is not None:
        body["staff"] = staff
    validate_body("scan", body)
    return body
