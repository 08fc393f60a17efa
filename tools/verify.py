"""`jejak-verify`: the auditor's offline check of an exported bundle, trusting nothing but the bytes."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coap_server.wording import count
from ledger import (
    BadCheckpoint,
    BadProof,
    BadSignature,
    BrokenChain,
    BundleReport,
    ForkDetected,
    LedgerError,
    MalformedRecord,
    RevokedKey,
    UnknownKey,
    device_id_for,
)
from ledger.bundle import MAX_BUNDLE_BYTES, Read, compare_bundles_from, verify_bundle_from
from ledger.failures import UsageError

from .stop import stop, version

EXIT_OK = 0
EXIT_USAGE = 2
# What a bundle check can fail with; each class declares its own exit code (docs/ERRORS.md).
REPORTED: tuple[tuple[type[LedgerError], str], ...] = (
    (MalformedRecord, "malformed"), (BadSignature, "bad signature"), (BrokenChain, "broken chain"),
    (ForkDetected, "fork"), (BadProof, "bad proof"), (BadCheckpoint, "bad checkpoint"),
    (UnknownKey, "unknown key"), (RevokedKey, "revoked key"),
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jejak-verify",
        description="Verify a Jejak audit bundle offline: device chains, signatures, checkpoints, receipts.",
        epilog=f"Exit codes: {EXIT_OK} all holds; {EXIT_USAGE} usage or unreadable file; "
               + "; ".join(f"{error.exit_code} {what}" for error, what in REPORTED) + ".",
    )
    p.add_argument("bundle", type=Path, help="bundle file (.jejak) exported by a hub or `jejak export`")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show the traceback of an unexpected failure")
    p.add_argument("--version", action="version", version=f"jejak-verify {version()}")
    p.add_argument("--hub-key", metavar="HEX", help="pin the hub's Ed25519 public key (hex) instead of the "
                                                     "one the bundle names")
    p.add_argument("--against", type=Path, metavar="OLDER",
                   help="also prove that this bundle's log extends an older bundle's log")
    return p


def _utc(seconds: int) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):  # a device time past year 9999 is still signed data
        return f"{seconds} (Unix seconds)"


def what_was_verified(report: BundleReport) -> list[str]:
    """What an auditor reads after the verdict: what verified, and the hub key to compare out of band."""
    devices = [d for d in report.devices if d.records]
    lines = []
    if devices and report.checkpoints:
        first = min(d.first_time for d in devices if d.first_time is not None)
        last = max(d.last_time for d in devices if d.last_time is not None)
        cp = report.checkpoints[-1]
        lines.append(f"verified {count(sum(d.records for d in devices), 'record')} of "
                     f"{count(len(devices), 'device')}, device time {_utc(first)} to {_utc(last)}, "
                     f"under checkpoint size {cp.tree_size} of {_utc(cp.time)}")
        # A record is in the hub's log before a checkpoint over it is signed: a later device time is a clock
        # that ran ahead, which no check refuses (the device's time is its own word, FORMAT.md §3).
        if last > cp.time:
            lines.append(f"device time runs to {_utc(last)}, after the latest checkpoint ({_utc(cp.time)}): a device's "
                         "clock ran ahead of the hub's; device times are the devices' own word")
    hub = f"hub key {report.hub_key.hex()} (hub id {device_id_for(report.hub_key).hex()}): "
    lines.append(hub + ("pinned with --hub-key" if report.pinned else
                        "compare it with the key the hub's operator published, or pin it with --hub-key"))
    return lines


def render(report: BundleReport, consistency: dict[str, Any] | None) -> str:
    lines = [f"{'ok  ' if report.hub_log else 'FAIL'} hub log: {count(report.hub_log, 'record')}, "
             f"{count(report.decisions, 'decision')}"]
    for dev in report.devices:
        mark = "ok  " if not dev.problems else "FAIL"
        span = f"seq {dev.first_seq}..{dev.last_seq}" if dev.records else "no verified records"
        revoked = f", revoked from seq {dev.revoked_from}" if dev.revoked_from is not None else ""
        lines.append(f"{mark} device {dev.device}: {count(dev.records, 'record')} ({span}), "
                     f"{count(dev.receipts, 'receipt')}"
                     f"{revoked}")
        for problem in dev.problems:
            lines.append(f"       {problem}")
    for cp in report.checkpoints:
        lines.append(f"ok   checkpoint size {cp.tree_size} root {cp.root.hex()[:16]}... time {cp.time}")
    # Not problems (FORMAT.md §12.3, notes): what the checkpoints leave unshown, for the auditor to weigh.
    lines += [f"NOTE {note.message}" for note in report.notes]
    for fork in report.forks:
        lines.append(f"FORK device {fork.device_id.hex()} at seq {fork.seq}: evidence verifies")
    for problem in report.problems:
        lines.append(f"FAIL {problem}")
    if consistency is not None:
        lines.append(f"ok   log grew consistently from size {consistency['from']} to {consistency['to']}")
    verdict = "VERIFIED" if report.ok else f"FAILED ({len(report.all_problems)} problems)"
    lines.append(f"{verdict}: {count(sum(d.records for d in report.devices), 'record')}, "
                 f"{count(len(report.checkpoints), 'checkpoint')}, {count(report.receipts_checked, 'receipt')}")
    lines += what_was_verified(report)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _check(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line with a code and a hint (docs/ERRORS.md), `| head` included
        return stop(exc, verbose=args.verbose)


# The verifier takes a bundle in pieces of this size and holds none of them for long: memory stays flat
# however large the bundle (BENCHMARKS.md, "jejak-verify").
CHUNK = 1 << 16


def _read(path: Path) -> Read | None:
    """A reader of the file's bytes in pieces from a byte on, each time it is called, or None for a file larger
    than any bundle (FORMAT.md §12): it is refused as MALFORMED without being read."""
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        return None
    path.open("rb").close()  # unreadable: a usage error now, not halfway through the check

    def chunks(start: int) -> Iterator[bytes]:
        with path.open("rb") as f:
            f.seek(start)
            while chunk := f.read(CHUNK):
                yield chunk
    return chunks


def _check(args: argparse.Namespace) -> int:
    try:
        bundle = _read(args.bundle)
        older = _read(args.against) if args.against else None
        hub_key = bytes.fromhex(args.hub_key) if args.hub_key else None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the arguments: {exc}",
                         hint="give a bundle file that exists and is readable, and --hub-key as hex") from exc
    consistency = None
    try:
        if bundle is None:
            raise MalformedRecord(f"bundle: larger than {MAX_BUNDLE_BYTES} bytes")
        report = verify_bundle_from(bundle, hub_key=hub_key)
        # FORMAT.md §12.4 step 1: a newer bundle that does not verify is its own verdict.
        if args.against and report.ok:
            if older is None:
                raise MalformedRecord(f"older bundle: larger than {MAX_BUNDLE_BYTES} bytes")
            old, new = compare_bundles_from(older, bundle, hub_key=hub_key)
            consistency = {"from": old.tree_size, "to": new.tree_size}
    except LedgerError as exc:
        if args.json:
            print(json.dumps({"ok": False, "problems": [exc.to_dict()]}, indent=2))
        else:
            print(f"FAIL {exc}")
        return exc.exit_code
    if args.json:
        out = report.to_json()
        if consistency is not None:
            out["consistency"] = consistency
        print(json.dumps(out, indent=2))
    else:
        print(render(report, consistency))
    return report.exit_code

if __name__ == "__main__":
    sys.exit(main())
