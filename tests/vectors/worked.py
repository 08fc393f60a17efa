"""The worked example of docs/FORMAT.md §14.1: the smallest bundle there is (a hub, one device, one reading, two
checkpoints) and every intermediate value a second implementation needs to check its own code step by step.

`python -m tests.vectors.worked` writes docs/examples/tiny.jejak and the section between the markers in FORMAT.md;
tests/ledger/test_worked_example.py makes both again and compares them, and checks every value with hashlib and
cryptography alone."""

from __future__ import annotations

import hashlib
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import cbor2

from ledger import BundleWriter, ChainBuilder, Ed25519Signer, Record, cbor
from ledger.bundle import SEAL_AAD
from ledger.checkpoint import Checkpoint
from ledger.cose import sig_structure
from ledger.record import RECORD_AAD

ROOT = Path(__file__).resolve().parents[2]
FORMAT = ROOT / "docs" / "FORMAT.md"
TINY = ROOT / "docs" / "examples" / "tiny.jejak"
START = "<!-- worked example: made by python -m tests.vectors.worked; do not edit by hand -->"
END = "<!-- end of worked example -->"
T0 = 1_763_870_400  # 2025-11-23 04:00 UTC
PROTECTED = b"\xa1\x01\x27"  # {1: -8}: records and the seal


def seed(name: str) -> bytes:
    return hashlib.sha256(b"jejak/worked/" + name.encode()).digest()


class _Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass(frozen=True, slots=True)
class Worked:
    bundle: bytes
    hub: Ed25519Signer
    device: Ed25519Signer
    leaves: list[Record]
    checkpoints: list[Checkpoint]
    consistency: list[bytes]
    receipt: bytes


def build() -> Worked:
    hub = Ed25519Signer.from_seed(seed("hub"))
    device = Ed25519Signer.from_seed(seed("device"))
    hub_clock, dev_clock = _Clock(T0 - 600), _Clock(T0)
    writer = BundleWriter(hub, clock=hub_clock)
    chain = ChainBuilder(device, clock=dev_clock, boot=3)
    hub_clock.now = T0 + 5
    writer.accept(chain.genesis(), site="sppg-bandung-01", role="kitchen")  # the hub approves it first
    writer.checkpoint(T0 + 60)
    dev_clock.now = T0 + 300
    writer.accept(chain.append("reading", {"site": "sppg-bandung-01", "sensor": "probe-1", "temp_cc": 6420}))
    writer.checkpoint(T0 + 600)
    bundle = writer.bundle(created=T0 + 660, description="tiny").encode()
    return Worked(bundle=bundle, hub=hub, device=device, leaves=list(writer.leaves), checkpoints=writer.checkpoints,
                  consistency=writer.tree.consistency_proof(3, 4), receipt=writer.bundle(created=0).receipts[3][1])


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hex(data: bytes, indent: str = "") -> str:
    return "\n".join(indent + line for line in textwrap.wrap(data.hex(), 96))


def _row(data: bytes, what: str) -> str:
    return data.hex().ljust(20) + what


