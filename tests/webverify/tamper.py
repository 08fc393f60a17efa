"""A seeded tamper set of the example bundles: single-bit flips and structural tamperings, built from FORMAT.md alone."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "example.jejak"
OLDER = ROOT / "docs" / "examples" / "example-older.jejak"
VECTORS = ROOT / "tests" / "vectors"
FLIPS_PER_BUNDLE = 1000
SEED = 17
RECORD_AAD = b"jejak/record/v1"
SEAL_AAD = b"jejak/bundle/v1"
SEAL_PROTECTED = bytes.fromhex("a10127")


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One bundle to verify (optionally against an older one); both verifiers must give the same answer."""

    name: str
    bundle: bytes
    against: bytes | None = None
    hub_key: bytes | None = None  # pinned, as `--hub-key`


def encode(value: Any) -> bytes:
    # cbor2's canonical mode is RFC 7049 length-first key order, which equals RFC 8949 §4.2.1 bytewise order
    # for the text keys bundles use.
    return cbor2.dumps(value, canonical=True)


def stranger() -> Ed25519PrivateKey:
    seed = json.loads((VECTORS / "keys.json").read_text())["keys"]["stranger"]["seed"]
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))


def example_hub() -> Ed25519PrivateKey:
    """The example hub's key: tools/example.py derives it from a fixed name, so tamperings can be re-signed."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"jejak/example/hub-jawa-barat").digest())


def example_device(name: str) -> Ed25519PrivateKey:
    """An example device's key (tools/example.py derives it from the device's name the same way)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"jejak/example/" + name.encode()).digest())


