"""`jejak edge ...`: run the edge daemon, show its status, print its device id."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coap_server.configfile import check_directories
from ledger.failures import failure

from .errors import ConfigError


def _run(args: argparse.Namespace) -> int:
    from . import config as cfg
    from .daemon import run

    config = cfg.load(args.config)
    changes: dict[str, Any] = {}
    if args.data_dir is not None:  # the flag wins over the config's data_dir, checked as that is
        check_directories([("--data-dir", Path(args.data_dir).expanduser())], ConfigError)
        changes["data_dir"] = args.data_dir
    if args.port is not None:
        changes["coap"] = cfg.CoapConfig(host=config.coap.host, port=args.port)
    if args.tap_interval_ms is not None:
        changes["sim"] = cfg.SimConfig(enabled=config.sim.enabled, seed=config.sim.seed,
                                       tap_interval_ms=args.tap_interval_ms, containers=config.sim.containers)
    if changes:
        config = cfg.replace(config, **changes)
    return run(config, None if args.clock is None else started_clock(args.clock))


def started_clock(start: int) -> Callable[[], int]:
    """A device clock that reads `start` now and runs at the pace of the machine's monotonic clock: a Pi whose
    clock is set wrong, or a past day replayed through real daemons."""
    t0 = time.monotonic()
    return lambda: start + int(time.monotonic() - t0)


def _instant(text: str) -> int:
    try:
        instant = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO instant like 2026-03-02T05:30+07:00, got {text!r}") from None
    if instant.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add one, e.g. +07:00 for WIB")
    return int(instant.timestamp())


def _status(args: argparse.Namespace) -> int:
    """Ask a running daemon over CoAP, or read the store directly (read-only) when no --url is given."""
    if args.url:
        from coap_server.client import EdgeClient

        async def ask() -> dict[str, Any]:
            import aiocoap.error

            from coap_server.errors import CoapError, describe_failure
            from coap_server.security import OscoreRequired
            from ledger.failures import Unreachable

            try:
                async with EdgeClient(args.url, timeout=10) as client:
                    return await client.status()
            except (aiocoap.error.NetworkError, aiocoap.error.ResolutionError, TimeoutError) as exc:
                raise Unreachable(f"no answer from {args.url}: {describe_failure(exc)}",
                                  hint="check that the edge daemon runs and --url names its CoAP port") from None
            except CoapError as exc:
                if exc.code == OscoreRequired.code:  # [security] oscore on: it answers only its enrolled peers
                    raise OscoreRequired(f"{args.url} serves its status over OSCORE only ([security] oscore = true)",
                                         hint="on that edge, read its store instead: jejak edge status --config "
                                              "<edge.toml>; or ask its [http] /status with the pairing secret") from None
                raise exc.coded(args.url) from None

        print(json.dumps(asyncio.run(ask()), indent=2, default=str))
        return 0
    from . import config as cfg
    from .store import LmdbLogStore

    config = cfg.load(args.config)
    store = LmdbLogStore(config.data_path / "store", map_size=config.limits.map_size, readonly=True)
    try:
        own = store.own_device()
        out = {"device": own.hex() if own else None, "store": store.usage(),
               "logs": [{**info.to_cbor_map(), "device": info.device_id.hex(), "head": info.head.hex()}
                        for info in store.logs()],
               "forked": sorted(d.hex() for d in store.blocked())}
    finally:
        store.close()
    print(json.dumps(out, indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    """Verify every log in the store from genesis (signatures and links)."""
    from ledger import verify_chain

    from . import config as cfg
    from .store import LmdbLogStore

    config = cfg.load(args.config)
    store = LmdbLogStore(config.data_path / "store", map_size=config.limits.map_size, readonly=True)
    try:
        for info in store.logs():
            raws = store.log_range(info.device_id, 0, info.length)
            state = verify_chain(raws)
            print(json.dumps({"device": info.device_id.hex(), "verified": state.length}))
    finally:
        store.close()
    return 0


def _id(args: argparse.Namespace) -> int:
    from . import config as cfg
    from .keys import load_or_create

    config = cfg.load(args.config)
    key = load_or_create(config.data_path / "device.key", store=config.data_path / "store")
    print(json.dumps({"device": key.device_id.hex(), "pubkey": key.public_key.hex(),
                      "key_file": str(config.data_path / "device.key")}))
    return 0


def _pair(args: argparse.Namespace) -> int:
    """Show the pairing QR code a phone scans once to use this edge's check-in page and seed 1's API."""
    from . import config as cfg
    from .pairing import load_or_create_secret, pairing_url

    config = cfg.load(args.config)
    secret = load_or_create_secret(config.data_path, new=args.new)
    host = config.http.host if config.http.host not in ("0.0.0.0", "::") else socket.gethostname()
    url = pairing_url(args.url or f"http://{host}:{config.http.port}", secret)
    try:
        import qrcode
    except ImportError:  # the base install has no qrcode; the text works as well, typed or pasted
        print("(install qrcode to see a QR code here: pip install qrcode)", file=sys.stderr)
    else:
        qr = qrcode.QRCode(border=1)
        qr.add_data(url)
        qr.make(fit=True)
        qr.print_ascii(invert=True)
    print(url)
    print(f"pairing code: {secret}")
    return 0


def add_arguments(subparsers: Any) -> None:
    """Register `edge run|status|verify|id` on a `jejak` sub-parsers object."""
    edge = subparsers.add_parser("edge", help="run or inspect the edge daemon")
    edge.add_argument("-v", "--verbose", action="store_true", help="show the traceback of a failure")
    sub = edge.add_subparsers(dest="edge_command", required=True)
    run = sub.add_parser("run", help="run the edge daemon (simulated reader and sensors by default)")
    run.add_argument("--config", help="edge TOML config (defaults work on a laptop)")
    run.add_argument("--data-dir", help="override data_dir")
    run.add_argument("--port", type=int, help="override coap.port (0 = any free port)")
    run.add_argument("--tap-interval-ms", type=int, help="simulated reader: tap every N ms (0 = off)")
    run.add_argument("--clock", type=_instant, metavar="INSTANT",
                     help="the device's time instead of the system's: starts at this ISO instant (e.g. "
                          "2026-03-02T05:30+07:00) and runs at the wall clock's pace")
    run.set_defaults(func=_run)
    status = sub.add_parser("status", help="status of a running daemon (--url) or of its store")
    status.add_argument("--config")
    status.add_argument("--url", help="coap://host:port of a running daemon")
    status.set_defaults(func=_status)
    verify = sub.add_parser("verify", help="verify every log in the store from genesis")
    verify.add_argument("--config")
    verify.set_defaults(func=_verify)
    pair = sub.add_parser("pair", help="show the QR code that pairs a phone with this edge's HTTP bridges")
    pair.add_argument("--config")
    pair.add_argument("--url", help="the address phones reach this edge's HTTP endpoint at (http://host:port)")
    pair.add_argument("--new", action="store_true", help="replace the secret: every paired phone must scan again")
    pair.set_defaults(func=_pair)
    ident = sub.add_parser("id", help="print this device's id and public key (creates the key if needed)")
    ident.add_argument("--config")
    ident.set_defaults(func=_id)


def main(argv: list[str] | None = None) -> int:
    """`python -m edge.cli run ...`; also what `jejak edge ...` delegates to."""
    parser = argparse.ArgumentParser(prog="jejak")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["edge", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # edge errors, the security errors enrollment raises, ports, permissions
        if isinstance(exc, BrokenPipeError):  # stdout's reader is gone: the last flush must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code, text = failure(exc, verbose=args.verbose)
        print(text, file=sys.stderr)
        return code

if __name__ == "__main__":
    sys.exit(main())