def _diag(value: object) -> str:
    """CBOR diagnostic notation (RFC 8949 §8) of a decoded value, as FORMAT.md writes it."""
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_diag(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_diag(k)}: {_diag(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "null"
    return str(value)


def section(w: Worked) -> str:
    reading = w.leaves[3]
    payload = cbor.decode(reading.payload)
    leaf = [_h(b"\x00" + r.raw) for r in w.leaves]
    n01, n23 = _h(b"\x01" + leaf[0] + leaf[1]), _h(b"\x01" + leaf[2] + leaf[3])
    cp3, cp4 = w.checkpoints
    unsealed = cbor.decode(w.bundle)
    seal = unsealed.pop("seal")
    digest = _h(cbor.encode(unsealed))
    env = reading.raw
    p_len = len(reading.payload)
    p_head = 2 if p_len < 256 else 3
    at = 25 + p_head + p_len
    proof = cbor.decode(cbor2.loads(w.receipt).value[1][396][-1][0])
    out = [
        START,
        "### 14.1 A worked example",
        "",
        f"`docs/examples/tiny.jejak` ({len(w.bundle)} bytes, SHA-256 `{_h(w.bundle).hex()}`) is about the smallest",
        "bundle there is: a hub, one device, its genesis and one reading, two checkpoints. It is made from the seeds",
        "below (Ed25519 signing is deterministic, so the signatures come out the same too), and every value here can",
        "be checked with SHA-256 and Ed25519 alone. `python -m tests.vectors.worked` makes the file and this section;",
        "a test makes both again and compares them byte for byte.",
        "",
        "| | seed | public key | id (§6) |",
        "|---|---|---|---|",
        f"| hub | `{seed('hub').hex()}` | `{w.hub.public_key.hex()}` | `{w.leaves[0].device_id.hex()}` |",
        f"| device | `{seed('device').hex()}` | `{w.device.public_key.hex()}` | `{reading.device_id.hex()}` |",
        "",
        "The ids are `SHA-256(\"jejak/device-id/v1\" || public key)[0:16]`: the 18 ASCII bytes then the 32 key bytes.",
        "",
        f"**The reading** (the device's seq 1, {len(env)} bytes), cut as in §3.0:",
        "",
        "```",
        _row(env[:2], "tag 18, array of 4"),
        _row(env[2:6], "protected header: bstr(3) {1: -8}"),
        _row(env[6:9], "unprotected header: {4: bstr(16)}, then the kid"),
        _hex(env[9:25]),
        _row(env[25:25 + p_head], f"payload: bstr({p_len})"),
        _hex(reading.payload),
        _row(env[at:at + 2], "bstr(64): the signature"),
        _hex(env[at + 2:]),
        "```",
        "",
        "Its payload (§3.1) is",
        f"`{_diag(payload)}`: version, device id, seq, prev (the genesis record's id), time, boot, kind 2",
        "(`reading`) and the body, whose keys are in deterministic order (`site` before `sensor` before `temp_cc`:",
        "shorter first). The signature is Ed25519 over these bytes, the `Sig_structure` of §3.2:",
        "",
        "```",
        _hex(sig_structure(PROTECTED, reading.payload, RECORD_AAD)),
        "```",
        "",
        f"- record id `SHA-256(record)` = `{reading.id.hex()}`",
        f"- leaf hash `SHA-256(0x00 || record)` = `{leaf[3].hex()}`",
        "",
        "**The tree** (§9). Its leaves are the records in the order the hub took them: its own genesis, its",
        "approval of the device (written when the device's genesis arrived, before it), the device's genesis, the",
        "reading.",
        "",
        "| leaf | record | record id | leaf hash |",
        "|---|---|---|---|",
        *(f"| {i} | {name} | `{r.id.hex()}` | `{leaf[i].hex()}` |"
          for i, (r, name) in enumerate(zip(w.leaves, ("hub genesis (hub seq 0)", "approve (hub seq 1)",
                                                     "device genesis (seq 0)", "reading (seq 1)"), strict=True))),
        "",
        f"- `H(0x01 || leaf 0 || leaf 1)` = `{n01.hex()}`",
        f"- `H(0x01 || leaf 2 || leaf 3)` = `{n23.hex()}`",
        f"- root of size 3 `H(0x01 || H(0x01 || leaf 0 || leaf 1) || leaf 2)` = `{cp3.root.hex()}`",
        f"- root of size 4 `H(0x01 || {n01.hex()[:8]}.. || {n23.hex()[:8]}..)` = `{cp4.root.hex()}`",
        "",
        "**The checkpoints** (§10) are of size 3 (after the device's genesis) and 4. The protected header of",
        "size 4, `" + _diag(cbor.decode(cp4.protected)) + "`, is these bytes:",
        "",
        "```",
        _hex(cp4.protected),
        "```",
        "",
        "and its signature is over this `Sig_structure` (empty external AAD, the root as payload):",
        "",
        "```",
        _hex(sig_structure(cp4.protected, cp4.root, b"")),
        "```",
        "",
        "The bundle's consistency entry from 3 to 4 (§9, RFC 9162 §2.1.4) is `[3, 4, [leaf 2, leaf 3, H(0x01 ||",
        "leaf 0 || leaf 1)]]`: `" + ", ".join(h.hex()[:16] + ".." for h in w.consistency) + "`.",
        "",
        "**The reading's receipt** (§11) carries size 4's protected header and signature; its inclusion proof is",
        f"`[{proof[0]}, {proof[1]}, [leaf 2, H(0x01 || leaf 0 || leaf 1)]]`, these bytes inside the unprotected header:",
        "",
        "```",
        _hex(cbor.encode(proof)),
        "```",
        "",
        "**The seal** (§12.3 step 9). The bundle without its `seal` entry, encoded deterministically, has SHA-256",
        f"`{digest.hex()}`; the seal signs this `Sig_structure` (protected header",
        "`{1: -8}`, external AAD `\"jejak/bundle/v1\"`, that digest as payload):",
        "",
        "```",
        _hex(sig_structure(PROTECTED, digest, SEAL_AAD)),
        "```",
        "",
        f"and is the {len(seal)} bytes `{seal[:8].hex()}..` (`18([h'a10127', {{}}, nil, signature])`).",
        END,
    ]
    return "\n".join(out) + "\n"


def format_with(text: str, worked: str) -> str:
    """FORMAT.md with its worked-example section replaced by `worked`."""
    start, end = text.index(START), text.index(END) + len(END) + 1
    return text[:start] + worked + text[end:]


def main() -> int:
    w = build()
    TINY.write_bytes(w.bundle)
    FORMAT.write_text(format_with(FORMAT.read_text(), section(w)))
    print(f"wrote {TINY} and {FORMAT} §14.1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
