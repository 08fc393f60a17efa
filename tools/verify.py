"""`jejak-verify`: the auditor's offline check of an exported bundle, trusting nothing but the bytes."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from ledger.bundle import MAX_BUNDLE_BYTES, Read, comparison_from, verify_bundle_from
from ledger.errors import CodedError
from ledger.failures import UsageError

from .lang import LANGUAGES, locale_lang
from .pagewords import Speaker
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
    p.add_argument("--json", action="store_true", help="print the report as JSON (codes and English messages)")
    p.add_argument("--lang", choices=LANGUAGES, default=None,
                   help="the report in Indonesian or English, in the web page's words (default: from the "
                        "locale, LC_ALL, LC_MESSAGES or LANG: Indonesian for id_*, else English)")
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


# Marks of a step that holds, one that does not, and a note: the page's.
HOLDS, FAILS, NOTE = "\u2714", "\u2718", "\u26a0"


def what_was_verified(report: BundleReport, say: Speaker) -> list[str]:
    """What an auditor reads after the verdict: what verified, and the hub key to compare out of band. A bundle
    that failed has no such line: "Verified: ..." under a FAILED verdict reads as a second verdict (the page
    says none either)."""
    devices = [d for d in report.devices if d.records]
    lines = []
    if report.ok and devices and report.checkpoints:
        first = min(d.first_time for d in devices if d.first_time is not None)
        last = max(d.last_time for d in devices if d.last_time is not None)
        cp = report.checkpoints[-1]
        lines.append(say("summary.what", records=say.count(sum(d.records for d in devices), "cli.n.record"),
                         devices=say.count(len(devices), "cli.n.device"),
                         first=_utc(first), last=_utc(last), size=cp.tree_size, time=_utc(cp.time)))
        # A record is in the hub's log before a checkpoint over it is signed: a later device time is a clock
        # that ran ahead, which no check refuses (the device's time is its own word, FORMAT.md §3).
        if last > cp.time:
            lines.append(say("summary.ahead", last=_utc(last), time=_utc(cp.time)))
    key, hub_id = report.hub_key.hex(), device_id_for(report.hub_key).hex()
    lines.append(say("summary.pinned" if report.pinned else "cli.compare", key=key, id=hub_id))
    return lines


class _Problems:
    """Says a problem as the page does, "CODE: [where] why", in the auditor's language. The checks word their
    problems in English; one the page has words for is said in those, another by what its code means, and the
    auditor is told once where its own words are."""

    def __init__(self, say: Speaker) -> None:
        self.say = say
        self.unsaid = False

    def why(self, problem: CodedError) -> str | None:
        said = self.say.again(problem.message, ("why.", "cli.why."))
        self.unsaid |= said is None
        return said

    def where(self, problem: CodedError) -> str:
        if problem.where is None:
            return ""
        said = self.say.again(problem.where, ("at.", "cli.at."))
        self.unsaid |= said is None
        return "" if said is None else f"[{said}] "

    def __call__(self, problem: CodedError) -> str:
        return f"{problem.code}: {self.where(problem)}{self.why(problem) or self.say.code(problem.code)}"

    def meaning(self, problem: CodedError, older: str | None = None) -> str:
        """The verdict's reason, as the page says it: what the code means, then where and why; a problem of the
        older bundle (`--against`) says so first, so that it is not taken for one of the bundle checked."""
        whose = "" if older is None else f"[{self.say('cli.older', path=older)}] "
        return f"{self.say.code(problem.code)} {whose}{self.where(problem)}{self.why(problem) or ''}".rstrip()


def _step(say: Speaker, holds: bool, sentence: str) -> str:
    return f"{HOLDS} {sentence}" if holds else f"{FAILS} {say('notso')} {sentence}"


def render(report: BundleReport, consistency: dict[str, Any] | None, say: Speaker) -> str:
    said = _Problems(say)
    lines = [_step(say, report.hub_log > 0, say("cli.hublog", id=device_id_for(report.hub_key).hex(),
                                                 records=say.count(report.hub_log, "cli.n.record"),
                                                 decisions=say.count(report.decisions, "cli.n.decision")))]
    for dev in report.devices:
        # How many records the range holds and how many of them verified: they differ when a record fails.
        verified = (say("log.verified", n=dev.records, first=dev.first_seq, last=dev.last_seq) if dev.records
                    else say("log.verified.none"))
        lines.append(_step(say, not dev.problems, say("log.records", device=dev.device, verified=verified,
                                                       records=say.count(dev.in_bundle, "cli.n.record"),
                                                       revoked=dev.revoked_from)))
        lines += [f"    {said(problem)}" for problem in dev.problems]
    for cp in report.checkpoints:
        lines.append(_step(say, True, say("cli.checkpoint", size=cp.tree_size, root=cp.root.hex()[:16],
                                          time=_utc(cp.time), hub=cp.authority[0] if cp.authority else None)))
    # Not problems (FORMAT.md §12.3, notes): what the checkpoints leave unshown, for the auditor to weigh.
    lines += [f"{NOTE} {say(f'note.{note.what}', size=note.size, largest=note.largest)}" for note in report.notes]
    for fork in report.forks:
        lines.append(_step(say, False, say("why.fork.found", device=fork.device_id.hex(), seq=fork.seq)))
    lines += [f"{FAILS} {said(problem)}" for problem in report.problems]
    # A step's problems past the first it lists (FORMAT.md §12.3): how many more, said once.
    lines += [f"{FAILS} {say(f'more.{step}', more=_grouped(n, say))}" for step, n in report.more.items()]
    if consistency is not None:
        lines.append(_step(say, True, say("against", **{"from": consistency["from"], "to": consistency["to"]})))
        # Not problems (FORMAT.md §12.4, notes): records the older bundle vouched for that the hub since revoked.
        for n in consistency["notes"]:
            lines.append(f"{NOTE} " + say("note.revoked", device=n["device"], revoked=n["revoked_from"],
                                          last=n["verified_to"], records=say.count(n["records"], "cli.n.record")))
    counts = ", ".join(say.count(n, f"cli.n.{noun}") for n, noun in (
        (sum(d.records for d in report.devices), "record"), (len(report.checkpoints), "checkpoint"),
        (report.receipts_checked, "receipt")))
    if report.ok:
        lines.append(f"{say('verified')}: {counts}")
    else:
        first = report.all_problems[0]
        lines.append(f"{verdict(say, first)}, {say.count(report.problem_count, 'cli.n.problem')}: {counts}")
        lines.append(said.meaning(first))
    lines += what_was_verified(report, say)
    if said.unsaid:
        lines.append(say("cli.english"))
    return "\n".join(lines)


def _grouped(n: int, say: Speaker) -> str:
    """A count with its thousands grouped as the page writes them (999,980; 999.980 in Indonesian)."""
    return f"{n:,}".replace(",", "." if say.lang == "id" else ",")


def verdict(say: Speaker, problem: CodedError) -> str:
    """'FAILED: CODE (exit code N)', as the page says a failed verdict."""
    return f"{say('failed')}: {problem.code} ({say('exit')} {problem.exit_code})"


def failed(say: Speaker, problem: CodedError, older: str | None = None) -> str:
    """A bundle the checks stopped on before any report: the verdict and its reason. `older` is the path given
    with --against when the problem is the older bundle's own."""
    said = _Problems(say)
    lines = [verdict(say, problem), said.meaning(problem, older)]
    if said.unsaid:
        lines.append(say("cli.english"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.lang = args.lang or locale_lang()
    # The page's marks (\u2714 \u2718 \u26a0) on a console whose encoding lacks them read as "?", not a crash.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")
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


def _file(path: Path, argument: str, say: Speaker) -> Read | None:
    """`_read` of the file an argument names ("bundle", "--against"), its failure a usage error that says which
    argument, what is wrong with it and the path, in the auditor's language."""
    what = say("cli.usage.older" if argument == "--against" else "cli.usage.bundle")
    try:
        return _read(path)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            message = say("cli.usage.missing", what=what, path=path)
        elif isinstance(exc, IsADirectoryError):
            message = say("cli.usage.directory", what=what, path=path)
        elif isinstance(exc, PermissionError):
            message = say("cli.usage.permission", what=what, path=path)
        else:
            message = say("cli.usage.unreadable", what=what, path=path, why=exc.strerror or type(exc).__name__)
        raise UsageError(message, where=argument, hint=say("cli.usage.hint.file")) from exc


def _hub_key(text: str | None, say: Speaker) -> bytes | None:
    """The pinned hub key: an Ed25519 public key, 32 bytes in 64 hex digits, as the page's hub key field takes."""
    if text is None:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise UsageError(say("cli.usage.hubkey", got=repr(text)), where="--hub-key", hint=say("cli.usage.hint.hubkey"))
    return key


def _older_fails(older: Read, key: bytes) -> bool:
    """Whether the older bundle fails on its own (FORMAT.md §12.4 steps 2 and 3): its schema, or its checks with
    the hub's key. Asked only once the comparison failed, so that a good pair is not read three times."""
    try:
        report = verify_bundle_from(older, hub_key=None)
    except LedgerError:  # not a bundle at all (§12.1)
        return True
    # Another hub's bundle is the comparison's problem (step 2), whatever it holds.
    return report.hub_key == key and not report.ok


def older_problem(problem: CodedError, path: str) -> dict[str, str]:
    """A problem of the older bundle in --json: its message and where say that it is the older bundle's, and the
    path given with --against, as the text does."""
    out = problem.to_dict()
    out["message"] = f"older bundle: {problem.message.removeprefix('bundle: ')}"
    out["where"] = f"older bundle (--against {path})" + (f": {problem.where}" if problem.where else "")
    return out


def _verdict(problem: dict[str, Any] | None, exit_code: int) -> dict[str, Any]:
    """The top of a --json report: the verdict's code (the first problem's, §12.3 order; null when all holds), the
    exit code it gives, and that problem itself. `problems` below lists only the problems of no one device (a
    device's are in its entry of `devices`), so its first entry need not be the verdict's: `problem` is."""
    return {"ok": problem is None, "code": None if problem is None else problem["code"], "exit_code": exit_code,
            "problem": problem}


def _check(args: argparse.Namespace) -> int:
    # Usage errors in the report's language; --json keeps to English, as its report does.
    say = Speaker("en" if args.json else args.lang)
    bundle = _file(args.bundle, "bundle", say)
    older = _file(args.against, "--against", say) if args.against else None
    hub_key = _hub_key(args.hub_key, say)
    consistency = None
    whose: str | None = None  # the --against path, when the problem is the older bundle's own
    try:
        if bundle is None:
            raise MalformedRecord(f"bundle: larger than {MAX_BUNDLE_BYTES} bytes")
        report = verify_bundle_from(bundle, hub_key=hub_key)
        # FORMAT.md §12.4 step 1: a newer bundle that does not verify is its own verdict.
        if args.against and report.ok:
            whose = str(args.against)
            if older is None:
                raise MalformedRecord(f"bundle: larger than {MAX_BUNDLE_BYTES} bytes")
            try:
                compared = comparison_from(older, bundle, hub_key=hub_key)
            except LedgerError:
                if not _older_fails(older, report.hub_key):
                    whose = None  # the comparison's own problem (§12.4 steps 2, 4, 5), which names both bundles
                raise
            whose = None
            consistency = {"from": compared.old.tree_size, "to": compared.new.tree_size,
                           "notes": [n.to_dict() for n in compared.revoked]}
    except LedgerError as exc:
        if args.json:
            problem = exc.to_dict() if whose is None else older_problem(exc, whose)
            print(json.dumps({**_verdict(problem, exc.exit_code), "problems": [problem]}, indent=2))
        else:
            print(failed(Speaker(args.lang), exc, whose))
        return exc.exit_code
    if args.json:
        first = report.all_problems[0].to_dict() if report.all_problems else None
        out = {**_verdict(first, report.exit_code), **report.to_json()}
        if consistency is not None:
            out["consistency"] = consistency
        print(json.dumps(out, indent=2))
    else:
        print(render(report, consistency, Speaker(args.lang)))
    return report.exit_code

if __name__ == "__main__":
    sys.exit(main())
