"""`jejak`: one command for the hub, the edge daemon, the demo, enrollment, exports and benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import http.client
import importlib
import json
import logging
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coap_server.logs import setup_logging
from ledger.failures import Unreachable, UsageError

from .hubclient import HUB_URL_HELP, HubRefused, bearer_token, call, default_hub_url, operator_token
from .hubclient import open_url as _open
from .stop import stop, version

if TYPE_CHECKING:
    from hub.config import HubConfig
    from hub.pg import PgHubStore

ENROLL_SCHEME = "jejak-enroll"


def _hub_run(args: argparse.Namespace) -> int:
    return serve_hub(args.config, clock_setting=args.clock, accept_older_store=args.accept_older_store)


def serve_hub(config_path: str | None, *, clock: Callable[[], int] | None = None,
              clock_setting: str | None = None, accept_older_store: bool = False) -> int:
    """Run the hub that the config describes until SIGINT or SIGTERM. Its time is `clock` if given (a soak
    run's), else `clock_setting` (--clock) or the config's `clock`: wall time, or a past day replayed."""
    from edge import systemd  # sd_notify and the watchdog: stdlib only, shared by both daemons
    from hub.app import start_hub
    from hub.config import load

    config = load(config_path)
    if clock_setting:
        config = dataclasses.replace(config, clock=clock_setting)

    async def main() -> None:
        running = await start_hub(config, clock=clock, accept_older_store=accept_older_store)
        # A log line as every other (JSON on stderr), so that `journalctl -o cat | jq` reads the whole log.
        logging.getLogger("jejak.hub").info(
            "hub %s started: http %s coap %s", running.hub.hub_id.hex(), running.http_url, running.coap_url,
            extra={"fields": {"hub": running.hub.hub_id.hex(), "http": running.http_url, "coap": running.coap_url}})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        petting = None
        if (interval := systemd.watchdog_interval()) is not None:
            petting = asyncio.create_task(systemd.pet_watchdog(interval, _loop_answers))
        systemd.notify("READY=1")
        await stop.wait()
        systemd.notify("STOPPING=1")
        if petting is not None:
            petting.cancel()
        await running.close()

    asyncio.run(main())
    return 0


async def _loop_answers(timeout: float) -> bool:
    """The hub's watchdog question: this coroutine running at all proves the event loop is not stuck."""
    return True


def _hub_verify(args: argparse.Namespace) -> int:
    """Check every record of the hub's store against its id and leaf, and every checkpoint's root; damaged
    records are noted for restore as the running hub notes them. Exit 0 when intact, RECORD_DAMAGED's code
    when not. It reads an existing hub: a missing key or store stops it (KEY_FILE, STORE_ERROR) with nothing made."""
    from hub.app import existing_key, open_existing_store
    from hub.config import load
    from hub.integrity import check_store
    from hub.service import Hub
    from hub.store import DamagedRecord

    config = load(args.config)
    key = existing_key(config)
    hub = Hub(open_existing_store(config), key, clock=lambda: 0)
    try:
        result = check_store(hub, full=True)
    finally:
        hub.store.close()
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"{'ok' if result.ok else 'DAMAGED'}: {result.checked} of {result.size} records checked against "
              f"their ids and leaves, checkpoint roots {'match' if result.roots_ok else 'DO NOT MATCH'} "
              f"({result.seconds:.1f} s)")
        for device_id, seq in result.damaged:
            print(f"damaged: device {device_id.hex()} seq {seq}")
    return 0 if result.ok else DamagedRecord.exit_code


