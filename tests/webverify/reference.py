"""The Python verifier's answer for a tamper case: `tools.verify.main` run in-process with --json."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools import verify

from .tamper import Case

EXIT = {"MALFORMED": 11, "VERIFICATION_FAILED": 12, "INVALID_SIGNATURE": 13, "BROKEN_CHAIN": 14, "FORK_DETECTED": 15,
        "INVALID_PROOF": 16, "INVALID_CHECKPOINT": 17, "UNKNOWN_KEY": 18, "REVOKED_KEY": 19}


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    exit: int
    code: str | None
    message: str
    codes: tuple[str, ...] = ()  # the code of every problem listed, sorted (the report groups them by device)
    notes: tuple[tuple[str, int], ...] | None = None  # (note, size) of each note; None when no report was printed


def python_verdict(case: Case, workdir: Path | None = None) -> Verdict:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "bundle.jejak"
        path.write_bytes(case.bundle)
        argv = ["--json", str(path)]
        if case.against is not None:
            older = Path(tmp) / "older.jejak"
            older.write_bytes(case.against)
            argv += ["--against", str(older)]
        if case.hub_key is not None:
            argv += ["--hub-key", case.hub_key.hex()]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = verify.main(argv)
    try:
        report = json.loads(out.getvalue())
    except ValueError:
        return Verdict(exit=code, code=None, message=out.getvalue()[:200])
    # The report groups problems by device; the verdict is the first in the order of the checks, whose exit
    # code names it (each code has its own, FORMAT.md §13).
    problems = report.get("problems", []) + [p for d in report.get("devices", []) for p in d["problems"]]
    codes = [p for p in problems if EXIT.get(p["code"]) == code]
    first = codes[0] if codes else {"code": None, "message": ""}
    notes = tuple((n["note"], n["size"]) for n in report["notes"]) if "notes" in report else None
    return Verdict(exit=code, code=first["code"], message=first.get("message", ""),
                   codes=tuple(sorted(p["code"] for p in problems)), notes=notes)
