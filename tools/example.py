"""`jejak example`: build the deterministic example bundles that docs and tests use, with ledger alone."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import BundleWriter, ChainBuilder, Ed25519Signer, Record, cbor
from ledger.authority import Decision

# In a source checkout the shipped examples beside the spec; installed from a wheel there is no docs/ beside the
# package, and they went into site-packages (or stopped on NO_PERMISSION there): docs/examples where it runs.
CHECKOUT_DIR = Path(__file__).resolve().parents[1] / "docs" / "examples"
DEFAULT_DIR = CHECKOUT_DIR if CHECKOUT_DIR.is_dir() else Path("docs") / "examples"
NEWER = "example.jejak"
OLDER = "example-older.jejak"
T0 = 1_763_870_400  # 2025-11-23 04:00 UTC: the kitchen starts cooking


def example_signer(name: str) -> Ed25519Signer:
    """Fixed example keys, published with the example: never use them for real devices."""
    return Ed25519Signer.from_seed(hashlib.sha256(b"jejak/example/" + name.encode()).digest())


class _Clock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


@dataclass
class _Device:
    name: str
    builder: ChainBuilder
    clock: _Clock
    records: list[Record] = field(default_factory=list)
    bodies: dict[int, bytes] = field(default_factory=dict)


@dataclass
class _Hub:
    clock: _Clock
    writer: BundleWriter

    def accept(self, record: Record, at: int, site: str = "") -> None:
        self.clock.now = at  # the hub signs its decisions (approval, accepted rotation) on arrival
        self.writer.accept(record, site=site, role="edge")

    def checkpoint(self, time: int) -> None:
        self.writer.checkpoint(time)


def _device(name: str, start: int, boot: int) -> _Device:
    clock = _Clock(start)
    dev = _Device(name=name, builder=ChainBuilder(example_signer(name), clock=clock, boot=boot), clock=clock)
    return dev


def _add(hub: _Hub, dev: _Device, at: int, kind: str, body: dict[str, Any], *, detach: bool = False) -> None:
    dev.clock.now = at
    rec = dev.builder.append(kind, body, detach=detach)
    if detach:
        dev.bodies[rec.seq] = cbor.encode(body)
    dev.records.append(rec)
    hub.accept(rec, at)


def _genesis(hub: _Hub, dev: _Device, site: str) -> None:
    rec = dev.builder.genesis()
    dev.records.append(rec)
    hub.accept(rec, dev.clock.now, site)


def _story() -> tuple[_Hub, list[_Device]]:
    """One morning: meals leave a kitchen, arrive at a school; a market stall reports prices."""
    hub_clock = _Clock(T0 - 600)
    hub = _Hub(clock=hub_clock, writer=BundleWriter(example_signer("hub-jawa-barat"), clock=hub_clock))
    kitchen = _device("sppg-bandung-01/kitchen-exit", T0, boot=4)
    gate = _device("sdn-cibeunying-2/school-gate", T0 + 60, boot=11)
    stall = _device("pasar-kosambi/stall-17", T0 + 120, boot=2)
    _genesis(hub, kitchen, "sppg-bandung-01")
    _genesis(hub, gate, "sdn-cibeunying-2")
    _genesis(hub, stall, "pasar-kosambi")
    tags = [f"04a1b2c3d4{i:04x}" for i in range(6)]
    _add(hub, kitchen, T0 + 300, "stock", {"site": "sppg-bandung-01", "item": "beras", "movement": "use",
                                           "qty": 96_000, "unit": "g", "batch": "B-1123-1"})
    _add(hub, kitchen, T0 + 2400, "scan", {"event": "cooked", "site": "sppg-bandung-01", "checkpoint": "kitchen",
                                           "batch": "B-1123-1", "cooked_at": T0 + 2400, "temp_cc": 8150})
    _add(hub, kitchen, T0 + 3000, "scan", {"event": "departed", "site": "sppg-bandung-01",
                                           "checkpoint": "kitchen_exit", "tags": tags, "parent": "truck-D-8123-AB",
                                           "school": "sdn-cibeunying-2", "count": 240, "source": "nfc"})
    _add(hub, stall, T0 + 3100, "price", {"market": "pasar-kosambi", "commodity": "cabai-rawit", "unit": "kg",
                                          "price_idr": 58_000, "reporter": "stall-17", "region": "kota-bandung"})
    _add(hub, stall, T0 + 3150, "reading", {"site": "pasar-kosambi", "sensor": "bme280-1", "temp_cc": 2960,
                                            "rh_cp": 7840, "crowd": 86})
    hub.checkpoint(T0 + 3600)
    _add(hub, gate, T0 + 4500, "scan", {"event": "arrived", "site": "sdn-cibeunying-2",
                                        "checkpoint": "school_gate", "tags": tags, "count": 240, "temp_cc": 6420})
    # The receiving teacher's card number is personal data: the body travels beside the record by digest.
    _add(hub, gate, T0 + 4560, "scan", {"event": "received", "site": "sdn-cibeunying-2",
                                        "checkpoint": "school_gate", "staff": "04deadbeef0042", "count": 238},
         detach=True)
    _add(hub, gate, T0 + 4600, "note", {"site": "sdn-cibeunying-2", "text": "2 ompreng tumpah di jalan",
                                        "author": "guru-piket"})
    stall.clock.now = T0 + 5000
    rotation = stall.builder.rotate(example_signer("pasar-kosambi/stall-17/2026"))
    stall.records.append(rotation)
    hub.accept(rotation, T0 + 5000)
    _add(hub, stall, T0 + 5100, "price", {"market": "pasar-kosambi", "commodity": "beras", "grade": "medium",
                                          "unit": "kg", "price_idr": 13_600, "reporter": "stall-17"})
    hub.checkpoint(T0 + 7200)
    _add(hub, gate, T0 + 8400, "scan", {"event": "served", "site": "sdn-cibeunying-2", "count": 236})
    _add(hub, kitchen, T0 + 9000, "stock", {"site": "sppg-bandung-01", "item": "telur", "movement": "receive",
                                            "qty": 480, "unit": "butir", "supplier": "koperasi-lembang"})
    _add(hub, stall, T0 + 9100, "stock", {"site": "pasar-kosambi", "item": "cabai-rawit", "movement": "count",
                                          "qty": 12_500, "unit": "g"})
    _add(hub, gate, T0 + 12_600, "scan", {"event": "returned", "site": "sdn-cibeunying-2", "checkpoint": "return",
                                          "tags": tags[:5], "count": 5})
    # The school reports its gate reader stolen after the last return: whatever it signs from now on is refused.
    hub.clock.now = T0 + 13_000
    hub.writer.decide(Decision(action="revoke", device_id=gate.builder.device_id,
                               from_seq=gate.builder.state.length))
    hub.checkpoint(T0 + 14_400)
    return hub, [kitchen, gate, stall]


def _bundle(hub: _Hub, devices: Sequence[_Device], upto: int, description: str) -> bytes:
    """A bundle of the hub's log as of checkpoint `upto` (an index into its checkpoints)."""
    created = hub.writer.checkpoints[upto].time + 60
    return hub.writer.bundle(upto=upto, created=created, description=description,
                             bodies={dev.builder.device_id: dev.bodies for dev in devices}).encode()


def build() -> tuple[bytes, bytes]:
    """(newer, older) example bundles, byte-identical on every run."""
    hub, devices = _story()
    newer = _bundle(hub, devices, 2, "Example: one morning of MBG deliveries in Bandung and prices at "
                                     "Pasar Kosambi (three devices, one key rotation, one revocation, three checkpoints)")
    older = _bundle(hub, devices, 1, "Example, as exported at the second checkpoint")
    return newer, older


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    p = argparse.ArgumentParser(prog="jejak example",
                                description="Write the deterministic example bundles (made with ledger alone).")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"output directory (default: {DEFAULT_DIR})")
    args = p.parse_args(argv)
    newer, older = build()
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, data in ((NEWER, newer), (OLDER, older)):
        path = args.dir / name
        path.write_bytes(data)
        out(f"wrote {path} ({len(data)} bytes)")
    out(f"check it: jejak-verify {args.dir / NEWER} --against {args.dir / OLDER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