def _hub_take_back(args: argparse.Namespace) -> int:
    """Merge back the records a hub's store lost to a restore from an older copy, from bundles the hub exported
    (hub/restore.py), up to the last checkpoint it signed (`data_dir/last-checkpoint.json`). Exit 0 when the log
    holds that checkpoint again, HUB_STORE_OLDER's code when records are still missing, RESTORE_TAIL's when the
    bundles' records are refused. Run with the hub stopped: it writes to the hub's store."""
    from hub.app import existing_key, open_existing_store
    from hub.clock import ClockSpec, HubClock
    from hub.config import load
    from hub.lastsigned import LastSigned, OlderStore, holds
    from hub.restore import take_back_from
    from hub.service import Hub
    from ledger import decode_checkpoint

    config = load(args.config)
    _refuse_running(config)
    key = existing_key(config)
    lost = LastSigned(Path(config.data_dir), key.public_key).read()
    for path in args.bundles:
        path.open("rb").close()  # unreadable: a usage error now, before the store is opened
    store = open_existing_store(config)
    try:
        signed = store.checkpoints()[-1:]
        copied = decode_checkpoint(signed[0]).time if signed else lost.time if lost else 0
        # A bundle holds no arrival times: the records taken back arrive at their own (a day backfilled).
        hub = Hub(store, key, clock=HubClock(ClockSpec(start=copied, speed=0.0, follow_records=True)))
        if lost is None or holds(hub.tree, lost):
            print("nothing to take back: " + (f"{Path(config.data_dir) / 'last-checkpoint.json'} names no checkpoint"
                                              if lost is None else "the store holds the last checkpoint signed"))
            return 0
        done = take_back_from(hub, lost, ((str(path), path.read_bytes()) for path in args.bundles),
                              dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        print(json.dumps(done.to_json() | {"dry_run": args.dry_run}))
    elif args.dry_run:
        print(f"would take back {done.taken} records, to the checkpoint of {done.checkpoint.tree_size} records "
              f"({'the last one signed' if done.whole else f'short of the last one signed, of {lost.tree_size}'}); "
              "the tail gives its root; nothing written")
    elif done.whole:
        print(f"the log is whole again: {done.taken} records taken back, it holds the checkpoint of "
              f"{done.checkpoint.tree_size} records this hub signed; start it as usual")
    else:
        print(f"{done.taken} records taken back, to the checkpoint of {done.checkpoint.tree_size} records; the "
              f"bundles hold none past it, and this hub signed one of {lost.tree_size}: a bundle exported later "
              f"takes the rest back, else start once with --accept-older-store (docs/DEPLOY.md, Backups)")
    return 0 if done.whole else OlderStore.exit_code


def _refuse_running(config: HubConfig) -> None:
    """Refuse to write a hub's store while something answers on the hub's HTTP port: the hub itself, most likely,
    which writes to the same store and would interleave its records with the ones taken back."""
    if not config.http_port:
        return
    host = "127.0.0.1" if config.http_host in ("", "0.0.0.0", "::") else config.http_host
    try:
        with socket.create_connection((host, config.http_port), timeout=2):
            pass
    except OSError:
        return
    raise UsageError(f"something answers on {host}:{config.http_port}, this config's hub's HTTP address: a running "
                     "hub writes to the store this command writes to", where="http_port",
                     hint="stop the hub first (sudo systemctl stop jejak-hub), then run the command again")


def _postgres_only(config: HubConfig) -> None:
    """Refuse an LMDB hub's config for `jejak hub archive` before its store is opened (opening would make one)."""
    from hub.config import ConfigError

    if config.store.backend != "postgres":
        raise ConfigError("jejak hub archive works on the PostgreSQL store; this hub's store is LMDB",
                          where="store.backend", hint="an LMDB hub keeps everything; back its files up instead")


def _archive_store(config: HubConfig) -> PgHubStore:
    """The PostgreSQL store of the hub that `config` describes, for `jejak hub archive` and its index."""
    from hub.app import open_store
    from hub.pg import PgHubStore

    _postgres_only(config)
    store = open_store(config)
    assert isinstance(store, PgHubStore)
    return store


def _hub_archive(args: argparse.Namespace) -> int:
    """Write the log partitions whose records all arrived before a date to files, check them against the tile
    roots the hub keeps, and drop their rows from the PostgreSQL store (the hub's own log stays)."""
    from hub.app import existing_key
    from hub.config import load
    from ledger import device_id_for

    if args.before is None or args.to is None:
        raise UsageError("jejak hub archive needs --before DATE and --to DIR",
                         hint="or `jejak hub archive index` to index archives written before tile files")
    config = load(args.config)
    _postgres_only(config)
    hub_id = device_id_for(existing_key(config).public_key)  # the hub's own log stays: it is never archived
    store = _archive_store(config)
    try:
        parts = store.archive(args.before, args.to, keep=[hub_id], dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        print(json.dumps([p.to_json() for p in parts]))
    else:
        verb = "would archive" if args.dry_run else "archived"
        for p in parts:
            print(f"{verb} {p.name}: log indexes {p.first} to {p.end - 1}, arrived {p.first_arrived} to "
                  f"{p.last_arrived}{' -> ' + str(p.archived) if p.archived else ''}")
        if not parts:
            print("nothing to archive: no full partition whose records all arrived before that date")
    return 0


def _hub_archive_index(args: argparse.Namespace) -> int:
    """Give the archives written before archives had tile and seq files those files, checked against the tile
    roots the hub keeps first, so their records are served again. Exit 0 when none is refused, else the first
    refusal's code (ARCHIVE_MISMATCH: its rows do not check; ARCHIVE_UNAVAILABLE: its file is missing)."""
    from hub.config import load

    store = _archive_store(load(args.config))
    try:
        done = store.index_archives(args.dir)
    finally:
        store.close()
    if args.json:
        print(json.dumps([d.to_json() for d in done]))
    else:
        for d in done:
            print(f"{d.outcome} {d.archive}: " + (f"{d.code}{'' if d.tile is None else f' at log tile {d.tile}'}: "
                                                  f"{d.message}" if d.code else f"{d.records} records"))
        if not done:
            print("no archive to index: the store records none" + ("" if args.dir is None else f" in {args.dir}"))
    return next((d.exit_code for d in done if d.outcome == "refused"), 0)


def _date(text: str) -> int:
    """A UTC date (YYYY-MM-DD) or a unix time, as a unix time."""
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=datetime.UTC).timestamp())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD (UTC) or a unix time, got {text!r}") from None


