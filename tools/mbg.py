"""`jejak mbg`: what left the kitchens and reached the schools, asked of a running hub."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

QUERIES = {
    "summary": ("/api/dashboard/summary", "the day at a glance (seed 1's dashboard summary)"),
    "deliveries": ("/api/mbg/deliveries", "today's deliveries per kitchen and school"),
    "late": ("/api/mbg/late", "late deliveries"),
    "short": ("/api/mbg/short", "deliveries with fewer portions than expected"),
    "missing": ("/api/mbg/missing", "deliveries that never arrived"),
    "lost": ("/api/mbg/lost", "containers lost or not returned"),
    "violations": ("/api/mbg/violations", "food-safety violations and other findings"),
    "stock": ("/api/mbg/stock", "stock on hand and stock cards per kitchen"),
    "epcis": ("/api/mbg/epcis", "the day's scans as GS1 EPCIS 2.0 JSON-LD"),
}


def fetch(hub_url: str, path: str, params: dict[str, str]) -> Any:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    url = f"{hub_url.rstrip('/')}{path}" + (f"?{query}" if query else "")
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                return value
    return []


def render(name: str, data: Any) -> str:
    if name == "deliveries":
        lines = [f"deliveries on {data['date']}: " + ", ".join(f"{k} {v}" for k, v in sorted(data["totals"].items()))]
        for kitchen in data["kitchens"]:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(kitchen["counts"].items()) if v)
            lines.append(f"  {kitchen['name']}: {counts}")
        return "\n".join(lines)
    rows = _rows(data)
    if not rows:
        return json.dumps(data, indent=2, ensure_ascii=False)
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))][:7]
    lines = ["  ".join(keys)]
    lines += ["  ".join(str(row.get(k, "")) for k in keys) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jejak mbg", description=__doc__)
    p.add_argument("--hub-url", default="http://127.0.0.1:8470")
    p.add_argument("--json", action="store_true", help="print the hub's JSON as it is")
    sub = p.add_subparsers(dest="query", required=True)
    for name, (_, text) in QUERIES.items():
        q = sub.add_parser(name, help=text)
        if name not in ("summary", "deliveries", "stock", "violations"):
            q.add_argument("--date", help="YYYY-MM-DD (default: today at the hub)")
    container = sub.add_parser("container", help="one container's history")
    container.add_argument("tag", help="the container's NFC tag id")
    args = p.parse_args(argv)
    if args.query == "container":
        path, params = f"/api/mbg/containers/{urllib.parse.quote(args.tag)}", {}
    else:
        path, params = QUERIES[args.query][0], {"date": getattr(args, "date", None) or ""}
    try:
        data = fetch(args.hub_url, path, params)
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(errors="replace"), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"jejak mbg: cannot reach the hub at {args.hub_url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else render(args.query, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