def seal(bundle: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """FORMAT.md §12.3 step 9: the hub's signature over the SHA-256 of the bundle without its seal."""
    digest = hashlib.sha256(encode({k: v for k, v in bundle.items() if k != "seal"})).digest()
    sig = key.sign(sig_structure(SEAL_PROTECTED, SEAL_AAD, digest))
    return encode(cbor2.CBORTag(18, [SEAL_PROTECTED, {}, None, sig]))


def sig_structure(protected: bytes, aad: bytes, payload: bytes) -> bytes:
    return encode(["Signature1", protected, aad, payload])


def resign_record(record: bytes, key: Ed25519PrivateKey, payload: bytes | None = None) -> bytes:
    """The record with its payload (or a new one) signed by `key`, envelope otherwise unchanged."""
    cose = cbor2.loads(record)
    protected, unprotected, old_payload, _ = cose.value
    payload = old_payload if payload is None else payload
    sig = key.sign(sig_structure(protected, RECORD_AAD, payload))
    return encode(cbor2.CBORTag(18, [protected, unprotected, payload, sig]))


def payload_of(record: bytes) -> list[Any]:
    return list(cbor2.loads(cbor2.loads(record).value[2]))


def record_id(record: bytes) -> bytes:
    return hashlib.sha256(record).digest()


def bit_flips(name: str, data: bytes, count: int, seed: int, against: bytes | None = None) -> Iterator[Case]:
    rng = random.Random(f"{seed}:{name}")
    for bit in sorted(rng.sample(range(len(data) * 8), count)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield Case(name=f"{name} bit {bit} (byte {bit // 8})", bundle=bytes(flipped), against=against)


def older_flips(newer: bytes, older: bytes, count: int, seed: int) -> Iterator[Case]:
    for case in bit_flips("older", older, count, seed):
        yield Case(name="against " + case.name, bundle=newer, against=case.bundle)


Edit = Callable[[dict[str, Any]], None]


def edited(base: bytes, name: str, edit: Edit, against: bytes | None = None, *, resealed: bool = False) -> Case:
    """The bundle after `edit`; `resealed`: sealed again by the hub, so only the checks before the seal can see it."""
    bundle = cbor2.loads(base)
    edit(bundle)
    if resealed:
        bundle["seal"] = seal(bundle, example_hub())
    return Case(name=name + (" (resealed)" if resealed else ""), bundle=encode(bundle), against=against)


def structural(base: bytes, older: bytes) -> Iterator[Case]:
    b0 = cbor2.loads(base)
    key = stranger()
    logs = b0["logs"]

    def log_edit(li: int, fn: Callable[[dict[str, Any]], None]) -> Edit:
        def edit(b: dict[str, Any]) -> None:
            fn(b["logs"][li])
        return edit

    yield Case(name="untouched", bundle=base)
    yield Case(name="untouched against older", bundle=base, against=older)
    yield Case(name="older against newer", bundle=older, against=base)
    yield Case(name="against itself", bundle=base, against=base)
    for li, log in enumerate(logs):
        n = len(log["records"])
        for i in range(n):
            yield edited(base, f"log {li} drop record {i}", log_edit(li, lambda lg, i=i: lg["records"].pop(i)))
            yield edited(base, f"log {li} duplicate record {i}",
                         log_edit(li, lambda lg, i=i: lg["records"].insert(i, lg["records"][i])))
            yield edited(base, f"log {li} re-sign record {i} with another key",
                         log_edit(li, lambda lg, i=i: lg["records"].__setitem__(i, resign_record(lg["records"][i], key))))
            yield edited(base, f"log {li} record {i} untagged",
                         log_edit(li, lambda lg, i=i: lg["records"].__setitem__(i, lg["records"][i][1:])))
            yield edited(base, f"log {li} record {i} truncated",
                         log_edit(li, lambda lg, i=i: lg["records"].__setitem__(i, lg["records"][i][:-1])))
            yield edited(base, f"log {li} record {i} with a trailing byte",
                         log_edit(li, lambda lg, i=i: lg["records"].__setitem__(i, lg["records"][i] + b"\0")))
            # A seq re-encoded with a longer head than it needs, properly re-signed: still not deterministic.
            yield edited(base, f"log {li} record {i} seq not shortest (re-signed by a stranger)",
                         log_edit(li, lambda lg, i=i: lg["records"].__setitem__(i, resign_record(
                             lg["records"][i], key, reencode_seq_long(lg["records"][i])))))
        for i in range(n - 1):
            def swap(lg: dict[str, Any], i: int = i) -> None:
                r = lg["records"]
                r[i], r[i + 1] = r[i + 1], r[i]
            yield edited(base, f"log {li} swap records {i} and {i + 1}", log_edit(li, swap))
        for keep in range(n):
            yield edited(base, f"log {li} truncated to {keep} records",
                         log_edit(li, lambda lg, keep=keep: lg.__setitem__("records", lg["records"][:keep])))
        yield edited(base, f"log {li} append a copy of its head", log_edit(li, lambda lg: lg["records"].append(lg["records"][-1])))
        yield edited(base, f"log {li} append a stranger's record at the next seq",
                     log_edit(li, lambda lg: lg["records"].append(next_record(lg["records"][-1], key))))
        for field in ("device", "keys", "records", "bodies"):
            yield edited(base, f"log {li} without '{field}'", log_edit(li, lambda lg, f=field: lg.pop(f)))
            yield edited(base, f"log {li} '{field}' renamed", log_edit(li, lambda lg, f=field: lg.__setitem__(f[:-1] + "X", lg.pop(f))))
        yield edited(base, f"log {li} with an unknown field", log_edit(li, lambda lg: lg.__setitem__("note", "x")))
        yield edited(base, f"log {li} body for an inline record",
                     log_edit(li, lambda lg: lg["bodies"].append([1, encode({"site": "x"})])))
        yield edited(base, f"log {li} body for a seq out of range",
                     log_edit(li, lambda lg: lg["bodies"].append([99, encode({"site": "x"})])))
        if log["bodies"]:
            yield edited(base, f"log {li} body given twice", log_edit(li, lambda lg: lg["bodies"].append(lg["bodies"][0])))
            yield edited(base, f"log {li} body erased", log_edit(li, lambda lg: lg.__setitem__("bodies", [])))
            yield edited(base, f"log {li} body one byte short",
                         log_edit(li, lambda lg: lg["bodies"].__setitem__(0, [lg["bodies"][0][0], lg["bodies"][0][1][:-1]])))
        if len(log["keys"]) > 1:
            yield edited(base, f"log {li} key list without its rotation", log_edit(li, lambda lg: lg["keys"].pop()))
            yield edited(base, f"log {li} key list starting at the rotation", log_edit(li, lambda lg: lg["keys"].pop(0)))
            yield edited(base, f"log {li} key list reversed", log_edit(li, lambda lg: lg["keys"].reverse()))
        yield edited(base, f"log {li} key list empty", log_edit(li, lambda lg: lg.__setitem__("keys", [])))
        yield edited(base, f"log {li} key list with a scan record",
                     log_edit(li, lambda lg: lg["keys"].append(lg["records"][1])))
        yield edited(base, f"log {li} genesis re-signed by a stranger in both places", log_edit(li, resign_genesis_both(key)))
        yield edited(base, f"log {li} device id of another log",
                     log_edit(li, lambda lg, li=li: lg.__setitem__("device", logs[(li + 1) % len(logs)]["device"])))
    yield edited(base, "logs swapped", lambda b: b["logs"].reverse())
    yield edited(base, "a log dropped", lambda b: b["logs"].pop(0))
    yield edited(base, "a log given twice", lambda b: b["logs"].append(b["logs"][0]))
    yield edited(base, "no logs", lambda b: b.__setitem__("logs", []))
    for field in ("format", "created", "description", "hub_key", "hub_log", "logs", "checkpoints", "receipts",
                  "consistency", "forks", "seal"):
        yield edited(base, f"bundle without '{field}'", lambda b, f=field: b.pop(f))
    yield edited(base, "bundle with an unknown field", lambda b: b.__setitem__("signature", b""))
    yield edited(base, "format jejak-bundle/1", lambda b: b.__setitem__("format", "jejak-bundle/1"))
    yield edited(base, "format 1 log field revoked_from", lambda b: b["logs"][0].__setitem__("revoked_from", None))
    yield edited(base, "hub key nil", lambda b: b.__setitem__("hub_key", None))
    yield edited(base, "hub key of a stranger", lambda b: b.__setitem__("hub_key", public(key)))
    yield edited(base, "hub key nil and no checkpoints or receipts",
                 lambda b: b.update(hub_key=None, checkpoints=[], receipts=[], consistency=[]))
    yield edited(base, "hub log empty", lambda b: b.__setitem__("hub_log", []))
    n_cp = len(b0["checkpoints"])
    for i in range(n_cp):
        yield edited(base, f"checkpoint {i} dropped", lambda b, i=i: b["checkpoints"].pop(i))
        yield edited(base, f"checkpoint {i} re-signed by a stranger",
                     lambda b, i=i: b["checkpoints"].__setitem__(i, resign_checkpoint(b["checkpoints"][i], key)))
        yield edited(base, f"checkpoint {i} given twice", lambda b, i=i: b["checkpoints"].append(b["checkpoints"][i]))
    yield edited(base, "checkpoints reversed", lambda b: b["checkpoints"].reverse())
    yield edited(base, "no checkpoints", lambda b: b.update(checkpoints=[]))
    yield edited(base, "no checkpoints, against older", lambda b: b.update(checkpoints=[]), against=older)
    for i in range(len(b0["consistency"])):
        yield edited(base, f"consistency {i} dropped", lambda b, i=i: b["consistency"].pop(i))
        yield edited(base, f"consistency {i} dropped, against older", lambda b, i=i: b["consistency"].pop(i), against=older)
        yield edited(base, f"consistency {i} proof reversed", lambda b, i=i: b["consistency"][i][2].reverse())
        yield edited(base, f"consistency {i} proof empty", lambda b, i=i: b["consistency"][i].__setitem__(2, []))
        yield edited(base, f"consistency {i} proof with an extra entry",
                     lambda b, i=i: b["consistency"][i][2].append(bytes(32)))
        yield edited(base, f"consistency {i} proof entry of 31 bytes",
                     lambda b, i=i: b["consistency"][i][2].__setitem__(0, b["consistency"][i][2][0][:31]))
        yield edited(base, f"consistency {i} sizes swapped",
                     lambda b, i=i: b["consistency"].__setitem__(i, [b["consistency"][i][1], b["consistency"][i][0], b["consistency"][i][2]]))
        yield edited(base, f"consistency {i} to a size with no checkpoint",
                     lambda b, i=i: b["consistency"][i].__setitem__(1, 99))
    yield edited(base, "consistency 8..8 empty", lambda b: b["consistency"].append([8, 8, []]))
    yield edited(base, "no consistency, against itself", lambda b: b.update(consistency=[]), against=base)
    for i in range(0, len(b0["receipts"]), 4):
        yield edited(base, f"receipt {i} dropped", lambda b, i=i: b["receipts"].pop(i))
        yield edited(base, f"receipt {i} for another record",
                     lambda b, i=i: b["receipts"][i].__setitem__(0, b["receipts"][(i + 1) % len(b["receipts"])][0]))
        yield edited(base, f"receipt {i} for an unknown record", lambda b, i=i: b["receipts"][i].__setitem__(0, bytes(32)))
        yield edited(base, f"receipt {i} given twice", lambda b, i=i: b["receipts"].append(b["receipts"][i]))
        yield edited(base, f"receipt {i} re-signed by a stranger",
                     lambda b, i=i: b["receipts"][i].__setitem__(1, resign_receipt(b["receipts"][i][1], key)))
        yield edited(base, f"receipt {i} with its path dropped",
                     lambda b, i=i: b["receipts"][i].__setitem__(1, edit_receipt_path(b["receipts"][i][1], lambda p: p[:-1])))
        yield edited(base, f"receipt {i} with an extra path entry",
                     lambda b, i=i: b["receipts"][i].__setitem__(1, edit_receipt_path(b["receipts"][i][1], lambda p: [*p, bytes(32)])))
    yield edited(base, "no receipts", lambda b: b.update(receipts=[]))
    yield edited(base, "receipts reversed", lambda b: b["receipts"].reverse())
    # Fork evidence: a record and the same record re-signed (not a fork: same seq, different id, one bad
    # signature), a record twice, two records of different seq, and garbage.
    r1 = logs[0]["records"][1]
    r2 = logs[0]["records"][2]
    forged = resign_record(r1, key, reencode_time(r1))
    for name, ev in (("a record and a stranger's copy", [r1, forged]), ("one record twice", [r1, r1]),
                     ("two different seqs", [r1, r2]), ("not an array", b"\x01")):
        yield edited(base, f"fork evidence: {name}",
                     lambda b, ev=ev: b["forks"].append(ev if isinstance(ev, bytes) else encode(ev)))
    # Re-encodings of the bundle itself that keep its meaning but are not deterministic.
    yield Case(name="bundle map keys in insertion order", bundle=cbor2.dumps(dict(reversed(list(b0.items())))))
    yield Case(name="created with a long head", bundle=reencode_created(base))
    yield Case(name="bundle with a trailing byte", bundle=base + b"\0")
    yield Case(name="bundle wrapped in an array", bundle=encode([b0]))
    for cut in (0, 1, 2, 10, 100, len(base) // 2, len(base) - 65, len(base) - 1):
        yield Case(name=f"bundle truncated to {cut} bytes", bundle=base[:cut])
    yield Case(name="older bundle truncated, as --against", bundle=base, against=older[:-1])
    hub_key = b0["hub_key"]
    yield Case(name="hub key pinned", bundle=base, hub_key=hub_key)
    yield Case(name="hub key pinned, against older", bundle=base, against=older, hub_key=hub_key)
    yield Case(name="stranger's key pinned", bundle=base, hub_key=public(key))
    yield Case(name="stranger's key pinned, against older", bundle=base, against=older, hub_key=public(key))
    no_key = edited(base, "", lambda b: b.__setitem__("hub_key", None)).bundle
    yield Case(name="hub key pinned, bundle names none", bundle=no_key, hub_key=hub_key)
    yield Case(name="stranger's key pinned, bundle names none", bundle=no_key, hub_key=public(key))
    yield Case(name="older bundle garbage, as --against", bundle=base, against=b"\xff")
    yield from hub_log_tamperings(base, older)
    yield from seal_tamperings(base, older)
    yield from device_tamperings(base)


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def reencode_seq_long(record: bytes) -> bytes:
    p = payload_of(record)
    head = encode(p[:2])[1:]  # version, device
    rest = b"".join(encode(x) for x in p[3:])
    seq = p[2]
    return b"\x88" + head + b"\x1a" + seq.to_bytes(4, "big") + rest


def reencode_time(record: bytes) -> bytes:
    p = payload_of(record)
    p[4] += 1
    return encode(p)


def next_record(head: bytes, key: Ed25519PrivateKey) -> bytes:
    p = payload_of(head)
    p[2] += 1
    p[3] = record_id(head)
    p[4] += 10
    p[6] = 5
    p[7] = {"text": "appended"}
    return resign_record(head, key, encode(p))


def resign_genesis_both(key: Ed25519PrivateKey) -> Callable[[dict[str, Any]], None]:
    def edit(lg: dict[str, Any]) -> None:
        forged = resign_record(lg["keys"][0], key)
        lg["keys"][0] = forged
        if lg["records"] and payload_of(lg["records"][0])[2] == 0:
            lg["records"][0] = forged
    return edit


def resign_checkpoint(checkpoint: bytes, key: Ed25519PrivateKey) -> bytes:
    protected, unprotected, root, _ = cbor2.loads(checkpoint).value
    sig = key.sign(sig_structure(protected, b"", root))
    return encode(cbor2.CBORTag(18, [protected, unprotected, root, sig]))


def checkpoint_of_size_0(checkpoint: bytes, root: bytes, key: Ed25519PrivateKey) -> bytes:
    """A checkpoint like `checkpoint` but of tree size 0 with hub log head [0, 32 zero bytes] over `root`."""
    protected, unprotected, _, _ = cbor2.loads(checkpoint).value
    header = cbor2.loads(protected)
    header[-65537], header[-65538] = 0, [0, bytes(32)]
    protected = encode(header)
    return encode(cbor2.CBORTag(18, [protected, unprotected, root, key.sign(sig_structure(protected, b"", root))]))


def resign_receipt(receipt: bytes, key: Ed25519PrivateKey) -> bytes:
    protected, unprotected, payload, _ = cbor2.loads(receipt).value
    sig = key.sign(sig_structure(protected, b"", b"\0" * 32))
    return encode(cbor2.CBORTag(18, [protected, unprotected, payload, sig]))


def edit_receipt_path(receipt: bytes, fn: Callable[[list[bytes]], list[bytes]]) -> bytes:
    protected, unprotected, payload, sig = cbor2.loads(receipt).value
    size, index, path = cbor2.loads(unprotected[396][-1][0])
    unprotected = {396: {-1: [encode([size, index, fn(list(path))])]}}
    return encode(cbor2.CBORTag(18, [protected, unprotected, payload, sig]))


def reencode_created(base: bytes) -> bytes:
    b = cbor2.loads(base)
    created = encode(b["created"])
    long = b"\x1b" + b["created"].to_bytes(8, "big")
    out = base.replace(b"\x67created" + created, b"\x67created" + long, 1)
    assert out != base
    return out


def resign_hub_record(record: bytes, edit: Callable[[list[Any]], None]) -> bytes:
    """A record of the hub's own log with its payload edited and signed again by the hub."""
    p = payload_of(record)
    edit(p)
    return resign_record(record, example_hub(), encode(p))


def hub_log_tamperings(base: bytes, older: bytes) -> Iterator[Case]:
    """Decisions dropped, altered, back-dated, re-signed or added in the hub's own log (FORMAT.md §6.2, §12.3 step 5)."""
    b0 = cbor2.loads(base)
    hub_log = b0["hub_log"]
    key = stranger()
    n = len(hub_log)

    def hub_edit(fn: Callable[[list[bytes]], Any]) -> Edit:
        return lambda b: fn(b["hub_log"])

    def body_edit(i: int, fn: Callable[[dict[str, Any]], None]) -> Edit:
        def edit(b: dict[str, Any]) -> None:
            def payload(p: list[Any]) -> None:
                fn(p[7])
            b["hub_log"][i] = resign_hub_record(b["hub_log"][i], payload)
        return edit

    for resealed in (False, True):
        for i in range(n):
            yield edited(base, f"hub log drop record {i}", hub_edit(lambda h, i=i: h.pop(i)), resealed=resealed)
            yield edited(base, f"hub log re-sign record {i} with another key",
                         hub_edit(lambda h, i=i: h.__setitem__(i, resign_record(h[i], key))), resealed=resealed)
            yield edited(base, f"hub log record {i} truncated", hub_edit(lambda h, i=i: h.__setitem__(i, h[i][:-1])),
                         resealed=resealed)
            yield edited(base, f"hub log duplicate record {i}", hub_edit(lambda h, i=i: h.insert(i, h[i])), resealed=resealed)
        for i in range(n - 1):
            def swap(h: list[bytes], i: int = i) -> None:
                h[i], h[i + 1] = h[i + 1], h[i]
            yield edited(base, f"hub log swap records {i} and {i + 1}", hub_edit(swap), resealed=resealed)
        for keep in range(1, n):
            yield edited(base, f"hub log truncated to {keep} records", hub_edit(lambda h, keep=keep: h.__delitem__(slice(keep, None))),
                         resealed=resealed)
        for i, raw in enumerate(hub_log):
            body = payload_of(raw)[7]
            action = body.get("action")
            if action is None:
                continue
            for at in (0, 1, 3, 5, 99):
                yield edited(base, f"hub log {action} {i} from seq {at} (re-signed by the hub)",
                             body_edit(i, lambda bd, at=at: bd.__setitem__("from_seq", at)), resealed=resealed)
            for other in ("approve", "withdraw", "revoke", "rotate"):
                if other != action:
                    yield edited(base, f"hub log {action} {i} turned into {other} (re-signed by the hub)",
                                 body_edit(i, lambda bd, o=other: bd.__setitem__("action", o)), resealed=resealed)
            yield edited(base, f"hub log {action} {i} about another device (re-signed by the hub)",
                         body_edit(i, lambda bd: bd.__setitem__("device", bytes(16))), resealed=resealed)
            if "key" in body:
                yield edited(base, f"hub log {action} {i} with a stranger's key (re-signed by the hub)",
                             body_edit(i, lambda bd: bd.__setitem__("key", public(key))), resealed=resealed)
                yield edited(base, f"hub log {action} {i} without its key (re-signed by the hub)",
                             body_edit(i, lambda bd: bd.pop("key")), resealed=resealed)
        # A decision appended past the head the checkpoints name: a revocation of every device from genesis.
        for li, log in enumerate(b0["logs"]):
            def add(h: list[bytes], dev: bytes = log["device"]) -> None:
                def payload(p: list[Any]) -> None:
                    p[2] += 1
                    p[3] = record_id(h[-1])
                    p[7] = {"action": "revoke", "device": dev, "from_seq": 0}
                h.append(resign_hub_record(h[-1], payload))
            yield edited(base, f"hub log appends a revocation of log {li} from seq 0", hub_edit(add), resealed=resealed)
    # A hub-log record of a kind a hub's log does not hold (after its genesis), signed by the hub.
    for kind, body in ((5, {"text": "catatan hub"}), (1, {"event": "served", "site": "x"}), (0, {"pubkey": public(key)})):
        def other_kind(p: list[Any], kind: int = kind, body: dict[str, Any] = body) -> None:
            p[6], p[7] = kind, body
        yield edited(base, f"hub log record {n - 1} made a kind {kind} record (re-signed by the hub)",
                     hub_edit(lambda h, f=other_kind: h.__setitem__(n - 1, resign_hub_record(h[n - 1], f))), resealed=True)
    yield edited(base, "hub log of the older bundle", lambda b: b.__setitem__("hub_log", cbor2.loads(older)["hub_log"]),
                 resealed=True)
    yield edited(older, "older bundle's hub log of the newer bundle", lambda b: b.__setitem__("hub_log", hub_log), resealed=True)
    yield edited(base, "hub log decision dropped, against older", hub_edit(lambda h: h.pop()), against=older, resealed=True)
    yield edited(base, "hub log head record re-signed, against older",
                 hub_edit(lambda h: h.__setitem__(1, resign_hub_record(h[1], lambda p: p.__setitem__(4, p[4] + 1)))),
                 against=older, resealed=True)


def seal_tamperings(base: bytes, older: bytes) -> Iterator[Case]:
    """The seal itself changed, and changes to what it covers, unsealed and sealed again by the hub."""
    b0 = cbor2.loads(base)
    protected, unprotected, payload, sig = cbor2.loads(b0["seal"]).value
    key = stranger()
    yield edited(base, "seal sealed again (unchanged)", lambda b: None, resealed=True)
    yield edited(base, "seal by a stranger", lambda b: b.__setitem__("seal", seal(b, key)))
    yield edited(base, "seal empty", lambda b: b.__setitem__("seal", b""))
    yield edited(base, "seal untagged", lambda b: b.__setitem__("seal", encode([protected, unprotected, payload, sig])))
    yield edited(base, "seal with the digest attached",
                 lambda b: b.__setitem__("seal", encode(cbor2.CBORTag(18, [protected, unprotected, bytes(32), sig]))))
    yield edited(base, "seal with a kid",
                 lambda b: b.__setitem__("seal", encode(cbor2.CBORTag(18, [protected, {4: bytes(16)}, payload, sig]))))
    yield edited(base, "seal with alg in the unprotected header",
                 lambda b: b.__setitem__("seal", encode(cbor2.CBORTag(18, [b"", {1: -8}, payload, sig]))))
    yield edited(base, "seal of a record's signature",
                 lambda b: b.__setitem__("seal", encode(cbor2.CBORTag(18, [protected, {}, None, cbor2.loads(b["hub_log"][0]).value[3]]))))
    yield edited(base, "seal signature one byte short",
                 lambda b: b.__setitem__("seal", encode(cbor2.CBORTag(18, [protected, unprotected, payload, sig[:-1]]))))
    for resealed in (False, True):
        yield edited(base, "description changed", lambda b: b.__setitem__("description", "x"), resealed=resealed)
        yield edited(base, "description dropped", lambda b: b.pop("description"), resealed=resealed)
        yield edited(base, "created back-dated", lambda b: b.__setitem__("created", b["created"] - 86400), resealed=resealed)
        yield edited(base, "a log dropped", lambda b: b["logs"].pop(0), resealed=resealed)
        yield edited(base, "the tail of a log dropped with its receipts", drop_tail(0, 2), resealed=resealed)
        yield edited(base, "a log and its receipts dropped", drop_log(0), resealed=resealed)
        for li, log in enumerate(b0["logs"]):
            if log["bodies"]:
                yield edited(base, f"log {li} detached body stripped",
                             lambda b, li=li: b["logs"][li].__setitem__("bodies", []), resealed=resealed)
        yield edited(base, "largest checkpoint dropped", lambda b: b["checkpoints"].pop(), resealed=resealed)
        yield edited(base, "consistency dropped", lambda b: b.__setitem__("consistency", []), resealed=resealed)
        yield edited(base, "fork evidence of one record twice", lambda b: b["forks"].append(
            encode([b["logs"][0]["records"][1], b["logs"][0]["records"][1]])), resealed=resealed)
    yield edited(base, "a log dropped, against older", lambda b: b["logs"].pop(0), against=older, resealed=True)
    # Checkpoints of size 0 signed by the hub: over the empty tree's root (needs no proof), and over another root,
    # a false statement that verifies all the same (FORMAT.md §12.3, notes).
    for what, root in (("the empty tree's root", hashlib.sha256(b"").digest()), ("a false root", bytes(32))):
        yield edited(base, f"a checkpoint of size 0 over {what}", lambda b, root=root: b["checkpoints"].insert(
            0, checkpoint_of_size_0(b["checkpoints"][0], root, example_hub())), resealed=True)
    # Two failures in one log: a detached body that does not match (§12.3 step 6.5) before a record signed by a
    # stranger (step 6.4); the earlier seq is the log's verdict.
    for li, log in enumerate(b0["logs"]):
        if log["bodies"]:
            seq = log["bodies"][0][0]
            last = len(log["records"]) - 1
            def both(b: dict[str, Any], li: int = li, last: int = last) -> None:
                lg = b["logs"][li]
                lg["bodies"][0] = [lg["bodies"][0][0], lg["bodies"][0][1][:-1]]
                lg["records"][last] = resign_record(lg["records"][last], key)
            yield edited(base, f"log {li} body of seq {seq} short and record {last} re-signed by a stranger", both,
                         resealed=True)
            # Fork evidence for a device whose key list is broken.
            def broken_keys(b: dict[str, Any], li: int = li) -> None:
                lg = b["logs"][li]
                lg["keys"] = [lg["records"][1]]
                r1 = lg["records"][1]
                b["forks"].append(encode([r1, resign_record(r1, key, reencode_time(r1))]))
            yield edited(base, f"log {li} key list broken and fork evidence for it", broken_keys, resealed=True)


def device_tamperings(base: bytes) -> Iterator[Case]:
    """What only a device's own key can do: forks and records past the hub's revocation point, sealed by the hub."""
    b0 = cbor2.loads(base)
    kitchen = example_device("sppg-bandung-01/kitchen-exit")
    gate = example_device("sdn-cibeunying-2/school-gate")
    stall = example_device("pasar-kosambi/stall-17")  # its genesis key; it rotated at seq 3
    li = next(i for i, lg in enumerate(b0["logs"]) if lg["device"] == hashlib.sha256(
        b"jejak/device-id/v1" + public(kitchen)).digest()[:16])
    gi = next(i for i, lg in enumerate(b0["logs"]) if lg["device"] == hashlib.sha256(
        b"jejak/device-id/v1" + public(gate)).digest()[:16])
    si = next(i for i, lg in enumerate(b0["logs"]) if len(lg["keys"]) > 1)
    r2 = b0["logs"][li]["records"][2]
    fork = encode([r2, resign_record(r2, kitchen, reencode_time(r2))])
    for resealed in (False, True):
        yield edited(base, "valid fork evidence of the kitchen", lambda b: b["forks"].append(fork), resealed=resealed)
        yield edited(base, "the kitchen's fork offered inside its log",
                     lambda b: b["logs"][li]["records"].insert(3, cbor2.loads(fork)[1]), resealed=resealed)
        yield edited(base, "the gate signs a record past its revocation point",
                     lambda b: b["logs"][gi]["records"].append(next_record(b["logs"][gi]["records"][-1], gate)),
                     resealed=resealed)
        yield edited(base, "the kitchen appends a record without its receipt",
                     lambda b: b["logs"][li]["records"].append(next_record(b["logs"][li]["records"][-1], kitchen)),
                     resealed=resealed)
        yield edited(base, "the stall signs with its rotated-away key",
                     lambda b: b["logs"][si]["records"].append(next_record(b["logs"][si]["records"][-1], stall)),
                     resealed=resealed)
    r4 = b0["logs"][si]["records"][4]
    yield edited(base, "fork evidence past the stall's rotation, signed with its old key",
                 lambda b: b["forks"].append(encode([r4, resign_record(r4, stall, reencode_time(r4))])), resealed=True)
    yield edited(base, "fork evidence of a device the bundle has no log of", lambda b: (b["forks"].append(fork), b["logs"].pop(li)),
                 resealed=True)


def drop_tail(li: int, keep: int) -> Edit:
    def edit(b: dict[str, Any]) -> None:
        log = b["logs"][li]
        gone = {record_id(r) for r in log["records"][keep:]}
        log["records"] = log["records"][:keep]
        log["bodies"] = [e for e in log["bodies"] if e[0] < keep]
        b["receipts"] = [r for r in b["receipts"] if r[0] not in gone]
    return edit


def drop_log(li: int) -> Edit:
    def edit(b: dict[str, Any]) -> None:
        gone = {record_id(r) for r in b["logs"][li]["records"]}
        b["logs"].pop(li)
        b["receipts"] = [r for r in b["receipts"] if r[0] not in gone]
    return edit


def decision_flips(base: bytes, count: int = 200, seed: int = SEED) -> Iterator[Case]:
    """Single-bit changes of the hub's revocation decision (the last record of its own log), sealed or not."""
    b0 = cbor2.loads(base)
    raw = b0["hub_log"][-1]
    at = base.index(raw)
    rng = random.Random(f"{seed}:decision")
    for bit in sorted(rng.sample(range(len(raw) * 8), min(count, len(raw) * 8))):
        flipped = bytearray(base)
        flipped[at + bit // 8] ^= 1 << (bit % 8)
        yield Case(name=f"revocation decision bit {bit}", bundle=bytes(flipped))


def tamper_set(flips: int = FLIPS_PER_BUNDLE, seed: int = SEED) -> list[Case]:
    base, older = EXAMPLE.read_bytes(), OLDER.read_bytes()
    cases = list(structural(base, older))
    cases += decision_flips(base)
    cases += bit_flips("example", base, flips, seed, against=older)
    cases += bit_flips("example-older", older, flips, seed)
    cases += older_flips(base, older, flips // 4, seed)
    return cases