def _count(text: str) -> int:
    """A whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _clock_setting(text: str) -> str:
    from hub.clock import clock_setting

    return clock_setting(text)


def enroll_uri(hub_url: str, hub_pubkey: bytes) -> str:
    """What the provisioning QR code carries: where the hub is and which key it must show."""
    from ledger import device_id_for

    return f"{ENROLL_SCHEME}:?hub={hub_url}&id={device_id_for(hub_pubkey).hex()}&key={hub_pubkey.hex()}"


def _own_http_url(host: str, port: int) -> str:
    """The hub's address for devices when --hub-url is not given: its http_host, or this machine's name for a hub
    that listens on every interface (0.0.0.0 or :: is no address to send a request to). A loopback address only
    this machine reaches is kept, with a note: devices elsewhere need --hub-url."""
    import ipaddress
    import socket

    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    if loopback:
        print(f"note: {url} is reached from this machine only; for devices on the network give --hub-url with the "
              "address they reach this hub at (behind a proxy: https://<its public name>)", file=sys.stderr)
    return url


def _enroll_qr(args: argparse.Namespace) -> int:
    """Print the QR code of a hub that has started once (its first start makes the key the code carries)."""
    import qrcode

    from hub.app import existing_key
    from hub.config import load

    config = load(args.config)
    png = output_file(args.png, "--png") if args.png else None
    signer = existing_key(config)
    url = args.hub_url or _own_http_url(config.http_host, config.http_port)
    uri = enroll_uri(url, signer.public_key)
    qr = qrcode.QRCode(border=1)
    qr.add_data(uri)
    qr.make(fit=True)
    qr.print_ascii(invert=True)
    print(uri)
    if png is not None:
        qr.make_image().save(png)
        print(f"QR code written to {png}")
    return 0


def _enroll_request(args: argparse.Namespace) -> int:
    """Send this device's signed enrollment request. With --config, the edge's own config says the site, role,
    name, key and data dir, so the operator repeats none of them."""
    import time

    site, role, name, key, data_dir = args.site, args.role, args.name, args.key, args.data_dir
    if args.config:
        from edge import config as edge_config

        edge = edge_config.load(args.config)
        site, role = site or edge.site, role or edge.checkpoint.role
        name = name or edge.name or edge.site
        key = key or str(edge.data_path / "device.key")
        data_dir = data_dir or str(edge.data_path)
    missing = [flag for flag, value in (("--site", site), ("--role", role), ("--key", key)) if not value]
    if missing:
        raise UsageError(f"enroll request needs {', '.join(missing)}",
                         hint="give --config <edge.toml> (the edge's config has them all), or the flags")
    if data_dir:  # secure enrollment: pin the hub key from the QR code, derive the OSCORE context
        from edge.keys import load_or_create
        from edge.security import enroll

        device = load_or_create(Path(key))
        answer = enroll(args.uri, device, Path(data_dir), site=site, role=role, name=name or site)
        print(json.dumps(answer))
        if answer.get("status") == "pending":
            print(f"enrollment sent; the hub's operator approves it with: jejak devices approve {answer['device']}",
                  file=sys.stderr)
        return 0

    from ledger import Ed25519Signer
    from ledger.enroll import make_enroll_request

    params = dict(p.split("=", 1) for p in args.uri.split("?", 1)[1].split("&"))
    signer = Ed25519Signer.from_seed(Path(key).read_bytes())
    body = make_enroll_request(signer, site=site, role=role, name=name or site,
                               time=int(time.time()), hub_id=bytes.fromhex(params["id"]))
    req = urllib.request.Request(f"{params['hub']}/api/enroll", data=body, method="POST",
                                 headers={"Content-Type": "application/cose"})
    with _open(req, timeout=30) as resp:
        print(resp.read().decode())
    return 0


DEVICE_PAGE = 1000  # devices per request to GET /api/devices (the hub allows up to 5000)


def _all_devices(base: str, token: str, limit: int | None) -> list[dict[str, Any]]:
    """The hub's devices a page at a time, following each answer's `next`: all of them, or the first `limit`."""
    listing: list[dict[str, Any]] = []
    after = ""
    while limit is None or len(listing) < limit:
        size = DEVICE_PAGE if limit is None else min(DEVICE_PAGE, limit - len(listing))
        page = call("GET", f"{base}?limit={size}" + (f"&after={after}" if after else ""), token=token)
        listing += page["devices"]
        if page["next"] is None:
            break
        after = page["next"]
    return listing


def _devices(args: argparse.Namespace) -> int:
    """`jejak devices list|approve|revoke|reject|resolve-fork`: the operator's side of enrollment, over the hub's HTTP
    API."""
    token = operator_token(args.token_file)
    base = f"{args.hub_url}/api/devices"
    if args.devices_command == "list":
        listing = _all_devices(base, token, args.limit)
        if args.json:
            print(json.dumps(listing, indent=2))
            return 0
        for d in listing:
            sent = f"  (sent from {d['source']})" if d["status"] == "pending" and d.get("source") else ""
            print(f"{d['device']}  {d['status']:<8} {d['site']:<20} {d['role']:<14} {d.get('length', 0):>8} records"
                  f"  {d.get('name', '')}{sent}")
        pending = [d for d in listing if d["status"] == "pending"]
        if pending:
            sources = Counter(d.get("source") or "unknown" for d in pending).most_common(3)
            print(f"{len(pending)} pending (sent from {', '.join(f'{s}: {n}' for s, n in sources)}); approve with: "
                  "jejak devices approve <device>, or drop a flood with: jejak devices reject --source <address>; "
                  "requests nobody approves expire after the hub's pending_expire_s", file=sys.stderr)
        forked = [d["device"] for d in listing if d["status"] == "forked"]
        if forked:
            print(f"{len(forked)} forked, their records held back; look at the evidence (GET /api/forks), then: "
                  "jejak devices resolve-fork <device>", file=sys.stderr)
        return 0
    device = args.device
    if args.devices_command == "reject":
        if (device is None) == (args.source is None):
            raise UsageError("jejak devices reject: name one device, or --source ADDRESS_OR_NETWORK, not both")
        query = urllib.parse.urlencode({"source": args.source or ""})
        rejected = call("POST", f"{base}/{device}/reject" if device is not None else f"{base}/reject?{query}",
                        token=token)["rejected"]
        for d in rejected:
            print(f"{d['device']}  rejected  {d['site']:<20} {d['role']:<14} (sent from {d.get('source') or 'unknown'})")
        legacy = []
        if args.source is not None:  # seed 2's registrations from there too, where the hub runs the bridges
            try:
                legacy = call("POST", f"{args.hub_url}/api/bridges/devices/reject?{query}", token=token)["rejected"]
            except HubRefused as exc:
                if exc.status != 404:
                    raise
            for d in legacy:
                print(f"{d['device_id']}  rejected  {d['market_id']:<20} {d['role']:<14} (seed 2, sent from "
                      f"{d.get('source') or 'unknown'})")
        also = f" and {len(legacy)} seed-2 registrations" if legacy else ""
        print(f"{len(rejected)} enrollment requests{also} rejected; nothing was signed, and a real device among "
              "them asks again", file=sys.stderr)
        return 0
    if args.devices_command in ("approve", "resolve-fork"):
        answer = call("POST", f"{base}/{device}/{args.devices_command}", token=token)
    else:
        answer = call("POST", f"{base}/{device}/revoke" + (f"?from={args.from_seq}" if args.from_seq is not None
                                                           else ""), token=token)
    print(json.dumps(answer))
    return 0


def _regions(args: argparse.Namespace) -> int:
    """`jejak hub regions list|show|resume`: the regional hubs a national hub pulls or follows by their
    checkpoints."""
    base = f"{args.hub_url}/api/regions"
    if args.regions_command == "list":
        for r in call("GET", base)["regions"]:
            print(_region_line(r))
        return 0
    if args.regions_command == "show":
        try:
            print(json.dumps(call("GET", f"{base}/{args.hub}"), indent=2))
        except HubRefused as refused:
            # The hub keeps checkpoints, split views and resumes only for the regions it follows by their
            # checkpoints (hub/tiers.py TierLinks.follower): any other id is UNKNOWN_REGION, a pulled one too,
            # with a hint to a listing that shows it.
            if refused.said.get("code") != "UNKNOWN_REGION":
                raise
            print(_not_followed(args.hub, call("GET", base)["regions"]))
        return 0
    body = json.dumps({"by": args.by, "why": args.why}).encode()
    decision = call("POST", f"{base}/{args.hub}/resume", token=operator_token(args.token_file), body=body,
                    content_type="application/json")
    print(json.dumps(decision, indent=2))
    gap = decision["not_in_view"]
    if gap is not None:
        print(f"records {gap['from']} to {gap['to'] - 1} of the region's log, vouched for by "
              f"{len(decision['dropped'])} checkpoints accepted before, are not in its current view",
              file=sys.stderr)
    return 0


# How much of a region's problem `jejak hub regions list` shows on its line; `show` has it whole.
PROBLEM_WIDTH = 100


def _region_hub(region: dict[str, Any]) -> str:
    """The region's hub id: as the hub answers it, else derived from the pinned key it answers, else "-" (a
    region pulled by its address alone)."""
    if region.get("hub"):
        return str(region["hub"])
    key = region.get("key")
    if isinstance(key, str) and len(key) == 64:
        from ledger import device_id_for

        return device_id_for(bytes.fromhex(key)).hex()
    return "-"


def _local_time(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    return datetime.datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _region_line(region: dict[str, Any]) -> str:
    """One region as `jejak hub regions list` prints it: hub id, mode, state, log size and address, then, while
    its rounds fail, the problem's code and message (shortened) and since when."""
    size = (region.get("checkpoint") or {}).get("tree_size", "-")
    line = (f"{_region_hub(region):<32}  {region.get('mode', '-'):<11} {region.get('state', '-'):<11} {size:>10}  "
            f"{region.get('url', '-')}")
    problem = region.get("problem")
    if not problem:
        return line
    message = " ".join(str(problem.get("message", "")).split())
    if len(message) > PROBLEM_WIDTH:
        message = message[:PROBLEM_WIDTH - 1] + "…"
    return f"{line}  {problem.get('code', '?')}: {message} (since {_local_time(problem.get('since'))})"


