"""How `jejak` and `jejak-verify` stop on a failure: one line on stderr, the class's exit code (ledger.failures)."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import traceback

from ledger.failures import NotInstalled, failure

# The modules of each extra (setup.cfg), by the name an import of them fails with.
EXTRA_OF = {"numpy": "hub", "scipy": "hub", "prometheus_client": "hub", "qrcode": "hub", "PIL": "hub",
            "paho": "mqtt", "psycopg": "pg", "nfc": "hw", "board": "hw", "busio": "hw", "digitalio": "hw",
            "adafruit_pn532": "hw", "adafruit_bme280": "hw", "adafruit_dht": "hw", "adafruit_sht31d": "hw",
            "serial": "hw", "nacl": "fast"}


def not_installed(exc: BaseException) -> BaseException:
    """`exc` as NOT_INSTALLED when it is the import of a module of an extra this machine did not install (the hub
    run on an edge's install), which names the extra to install; else `exc` as it is."""
    name = (exc.name or "").partition(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
    extra = EXTRA_OF.get(name)
    if extra is None:
        return exc
    return NotInstalled(f"this needs {name}, which is in Jejak's [{extra}] extra and not installed here",
                        hint=f"pip install 'jejak[{extra}]' into the same environment (docs/DEPLOY.md, what you "
                             "install)")


def stop(exc: BaseException, *, verbose: bool) -> int:
    """Write `exc` as one JSON line with its code and hint (and its traceback first with -v); return the exit code."""
    if isinstance(exc, BrokenPipeError):
        # The reader of stdout is gone (`| head`): point stdout at /dev/null, or the interpreter's last flush
        # fails again on the way out and prints a traceback after our line.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code, text = failure(not_installed(exc), verbose=False)
    if verbose:  # the traceback of what happened, before the line that says it
        text = "".join(traceback.format_exception(exc)) + text
    print(text, file=sys.stderr)
    return code


def version() -> str:
    """The installed release of Jejak, for `--version`."""
    try:
        return importlib.metadata.version("jejak")
    except importlib.metadata.PackageNotFoundError:  # a source checkout that was never installed
        return "unknown (not installed)"
