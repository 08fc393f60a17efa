"""`jejak markets`: import price history (the food agency's export, PIHPS tables) into a hub, or check a file
locally first.

Exit codes: 0 imported (refused rows are listed, not fatal); 1 the file or the hub refused the import;
2 usage."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.errors import CodedError
from ledger.failures import Unreachable, failure

from .hubclient import HUB_URL_HELP, bearer_token, default_hub_url

IMPORT_ROUTE = "/api/markets/import"


def _progress(rows: int) -> None:
    print(f"  {rows:,} rows read", file=sys.stderr, flush=True)


def _import_local(args: argparse.Namespace) -> dict[str, Any]:
    from hub.markets.importer import ImportDefaults, read_import
    from hub.markets.model import day_of
    from hub.markets.service import MarketConfig, MarketService

    t0 = time.perf_counter()
    rows = read_import(args.file, ImportDefaults(market=args.market or "", region=args.region or "",
                                                 reporter=args.reporter or "", source=args.source),
                       progress=None if args.quiet else _progress,
                       latest_day=day_of(int(time.time()), MarketConfig().tz_offset_s))
    t_read = time.perf_counter() - t0
    report = MarketService().import_rows(rows, progress=None if args.quiet else _progress)
    elapsed = time.perf_counter() - t0
    return {**report, "seconds": round(elapsed, 2), "read_seconds": round(t_read, 2),
            "rows_per_s": round(rows.read / elapsed) if elapsed else None, "where": "local check, nothing stored"}


def _import_hub(args: argparse.Namespace) -> dict[str, Any]:
    query = {k: v for k, v in (("market", args.market), ("region", args.region), ("reporter", args.reporter),
                               ("source", args.source)) if v}
    url = args.hub_url.rstrip("/") + IMPORT_ROUTE + "?" + urllib.parse.urlencode(query)
    size = Path(args.file).stat().st_size

    def chunks() -> Iterator[bytes]:
        # Streamed from disk with progress: an export of a million rows is about 120 MB.
        sent, shown = 0, 0
        with open(args.file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                sent += len(chunk)
                if not args.quiet and (sent - shown >= size // 10 or sent == size):
                    shown = sent
                    print(f"  sent {sent:,} of {size:,} bytes", file=sys.stderr, flush=True)
                yield chunk
        if not args.quiet:
            print("  the hub is importing...", file=sys.stderr, flush=True)

    token = bearer_token(args.token_file, args.token)
    headers = {"Content-Type": "text/csv", "Content-Length": str(size),
               **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=chunks(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            out: dict[str, Any] = json.loads(resp.read())
            return out
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        try:  # the hub's own error: say its code and message, and pass on its hint
            answer = json.loads(detail)["error"]
            detail, hint = f"{answer['code']}: {answer['message']}", answer.get("hint")
        except (ValueError, KeyError, TypeError):
            hint = None
        if hint is None and exc.code in (401, 403):
            hint = "give the operator token: --token-file, $JEJAK_TOKEN_FILE or $JEJAK_TOKEN"
        raise ImportRefused(f"hub answered {exc.code}: {detail}", hint=hint) from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(f"no answer from {url}: {getattr(exc, 'reason', exc)}",
                          hint="check that the hub runs and --hub-url points at its HTTP port") from None


class ImportRefused(CodedError):
    """The hub answered the import with an error; its status and body are in the message."""

    code = "IMPORT_REFUSED"
    coap = "4.00"
    http = 400


def _import(args: argparse.Namespace) -> int:
    from hub.markets.errors import MarketError

    try:
        report = _import_local(args) if args.check else _import_hub(args)
    except (MarketError, ImportRefused) as exc:
        print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
        return 1
    except OSError as exc:  # the file itself: missing (NO_SUCH_FILE), unreadable (NO_PERMISSION), as every command
        code, line = failure(exc, verbose=False)
        print(line, file=sys.stderr)
        return code
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['layout']} layout: {report['rows']:,} rows, {report['taken']:,} taken, "
              f"{report['duplicates']:,} duplicate, {report.get('already_imported', 0):,} already imported, "
              f"{report.get('converted', 0):,} converted to the commodity's unit, "
              f"{report['refused']:,} refused, {report.get('no_price', 0):,} without a price ('-'), "
              f"{report.get('quarantined', 0):,} quarantined"
              + (f", {report['level_shift']:,} taken as a level shift" if report.get("level_shift") else ""))
        for r in report.get("refused_rows", [])[:20]:
            coded = f" ({r['code']})" if r.get("code", "BAD_INPUT_FILE") != "BAD_INPUT_FILE" else ""
            print(f"  line {r['line']}{coded}: {r['reason']}")
        if "rows_per_s" in report:
            print(f"{report['seconds']} s ({report['rows_per_s']:,} rows/s); {report['where']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jejak markets", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="backfill price history from a file, by observation date")
    imp.add_argument("file", help="CSV: the agency's export (Timestamp, ID, Komoditas, Satuan, Harga, ...), "
                                  "a PIHPS table (Komoditas + one column per date) or the long layout")
    imp.add_argument("--hub-url", default=default_hub_url(), help=HUB_URL_HELP)
    imp.add_argument("--token-file", help="file holding the operator token (else $JEJAK_TOKEN_FILE or $JEJAK_TOKEN)")
    imp.add_argument("--token", help=argparse.SUPPRESS)  # on the command line every user can read it: --token-file
    imp.add_argument("--market", help="market id the prices stand for, if the file has no market column")
    imp.add_argument("--region", help="province, if the file has none")
    imp.add_argument("--reporter", help="reporter, if the file has no reporter column")
    imp.add_argument("--source", default="import", help="name kept with every imported price")
    imp.add_argument("--check", action="store_true", help="read and validate locally; send nothing")
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    imp.add_argument("--quiet", action="store_true", help="no progress lines")
    imp.set_defaults(func=_import)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