def _not_followed(hub: str, regions: list[dict[str, Any]]) -> str:
    """What `show` says of a hub id that the hub does not follow by its checkpoints: a region it pulls record by
    record has no checkpoints, split views or resumes to show, and `list` shows all there is of it."""
    pulled = [r for r in regions if r.get("mode") != "checkpoints"]
    mine = [r for r in pulled if _region_hub(r) == hub.lower()]
    if mine:
        lines = [f"regional hub {hub} is pulled record by record (mode records), not followed by its checkpoints: "
                 "the national hub keeps no checkpoints, split views or resumes of it. `jejak hub regions list` "
                 "shows it as:"]
        return "\n".join(lines + [_region_line(r) for r in mine])
    unnamed = [str(r.get("url", "?")) for r in pulled if _region_hub(r) == "-"]
    raise HubRefused(f"no region with hub id {hub} is followed by its checkpoints"
                     + (f"; if it is one of those pulled record by record ({', '.join(unnamed)}), it has no "
                        "checkpoints, split views or resumes to show" if unnamed else ""),
                     hint="`jejak hub regions list` shows every region with its state and problem; `show` covers "
                          "those followed by their checkpoints (mode checkpoints)")


# The offline verifier page `jejak export --with-verifier` writes beside the bundle.
VERIFIER_PAGE = "jejak-verify.html"


