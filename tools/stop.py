"""How `jejak` and `jejak-verify` stop on a failure: one line on stderr, the class's exit code (ledger.failures)."""

from __future__ import annotations

import importlib.metadata
import os
import sys

from ledger.failures import failure


def stop(exc: BaseException, *, verbose: bool) -> int:
    """Write `exc` as one JSON line with its code and hint (and its traceback first with -v); return the exit code."""
    if isinstance(exc, BrokenPipeError):
        # The reader of stdout is gone (`| head`): point stdout at /dev/null, or the interpreter's last flush
        # fails again on the way out and prints a traceback after our line.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code, text = failure(exc, verbose=verbose)
    print(text, file=sys.stderr)
    return code


def version() -> str:
    """The installed release of Jejak, for `--version`."""
    try:
        return importlib.metadata.version("jejak")
    except importlib.metadata.PackageNotFoundError:  # a source checkout that was never installed
        return "unknown (not installed)"