def _export(args: argparse.Namespace) -> int:
    query = []
    if args.site:
        query.append(f"site={args.site}")
    for device in args.device or []:
        query.append(f"device={device}")
    if args.since is not None:
        query.append(f"since={args.since}")
    if args.until is not None:
        query.append(f"until={args.until}")
    url = f"{args.hub_url}/api/export" + ("?" + "&".join(query) if query else "")
    token = bearer_token(args.token_file, args.token)
    if not token:  # a bundle holds record bodies: the hub gives one only to an auditor or operator
        from hub.auth import Unauthorized

        raise Unauthorized("jejak export needs an auditor or operator token",
                           hint="pass --token-file, or set JEJAK_TOKEN_FILE or JEJAK_TOKEN")
    out = output_file(args.out, "--out")
    size = download(url, out, headers={"Authorization": f"Bearer {token}"},
                    resume_url=f"{args.hub_url}/api/export/files/{{name}}")
    print(f"wrote {size} bytes to {out}; check it with: jejak-verify {out}")
    if args.with_verifier:
        from hub.webverify import standalone_page

        page = out.with_name(VERIFIER_PAGE)
        page.write_text(standalone_page(), encoding="utf-8")
        print(f"wrote {page}: open it in a browser (offline) and drop {out.name} on it")
    return 0


CHUNK = 1 << 16


def output_file(name: str, option: str) -> Path:
    """The file a command is told to write, checked before anything is asked of a hub: a directory that does
    not exist, or a directory given as the file, was found only at the first write, named by a temporary file
    (`audit.jejak.part.id: no such file or directory`) after the hub had made the export."""
    path = Path(name)
    if path.is_dir():
        raise UsageError(f"{option} {name}: is a directory, expected the file to write",
                         hint=f"name the file in it: {option} {path / '<file>'}")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {name}: the directory {parent} does not exist",
                         hint=f"create it first (mkdir -p {parent}) or write elsewhere")
    return path


def download(url: str, out: Path, *, headers: dict[str, str], resume_url: str) -> int:
    """Stream an export to `out` in chunks (memory stays at one chunk), with progress on stderr.

    The bytes go to `out.part` and the hub's name for the export (X-Jejak-Export) to `out.part.id`; after a
    cut, the same command asks for the rest of that same export (`Range`) instead of starting again."""
    part, ident = out.with_name(out.name + ".part"), out.with_name(out.name + ".part.id")
    resp = None
    if part.exists() and ident.exists():
        have = part.stat().st_size
        request = urllib.request.Request(resume_url.format(name=ident.read_text().strip()),
                                         headers={**headers, "Range": f"bytes={have}-"})
        try:
            resp = _open(request, timeout=120)
        except HubRefused:  # the hub no longer keeps it: start again
            resp = None
        else:
            if resp.status == 206:
                print(f"export: resuming at byte {have}", file=sys.stderr, flush=True)
            else:
                have = 0
    if resp is None:
        have = 0
        resp = _open(urllib.request.Request(url, headers=headers), timeout=120)
        ident.write_text(resp.headers.get("X-Jejak-Export", ""))
    with resp:
        total = have + int(resp.headers.get("Content-Length", 0))
        progress = Progress(total)
        done = have
        with open(part, "ab" if have else "wb") as fh:
            try:
                while chunk := resp.read(CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    progress.show(done)
            except (OSError, http.client.HTTPException) as exc:
                fh.flush()
                raise Unreachable(f"the download stopped at byte {done} of {total}: {exc}",
                                  hint="run the same command again: it resumes where it stopped") from None
    if total and done != total:
        raise Unreachable(f"the download stopped at byte {done} of {total}",
                          hint="run the same command again: it resumes where it stopped")
    progress.show(done, final=True)
    part.replace(out)
    ident.unlink(missing_ok=True)
    return done


class Progress:
    """Download progress on stderr: at most one line a second, and the last."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = 0.0
        self.said: int | None = None  # the figure last shown: the last line is not said twice

    def show(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if (not final and now - self.shown < 1.0) or done == self.said:
            return
        self.shown, self.said = now, done
        share = f" ({100 * done // self.total}%)" if self.total else ""
        print(f"export: {done / 1e6:.1f} of {self.total / 1e6:.1f} MB{share}", file=sys.stderr, flush=True)


def _verify(args: argparse.Namespace) -> int:
    from tools.verify import main

    return main(args.rest)


def _delegate(module: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        mod = importlib.import_module(module)
        result = mod.main((["-v"] if args.verbose and module == "edge.cli" else []) + args.rest)
        return int(result or 0)

    return run


def _bench(args: argparse.Namespace) -> int:
    from tools.bench import main

    return main(args.rest)


# Fault injection, fuzzing and soak need the test vectors and test helpers, so they are not installed.
HARNESS = ("Fault injection, fuzzing and the soak run from a source checkout, not from this command: "
           "python -m tests.harness.faults, python -m tests.harness.fuzz, python -m tests.harness.soak "
           "(RELIABILITY.md).")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jejak", description="Edge-first, tamper-evident tracking for MBG meals "
                                                         "and market prices.", epilog=HARNESS)
    p.add_argument("-v", "--verbose", action="store_true", help="log more, and show the traceback of a failure")
    p.add_argument("--version", action="version", version=f"jejak {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    hub = sub.add_parser("hub", help="run or manage a hub").add_subparsers(dest="hub_command", required=True)
    run = hub.add_parser("run", help="run a hub (LMDB store by default)")
    run.add_argument("--config", help="hub TOML config")
    run.add_argument("--clock", type=_clock_setting, help="the hub's time instead of the config's `clock`: "
                     "'wall', or '<ISO instant> [xSPEED] [records]' to replay or backfill a past day")
    run.add_argument("--accept-older-store", action="store_true",
                     help="start on a store older than the last checkpoint this hub signed (restored from an older "
                          "copy), knowing the national hub and auditors will see the log rewritten; logged CRITICAL")
    run.set_defaults(func=_hub_run)
    verify = hub.add_parser("verify", help="check every stored record and checkpoint; exit 52 if damaged")
    verify.add_argument("--config", help="hub TOML config")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(func=_hub_verify)
    archive = hub.add_parser("archive", help="move old log partitions of a PostgreSQL store to files")
    archive.add_argument("--config", help="hub TOML config")
    archive.add_argument("--before", type=_date, metavar="DATE",
                         help="archive partitions whose records all arrived before this UTC date (YYYY-MM-DD) "
                              "or unix time (required)")
    archive.add_argument("--to", metavar="DIR", help="directory for the archive files (required)")
    archive.add_argument("--dry-run", action="store_true", help="list what would be archived, change nothing")
    archive.add_argument("--json", action="store_true", help="print the partitions as JSON")
    archive.set_defaults(func=_hub_archive)
    index = archive.add_subparsers(dest="archive_command").add_parser(
        "index", help="give archives written before tile files their tile and seq files, checked against the "
                      "tile roots the hub keeps, so their records are served again; exit 58 if one does not "
                      "check, 56 if one is missing")
    index.add_argument("--config", help="hub TOML config")
    index.add_argument("--dir", metavar="DIR", help="only the archives in this directory (default: every archive "
                                                    "the store records)")
    index.add_argument("--json", action="store_true", help="print one report per archive as JSON")
    index.set_defaults(func=_hub_archive_index)
    take = hub.add_parser("take-back", help="make a hub whose store was restored from an older copy whole "
                          "again, from audit bundles it exported after that copy (the hub stopped); exit 89 if "
                          "records are still missing, 91 if the bundles' records are refused")
    take.add_argument("--config", help="hub TOML config")
    take.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE",
                      help="bundle files (.jejak) this hub exported (`jejak export`), in any order")
    take.add_argument("--dry-run", action="store_true", help="check the bundles and the tail they give against "
                                                              "the signed root, write nothing")
    take.add_argument("--json", action="store_true", help="print the result as JSON")
    take.set_defaults(func=_hub_take_back)
    regions = hub.add_parser("regions", help="regional hubs followed by their checkpoints: their state, split "
                                             "views, and an operator's resume").add_subparsers(
        dest="regions_command", required=True)
    for verb, text in (("list", "every region, how it is taken (pulled or followed) and its state, with the problem and since when"),
                       ("show", "one region: its accepted checkpoints, split views and resumes"),
                       ("resume", "follow a region again after a split view, from its current signed checkpoint "
                                  "(operator token from --token-file, $JEJAK_TOKEN_FILE or $JEJAK_TOKEN)")):
        one = regions.add_parser(verb, help=text)
        one.add_argument("--hub-url", default=default_hub_url(), help=HUB_URL_HELP.replace("hub's", "national hub's"))
        if verb != "list":
            one.add_argument("hub", help="the regional hub's id (hex), as `jejak hub regions list` shows it")
        if verb == "resume":
            one.add_argument("--token-file", help="file holding the operator token (kept off the command line)")
            one.add_argument("--by", required=True, help="your name, kept with the decision")
            one.add_argument("--why", required=True, help="what you looked at and decided, kept with the decision")
        one.set_defaults(func=_regions)

    enroll = sub.add_parser("enroll", help="provision devices").add_subparsers(dest="enroll_command",
                                                                                 required=True)
    qr = enroll.add_parser("qr", help="print the hub's provisioning QR code (terminal and PNG)")
    qr.add_argument("--config", help="hub TOML config")
    qr.add_argument("--hub-url", help="address devices use to reach the hub")
    qr.add_argument("--png", help="also write the QR code as a PNG file")
    qr.set_defaults(func=_enroll_qr)
    req = enroll.add_parser("request", help="send a device's signed enrollment request to the hub")
    req.add_argument("uri", help="the text of the hub's QR code")
    req.add_argument("--config", help="the edge's TOML config: site, role, name, key and data dir come from it")
    req.add_argument("--key", help="device key file (32-byte Ed25519 seed); default from --config")
    req.add_argument("--site", help="default from --config")
    req.add_argument("--role", help="default from --config ([checkpoint] role)")
    req.add_argument("--name")
    req.add_argument("--data-dir", help="edge data directory: check the hub's signed grant against the QR "
                                        "code's key, pin it and set up OSCORE with the hub there")
    req.set_defaults(func=_enroll_request)

    dev = sub.add_parser("devices", help="list, approve or revoke devices at a hub (operator token from "
                                         "--token-file, $JEJAK_TOKEN_FILE or $JEJAK_TOKEN)")
    dev_sub = dev.add_subparsers(dest="devices_command", required=True)
    for verb, text in (("list", "every device the hub knows, pending ones included"),
                       ("approve", "accept a pending device's records"),
                       ("resolve-fork", "accept the branch the hub holds of a forked device and merge its records "
                                        "again (look at GET /api/forks first)"),
                       ("revoke", "stop accepting a device's records (from --from SEQ on, else from now)"),
                       ("reject", "drop a pending enrollment request, or with --source every one sent from an "
                                  "address or network (a flood of made-up keys); signs nothing")):
        one = dev_sub.add_parser(verb, help=text)
        one.add_argument("--hub-url", default=default_hub_url(), help=HUB_URL_HELP)
        one.add_argument("--token-file", help="file holding the operator token (kept off the command line)")
        if verb == "list":
            one.add_argument("--json", action="store_true")
            one.add_argument("--limit", type=_count, help="only the first N devices, in device id order "
                                                            "(default: all, read a page at a time)")
        elif verb == "reject":
            one.add_argument("device", nargs="?", help="device id (hex), as `jejak devices list` shows it")
            one.add_argument("--source", help="every pending request sent from this address or network "
                                              "(10.1.2.7, 10.1.2.0/24), as `jejak devices list` shows them")
        else:
            one.add_argument("device", help="device id (hex), as `jejak devices list` shows it")
        if verb == "revoke":
            one.add_argument("--from", dest="from_seq", type=int, help="first sequence number no longer accepted")
        one.set_defaults(func=_devices)

    exp = sub.add_parser("export", help="download an audit bundle from a hub")
    exp.add_argument("--hub-url", default=default_hub_url(), help=HUB_URL_HELP)
    exp.add_argument("--out", default="audit.jejak", help="the bundle file to write (default %(default)s)")
    exp.add_argument("--site", help="only this site's devices")
    exp.add_argument("--device", action="append", help="only this device (hex id; repeat for more)")
    exp.add_argument("--since", type=int, metavar="UNIX_TIME", help="records from this device time on")
    exp.add_argument("--until", type=int, metavar="UNIX_TIME", help="records before this device time")
    exp.add_argument("--token-file", help="file holding the auditor or operator token (else $JEJAK_TOKEN_FILE or "
                                          "$JEJAK_TOKEN; required)")
    exp.add_argument("--token", help=argparse.SUPPRESS)  # on the command line every user can read it: --token-file
    exp.add_argument("--with-verifier", action="store_true",
                     help=f"also write {VERIFIER_PAGE} beside the bundle: jejak-verify as one offline web page")
    exp.set_defaults(func=_export)

    for name, module, text in (("demo", "hub.demo", "a local hub with simulated devices and its dashboard"),
                               ("edge", "edge.cli", "run or inspect the edge daemon"),
                               ("example", "tools.example", "write the example audit bundles"),
                               ("mbg", "tools.mbg", "MBG deliveries, exceptions, containers and stock from a hub"),
                               ("markets", "tools.markets", "import price history (agency export, PIHPS) into a hub")):
        d = sub.add_parser(name, help=text, add_help=False)
        d.add_argument("rest", nargs=argparse.REMAINDER)
        d.set_defaults(func=_delegate(module))
    v = sub.add_parser("verify", help="same as jejak-verify", add_help=False)
    v.add_argument("rest", nargs=argparse.REMAINDER)
    v.set_defaults(func=_verify)
    b = sub.add_parser("bench", help="run every benchmark; write BENCHMARKS.md and JSON", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra:
        if not hasattr(args, "rest"):
            p.error(f"unrecognized arguments: {' '.join(extra)}")
        args.rest = extra + args.rest
    setup_logging("hub" if args.command in ("hub", "demo") else "jejak", level="DEBUG" if args.verbose else "INFO")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line with a code and a hint; the class declares the exit code (docs/ERRORS.md)
        return stop(exc, verbose=args.verbose)

if __name__ == "__main__":
    sys.exit(main())
