"""Coverage-guided fuzzing of the ledger's decoders with atheris (libFuzzer, in-process).

Each target feeds libFuzzer's bytes to one entry point that reads untrusted bytes. The contract is the same
for all: any input gives a result or a typed error (a `ledger.errors.CodedError` subclass, mostly
`MalformedRecord`); any other exception, a broken property (a strict decoder's round trip), a hang or a
memory blow-up is a crash. The ledger is imported under `atheris.instrument_imports`, so libFuzzer sees its
branches and comparisons (cbor2's C decoder is not instrumented: its inputs reach it all the same).

libFuzzer exits the process on the first crash, so every target runs in its own subprocess
(`python -m tests.harness.fuzz --run-one NAME`, one at a time); this process reads its report: inputs tried,
coverage (libFuzzer's `cov`: instrumented edges of the ledger's bytecode), corpus size, and the crashing
input that libFuzzer wrote to the artifacts directory. Seeds: every byte string of tests/vectors (the .cbor
files and the hex in the JSON vectors), the bundles in docs/examples, and sync messages, chain states and
bodies built from the records among them.

    python -m tests.harness.fuzz                                every target, 20,000 inputs each
    python -m tests.harness.fuzz --target record --seconds 300  one target for five minutes
    python -m tests.harness.fuzz --target record --replay FILE  run one saved input (a crash) again
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TestOne = Callable[[bytes], None]
DEFAULT_RUNS = 20_000
INPUT_TIMEOUT = 25  # seconds one input may take before libFuzzer calls it a hang
RSS_LIMIT_MB = 2048


@dataclasses.dataclass(frozen=True)
class Target:
    """One fuzz target. `build` runs in the fuzzing subprocess after the modules in `instrument` were
    imported under atheris' instrumentation; it returns the function libFuzzer calls with each input."""

    name: str
    doc: str
    build: Callable[[], TestOne]
    instrument: tuple[str, ...] = ("ledger",)
    seeds: Callable[[], list[bytes]] = lambda: seed_pool()
    max_len: int = 4096


# --- seeds ----------------------------------------------------------------------------------------------

_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){2,}")


def _walk_hex(value: Any) -> Iterator[bytes]:
    if isinstance(value, str) and _HEX.fullmatch(value):
        yield bytes.fromhex(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_hex(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_hex(v)


def vector_blobs() -> list[bytes]:
    """Every byte string of the test vectors and the example bundles, in a stable order, without repeats."""
    out: dict[bytes, None] = {}
    vectors = ROOT / "tests" / "vectors"
    for path in sorted(vectors.rglob("*")) if vectors.is_dir() else []:
        if path.suffix == ".cbor":
            out[path.read_bytes()] = None
        elif path.suffix == ".json":
            for blob in _walk_hex(json.loads(path.read_text())):
                out[blob] = None
    examples = ROOT / "docs" / "examples"
    for path in sorted(examples.glob("*.jejak")) if examples.is_dir() else []:
        out[path.read_bytes()] = None
    return list(out)


def _vector_lists() -> Iterator[list[bytes]]:
    """Lists of byte strings in the JSON vectors, in order (chains of records are such lists)."""
    vectors = ROOT / "tests" / "vectors"

    def walk(value: Any) -> Iterator[list[bytes]]:
        if isinstance(value, list):
            blobs = [b for v in value for b in _walk_hex(v.get("cose") if isinstance(v, dict) else v)]
            if blobs:
                yield blobs
            for v in value:
                yield from walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                yield from walk(v)

    for path in sorted(vectors.rglob("*.json")) if vectors.is_dir() else []:
        yield from walk(json.loads(path.read_text()))


@dataclasses.dataclass
class Corpus:
    """What the seeds and the targets need from the vectors: records, chains, keys, checkpoints."""

    blobs: list[bytes]
    chains: list[list[bytes]]  # runs of records of one device, as the vectors and bundles list them
    keys: dict[bytes, bytes]  # device or hub id -> the 32-byte public key that derives it
    hub_key: bytes
    leaf: bytes  # a record the hub's receipts cover
    bundles: list[bytes]  # bundles that decode, oldest first


_CORPUS: Corpus | None = None


def corpus() -> Corpus:
    """Read once per process, after the ledger was imported (under instrumentation in a fuzzing process)."""
    global _CORPUS
    if _CORPUS is not None:
        return _CORPUS
    from ledger import LedgerError, decode_bundle, decode_record, device_id_for

    blobs = vector_blobs()
    keys = {device_id_for(b): b for b in blobs if len(b) == 32}
    chains: list[list[bytes]] = []
    bundles: list[bytes] = []
    for blob in blobs:
        try:
            bundle = decode_bundle(blob)
        except LedgerError:
            continue
        bundles.append(blob)
        chains.extend(log.keys + log.records for log in bundle.logs if log.records)
    for blobs_list in _vector_lists():
        good = []
        for raw in blobs_list:
            try:
                decode_record(raw)
            except LedgerError:
                continue
            good.append(raw)
        if good:
            chains.append(good)
    hub_key, leaf = _receipt_pair(blobs, keys, chains)
    _CORPUS = Corpus(blobs=blobs, chains=chains, keys=keys, hub_key=hub_key, leaf=leaf,
                     bundles=sorted(bundles, key=len))
    return _CORPUS


def _receipt_pair(blobs: list[bytes], keys: dict[bytes, bytes], chains: list[list[bytes]]) -> tuple[bytes, bytes]:
    """A hub key and a record that one of the vectors' receipts proves under that key."""
    from ledger import LedgerError, verify_receipt
    from ledger.cose import parse_sign1

    leaves = list(dict.fromkeys(raw for chain in chains for raw in chain))
    for blob in blobs:
        try:
            msg = parse_sign1(blob)
        except LedgerError:
            continue
        key = keys.get(msg.kid or b"")
        if msg.payload is not None or key is None:
            continue
        for leaf in leaves:
            try:
                verify_receipt(blob, leaf, key)
            except LedgerError:
                continue
            return key, leaf
    return bytes(32), leaves[0] if leaves else b""


def seed_pool() -> list[bytes]:
    return corpus().blobs


def _sync_seeds() -> list[bytes]:
    from ledger import decode_record
    from ledger.sync import Head, encode_heads, encode_records

    out = list(seed_pool())
    heads = []
    for chain in corpus().chains:
        first, last = decode_record(chain[0]), decode_record(chain[-1])
        out.append(encode_records(first.device_id, first.seq, chain))
        out.append(encode_records(first.device_id, first.seq, chain[:1]))
        heads.append(Head(device_id=last.device_id, length=last.seq + 1, head=last.id))
        out.append(encode_heads(heads[-1:]))
    out.append(encode_heads(heads))
    out.append(encode_heads([]))
    return out


def _bundle_seeds() -> list[bytes]:
    """The example bundles, and small ones (a log or two, fork evidence) that verify a hundred times faster."""
    import dataclasses

    from ledger import BundleWriter, Ed25519Signer, ForkEvidence, LedgerError, Record, decode_record

    out = list(seed_pool())
    chains: list[list[Record]] = []
    for chain in corpus().chains:
        genesis = decode_record(chain[0])
        if genesis.seq == 0 and genesis.kind == "key":
            chains.append([decode_record(raw) for raw in chain[:3]])
    forks = []
    for blob in seed_pool():
        try:
            ForkEvidence.from_cbor(blob)
        except LedgerError:
            continue
        forks.append(blob)
    hub = Ed25519Signer.from_seed(b"\x5e" * 32)
    for i, records in enumerate(chains):
        writer = BundleWriter(hub, clock=lambda: 1)
        writer.accept(*records)
        writer.checkpoint(2)
        evidence = forks[i % len(forks):][:1] if forks else []
        out.append(dataclasses.replace(writer.bundle(created=3), forks=evidence).sealed(hub).encode())
    writer = BundleWriter(hub, clock=lambda: 1)
    for records in chains[:2]:
        writer.accept(*records)
    writer.checkpoint(2)
    out.append(dataclasses.replace(writer.bundle(created=3), forks=forks).sealed(hub).encode())
    return out


def _state_seeds() -> list[bytes]:
    from ledger import ChainState, LedgerError, decode_record, verify_chain

    out = list(seed_pool())
    for chain in corpus().chains:
        out.append(ChainState.empty(decode_record(chain[0]).device_id).to_cbor())
        for n in range(1, len(chain) + 1):
            try:
                out.append(verify_chain(chain[:n]).to_cbor())
            except LedgerError:
                break
    return out


def _body_seeds() -> list[bytes]:
    from ledger import cbor, decode_record

    kinds = _body_kinds()
    out = [bytes([i]) + blob for i in range(len(kinds)) for blob in seed_pool() if len(blob) < 600]
    for chain in corpus().chains:
        for raw in chain:
            rec = decode_record(raw)
            if rec.body is not None and rec.kind in kinds:
                out.append(bytes([kinds.index(rec.kind)]) + cbor.encode(rec.body))
    return out


def _body_kinds() -> list[str]:
    from ledger import KINDS

    return sorted(k for k in KINDS if k != "key")  # key records carry their body inline, never detached


def _proof_seeds() -> list[bytes]:
    return [bytes(range(i, i + 40)) for i in range(0, 200, 8)] + [bytes([i]) * 48 for i in (0, 1, 7, 255)]


# --- targets: each returns the function libFuzzer calls ----------------------------------------------------


def _cbor() -> TestOne:
    from ledger import cbor
    from ledger.errors import MalformedRecord

    def run(data: bytes) -> None:
        for tag in (None, 18):
            try:
                cbor.decode(data, tag=tag)
            except MalformedRecord:
                pass

    return run


def _cbor_roundtrip() -> TestOne:
    import cbor2

    from ledger import cbor
    from ledger.errors import MalformedRecord

    def run(data: bytes) -> None:
        # The decoder is strict: it accepts only RFC 8949 §4.2.1 deterministic encodings, so whatever it
        # accepts must re-encode to exactly the input, and it returns maps already in canonical key order.
        for tag in (None, 18):
            try:
                value = cbor.decode(data, tag=tag)
            except MalformedRecord:
                continue
            again = cbor.encode(value.value, tag=tag) if isinstance(value, cbor2.CBORTag) else cbor.encode(value)
            if again != data:
                raise AssertionError(f"decode accepted {data.hex()}, which re-encodes to {again.hex()}")
            if cbor2.dumps(value) != data:
                raise AssertionError(f"decode of {data.hex()} returned maps out of canonical order")
            if cbor.decode(again, tag=tag) != value:
                raise AssertionError(f"decode(encode(decode({data.hex()}))) differs")
        try:
            inner = cbor.decode(data, depth=1)  # as a record body is decoded: one level deeper
        except MalformedRecord:
            return
        if cbor.decode(data) != inner:
            raise AssertionError(f"{data.hex()}: decoding at depth 1 and 0 differ")

    return run


def _record() -> TestOne:
    from ledger import ChainState, LedgerError, MalformedRecord, decode_record, link

    def run(data: bytes) -> None:
        try:
            rec = decode_record(data)
        except MalformedRecord:
            return
        if rec.raw != data or rec.id != hashlib.sha256(data).digest():
            raise AssertionError("decoded record does not keep its raw bytes and id")
        json.dumps(rec.to_json())
        try:
            if rec.seq == 0:
                link(ChainState.empty(rec.device_id), rec)
            rec.verify_signature(corpus().keys.get(rec.device_id, corpus().hub_key))
        except LedgerError:
            pass

    return run


def _record_fastpath() -> TestOne:
    from ledger import MalformedRecord, Record, cbor, decode_record
    from ledger import record as record_mod

    def outcome(data: bytes) -> Record | None:
        try:
            return decode_record(data)
        except MalformedRecord:
            return None

    patched = {record_mod: "_split_payload", cbor: "_flat_in_order"}
    saved = {mod: vars(mod)[name] for mod, name in patched.items()}

    def run(data: bytes) -> None:
        # The byte-level fast paths must accept exactly what the generic decoder accepts, with equal results.
        fast = outcome(data)
        for mod, name in patched.items():
            vars(mod)[name] = lambda *args: None  # "not on the fast path": the generic decoder takes over
        try:
            slow = outcome(data)
        finally:
            for mod, name in patched.items():
                vars(mod)[name] = saved[mod]
        if fast != slow:
            raise AssertionError(f"fast path gives {fast!r}, generic path {slow!r}")

    return run


def _detached_body() -> TestOne:
    from ledger import Ed25519Signer, MalformedRecord, encode_record

    template = encode_record(Ed25519Signer.from_seed(bytes(32)), device_id=bytes(16), seq=1, prev=bytes(32),
                             time=1, boot=1, kind="note", body={"text": "x"}, detach=True)
    kinds = _body_kinds()

    def run(data: bytes) -> None:
        # Record.with_body after the digest check (which the fuzzer cannot pass): decode and validate a body.
        kind = kinds[data[0] % len(kinds)] if data else "note"
        body = data[1:]
        rec = dataclasses.replace(template, kind=kind, body_ref=(hashlib.sha256(body).digest(), len(body)))
        try:
            rec.with_body(body)
        except MalformedRecord:
            pass

    return run


def _sign1() -> TestOne:
    from ledger import LedgerError, MalformedRecord
    from ledger.cose import parse_sign1

    def run(data: bytes) -> None:
        try:
            msg = parse_sign1(data)
        except MalformedRecord:
            return
        _ = msg.kid
        try:
            msg.verify(corpus().hub_key, b"")
        except LedgerError:
            pass

    return run


def _checkpoint() -> TestOne:
    from ledger import LedgerError, MalformedRecord, decode_checkpoint, verify_checkpoints_consistent

    def run(data: bytes) -> None:
        try:
            cp = decode_checkpoint(data)
        except MalformedRecord:
            return
        json.dumps(cp.to_json())
        try:
            cp.verify(corpus().hub_key)
            verify_checkpoints_consistent(cp, cp, [], corpus().hub_key)
        except LedgerError:
            pass

    return run


def _receipt() -> TestOne:
    from ledger import LedgerError, verify_receipt

    def run(data: bytes) -> None:
        try:
            verify_receipt(data, corpus().leaf, corpus().hub_key)
        except LedgerError:
            pass

    return run


def _bundle() -> TestOne:
    from ledger import LedgerError, verify_bundle

    def run(data: bytes) -> None:
        try:
            report = verify_bundle(data)
        except LedgerError:
            return
        json.dumps(report.to_json())
        _ = report.exit_code

    return run


def _bundle_compare() -> TestOne:
    from ledger import LedgerError, compare_bundles

    def run(data: bytes) -> None:
        bundles = corpus().bundles
        for older, newer in ((bundles[0], data), (data, bundles[-1])) if bundles else ():
            try:
                compare_bundles(older, newer)
            except LedgerError:
                pass

    return run


def _chain_state() -> TestOne:
    from ledger import ChainState, MalformedRecord

    def run(data: bytes) -> None:
        try:
            state = ChainState.from_cbor(data)
        except MalformedRecord:
            return
        if state.to_cbor() != data:
            raise AssertionError(f"chain state {data.hex()} re-encodes to {state.to_cbor().hex()}")

    return run


def _fork_evidence() -> TestOne:
    from ledger import ForkEvidence, LedgerError, MalformedRecord

    def run(data: bytes) -> None:
        try:
            evidence = ForkEvidence.from_cbor(data)
        except MalformedRecord:
            return
        if evidence.to_cbor() != data:
            raise AssertionError("fork evidence does not re-encode to its input")
        for key in (None, corpus().keys.get(evidence.device_id)):
            try:
                evidence.verify(key)
            except LedgerError:
                pass
        _ = evidence.error()

    return run


def _sync_heads() -> TestOne:
    from ledger import LedgerError, decode_record
    from ledger.sync import Fetch, Head, Limits, decode_heads, encode_heads, plan

    limits = Limits()
    mine: dict[bytes, Head] = {}  # this node's own logs: the vectors' chains (real lengths, not the peer's word)
    for chain in corpus().chains:
        last = decode_record(chain[-1])
        mine.setdefault(last.device_id, Head(device_id=last.device_id, length=last.seq + 1, head=last.id))

    def run(data: bytes) -> None:
        try:
            heads = decode_heads(data, limits)
        except LedgerError:
            return
        if encode_heads(heads) != data:
            raise AssertionError(f"heads message {data.hex()} re-encodes to {encode_heads(heads).hex()}")
        # What a node does with a peer's heads: plan fetches and pushes against its own. The peer's lengths
        # are only its word: they may cost at most one fetch per log, whatever they claim.
        for local in (mine, {}):
            fetches = sum(isinstance(a, Fetch) for a in plan(local, heads, limits=limits))
            if fetches > len(heads):
                raise AssertionError(f"{len(heads)} heads planned as {fetches} fetches")

    return run


def _sync_records() -> TestOne:
    from ledger import ChainState, LedgerError, verify_chain
    from ledger.acceptance import accept
    from ledger.sync import Limits, decode_records, encode_records

    limits = Limits()

    def run(data: bytes) -> None:
        try:
            device_id, start, raws = decode_records(data, limits)
        except LedgerError:
            return
        if encode_records(device_id, start, raws) != data:
            raise AssertionError(f"records message {data.hex()} does not re-encode to itself")
        accept(ChainState.empty(device_id), raws)  # never raises: a problem is part of its answer
        try:
            verify_chain(raws)
        except LedgerError:
            pass

    return run


def _merkle_proofs() -> TestOne:
    import atheris

    from ledger import BadProof, MerkleTree, leaf_hash, verify_consistency, verify_inclusion

    trees = {n: MerkleTree(leaf_hash(b"%d" % i) for i in range(n)) for n in range(1, 65)}

    def proof(fdp: Any, honest: list[bytes]) -> list[bytes]:
        # Start from the honest proof and let the input drop, add or change entries.
        out = list(honest)
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            op = fdp.ConsumeIntInRange(0, 3)
            i = fdp.ConsumeIntInRange(0, len(out))
            if op == 0 and out:
                del out[min(i, len(out) - 1)]
            elif op == 1:
                out.insert(i, fdp.ConsumeBytes(32 if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 40)))
            elif op == 2 and out:
                out[min(i, len(out) - 1)] = fdp.ConsumeBytes(32)
            elif op == 3:
                out.append(out[0] if out else bytes(32))
        return out

    def number(fdp: Any, honest: int) -> int:
        choice = fdp.ConsumeIntInRange(0, 3)
        if choice == 0:
            return honest
        if choice == 1:
            return honest + int(fdp.ConsumeIntInRange(-3, 3))
        return int(fdp.ConsumeIntInRange(-1, 2**64))

    def run(data: bytes) -> None:
        # Soundness: a proof is accepted only if its path is the honest one: no other hashes lead to the root.
        # The sizes and index are not all bound by the hashes (RFC 9162: the proof of 7 -> 40 also verifies as
        # 7 -> 39 against the same root); a checkpoint's signature binds its size to its root.
        fdp = atheris.FuzzedDataProvider(data)
        n = fdp.ConsumeIntInRange(1, 64)
        tree = trees[n]
        if fdp.ConsumeBool():
            i = fdp.ConsumeIntInRange(0, n - 1)
            honest = tree.inclusion_proof(i)
            index, size, path = number(fdp, i), number(fdp, n), proof(fdp, honest)
            try:
                verify_inclusion(leaf_hash(b"%d" % i), index, size, path, tree.root())
            except BadProof:
                return
            if path != honest:
                raise AssertionError(f"forged inclusion proof accepted: leaf {i} of {n} as {index} of {size}")
        else:
            m = fdp.ConsumeIntInRange(1, n)
            honest = tree.consistency_proof(m) if m < n else []
            first, second, path = number(fdp, m), number(fdp, n), proof(fdp, honest)
            try:
                verify_consistency(first, second, tree.root(m), tree.root(), path)
            except BadProof:
                return
            if path != honest:
                raise AssertionError(f"forged consistency proof accepted: {m}->{n} as {first}->{second}")

    return run


def _enroll_request() -> TestOne:
    from ledger.enroll import read_enroll_request
    from ledger.errors import CodedError

    def run(data: bytes) -> None:
        try:
            read_enroll_request(data)
        except CodedError:
            pass

    return run


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("cbor", "ledger.cbor.decode, the strict deterministic-CBOR decoder (untagged and tag 18)", _cbor),
    Target("cbor_roundtrip", "ledger.cbor.decode: whatever it accepts re-encodes to exactly the input",
           _cbor_roundtrip),
    Target("record", "ledger.decode_record, then link/verify_signature on what it returns", _record,
           max_len=8400),
    Target("record_fastpath", "decode_record: the byte-level fast paths agree with the generic decoder",
           _record_fastpath, max_len=8400),
    Target("detached_body", "Record.with_body: a detached body's CBOR and its kind's schema", _detached_body,
           seeds=_body_seeds),
    Target("sign1", "ledger.cose.parse_sign1, any COSE_Sign1 (enrollment, grants, revocations)", _sign1),
    Target("checkpoint", "ledger.decode_checkpoint, then Checkpoint.verify", _checkpoint),
    Target("receipt", "ledger.verify_receipt on arbitrary receipt bytes", _receipt),
    Target("bundle", "ledger.verify_bundle on arbitrary bytes (decode_bundle and everything it checks)",
           _bundle, seeds=_bundle_seeds, max_len=32768),
    Target("bundle_compare", "ledger.compare_bundles against the example bundles", _bundle_compare,
           max_len=32768),
    Target("chain_state", "ChainState.from_cbor: a typed state or MalformedRecord, re-encoding to its input",
           _chain_state, seeds=_state_seeds, max_len=512),
    Target("fork_evidence", "ForkEvidence.from_cbor, then verify and error", _fork_evidence, max_len=17000),
    Target("sync_heads", "ledger.sync.decode_heads (re-encodes to its input), then plan", _sync_heads,
           seeds=_sync_seeds),
    Target("sync_records", "ledger.sync.decode_records, then accept and verify_chain", _sync_records,
           seeds=_sync_seeds, max_len=32768),
    Target("merkle_proofs", "verify_inclusion/verify_consistency: BadProof or the honest proof, nothing else",
           _merkle_proofs, seeds=_proof_seeds, max_len=512),
    Target("enroll_request", "ledger.enroll.read_enroll_request (the hub's /api/enroll body)", _enroll_request,
           instrument=("ledger",)),
)}


def resolve(ref: str) -> Target:
    """A target by name, or `module:attribute` for a target defined elsewhere (the tests' broken one)."""
    if ref in TARGETS:
        return TARGETS[ref]
    if ":" in ref:
        module, _, attr = ref.partition(":")
        target = getattr(importlib.import_module(module), attr)
        if isinstance(target, Target):
            return target
    raise SystemExit(f"python -m tests.harness.fuzz: unknown target {ref!r}; targets: {', '.join(TARGETS)}")


# --- the fuzzing subprocess ---------------------------------------------------------------------------------


def run_one(ref: str, *, runs: int | None, seconds: float | None, seed: int, artifacts: Path, work: Path,
            corpus_dir: Path | None, replay: Path | None) -> None:
    """Fuzz one target in this process; libFuzzer exits it (0 when done, non-zero on a crash)."""
    import atheris

    target = resolve(ref)
    early = [m for m in target.instrument if m in sys.modules]
    if early:  # a module imported before the hook would run uninstrumented: no coverage feedback
        raise SystemExit(f"python -m tests.harness.fuzz: {', '.join(early)} imported before instrumentation")
    with atheris.instrument_imports(include=list(target.instrument)):
        for module in target.instrument:
            importlib.import_module(module)
        test_one = target.build()
    args = [sys.argv[0], f"-seed={seed}", f"-max_len={target.max_len}", f"-timeout={INPUT_TIMEOUT}",
            f"-rss_limit_mb={RSS_LIMIT_MB}", f"-artifact_prefix={artifacts}/{target.name}-",
            "-print_final_stats=1"]
    seeds = 0
    if replay is not None:
        args.append(str(replay))
    else:
        seed_dir = work / "seeds"
        seed_dir.mkdir(parents=True, exist_ok=True)
        unique = {blob for blob in target.seeds() if 0 < len(blob) <= target.max_len}
        for blob in unique:
            (seed_dir / hashlib.sha1(blob).hexdigest()).write_bytes(blob)
        seeds = len(unique)
        found = corpus_dir or work / "corpus"
        found.mkdir(parents=True, exist_ok=True)
        args += [f"-runs={-1 if runs is None else runs}", str(found), str(seed_dir)]
        if seconds is not None:
            args.insert(1, f"-max_total_time={max(1, round(seconds))}")
    print("jejak-fuzz " + json.dumps({"target": target.name, "seeds": seeds, "instrument": target.instrument}),
          flush=True)
    atheris.Setup(args, test_one)
    atheris.Fuzz()


# --- the runner -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    target: str
    doc: str = ""
    inputs: int = 0
    coverage: int = 0  # libFuzzer's cov: instrumented edges reached
    features: int = 0  # libFuzzer's ft
    corpus: int = 0
    seeds: int = 0
    seconds: float = 0.0
    exit_code: int = 0
    crashes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    slow_units: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None  # the harness itself failed (no libFuzzer report)
    log: str = ""
    command: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.crashes and self.error is None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_KIND = re.compile(r"ERROR: libFuzzer: (.+)$", re.M)


def parse(outcome: Outcome, text: str) -> Outcome:
    """Fill `outcome` from libFuzzer's report (stderr) and the child's own first line."""
    for line in text.splitlines():
        if line.startswith("jejak-fuzz "):
            outcome.seeds = int(json.loads(line.split(" ", 1)[1]).get("seeds", 0))
    stats = {k: int(v) for k, v in _STAT.findall(text)}
    status = _STATUS.findall(text)
    if status:
        last = status[-1]
        outcome.inputs = int(last[0])
        outcome.coverage, outcome.features, outcome.corpus = int(last[1]), int(last[2]), int(last[3])
    runs = re.findall(r"^Done (\d+) runs", text, re.M)
    outcome.inputs = max([outcome.inputs, stats.get("number_of_executed_units", 0), *map(int, runs)])
    for path in _ARTIFACT.findall(text):
        # libFuzzer names the file by the finding: crash-, timeout-, oom-, slow-unit-, leak-.
        kind = Path(path).name.removeprefix(f"{outcome.target}-").split("-", 1)[0]
        crash: dict[str, Any] = {"file": path, "kind": kind}
        reason = _KIND.findall(text)
        if reason:
            crash["reason"] = reason[-1]
        marker = "=== Uncaught Python exception: ==="
        if marker in text:
            tail = text.split(marker, 1)[1].strip().splitlines()
            crash["exception"] = tail[0] if tail else ""
            crash["traceback"] = "\n".join(tail[:40])
        if kind == "slow":  # an input over 10 s: worth a look, but not a failure of the contract
            outcome.slow_units.append(path)
            continue
        p = Path(path)
        if p.is_file():
            data = p.read_bytes()
            crash["size"] = len(data)
            crash["input_hex"] = data[:2048].hex()
        outcome.crashes.append(crash)
    return outcome


def run_target(ref: str, *, runs: int | None = None, seconds: float | None = None, seed: int = 1,
               artifacts: Path = Path("fuzz-artifacts"), corpus_dir: Path | None = None,
               replay: Path | None = None, timeout: float | None = None,
               python: str = sys.executable) -> Outcome:
    """Run one target in a subprocess and read what it found. A crash leaves its input in `artifacts`."""
    target = resolve(ref)
    if runs is None and seconds is None and replay is None:
        runs = DEFAULT_RUNS
    artifacts = artifacts.resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"jejak-fuzz-{target.name}-"))
    cmd = [python, "-m", "tests.harness.fuzz", "--run-one", ref, "--seed", str(seed), "--artifacts", str(artifacts),
           "--work", str(work)]
    if runs is not None:
        cmd += ["--runs", str(runs)]
    if seconds is not None:
        cmd += ["--seconds", str(seconds)]
    if corpus_dir is not None:
        cmd += ["--corpus", str(corpus_dir.resolve())]
    if replay is not None:
        cmd += ["--replay", str(replay.resolve())]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    outcome = Outcome(target=target.name, doc=target.doc)
    started = time.monotonic()
    log = artifacts / f"{target.name}.log"
    try:
        with log.open("w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  cwd=ROOT, timeout=timeout, check=False)
        outcome.exit_code = proc.returncode
    except subprocess.TimeoutExpired:
        outcome.exit_code = -9
        outcome.error = f"no report within {timeout} s"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    outcome.seconds = round(time.monotonic() - started, 1)
    outcome.log = str(log)
    parse(outcome, log.read_text(errors="replace"))
    text = log.read_text(errors="replace")
    if replay is not None and outcome.exit_code != 0 and not outcome.crashes and "Uncaught Python" in text:
        outcome.crashes.append({"file": str(replay), "kind": "crash",
                                "exception": text.split("=== Uncaught Python exception: ===", 1)[1].strip()
                                .split("\n", 1)[0]})
    if outcome.exit_code != 0 and not outcome.crashes and outcome.error is None:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        outcome.error = f"exit code {outcome.exit_code} without a libFuzzer finding: " + " | ".join(tail)
    return outcome


def table(outcomes: Sequence[Outcome]) -> str:
    rows = ["| target | inputs tried | coverage (edges) | corpus | crashes | seconds |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for o in outcomes:
        crashes = str(len(o.crashes)) if o.error is None else f"error: {o.error[:60]}"
        rows.append(f"| {o.target} | {o.inputs:,} | {o.coverage:,} | {o.corpus:,} | {crashes} | {o.seconds} |")
    return "\n".join(rows)


def _line(o: Outcome) -> str:
    rate = f"{o.inputs / o.seconds:,.0f}/s" if o.seconds else "-"
    text = (f"fuzz: {o.target}: {o.inputs:,} inputs ({rate}), coverage {o.coverage:,} edges / {o.features:,} "
            f"features, corpus {o.corpus:,} from {o.seeds:,} seeds, {len(o.crashes)} crashes, {o.seconds} s")
    for crash in o.crashes:
        text += f"\n  {crash['kind']}: {crash.get('exception', '')}\n  input saved to {crash['file']}"
    if o.error:
        text += f"\n  harness error: {o.error}"
    return text


def run_all(refs: Iterable[str], *, runs: int | None, seconds: float | None, seed: int, artifacts: Path,
            corpus_root: Path | None = None, timeout: float | None = None,
            echo: Callable[[str], None] = print) -> list[Outcome]:
    """Run targets one after another (libFuzzer takes a whole core), printing each outcome."""
    outcomes = []
    for ref in refs:
        name = resolve(ref).name
        echo(f"fuzz: {name} ...")
        o = run_target(ref, runs=runs, seconds=seconds, seed=seed, artifacts=artifacts, timeout=timeout,
                       corpus_dir=corpus_root / name if corpus_root else None)
        size = f"--seconds {seconds:g}" if seconds is not None else f"--runs {runs if runs is not None else DEFAULT_RUNS}"
        o.command = f"python -m tests.harness.fuzz --target {ref} {size} --seed {seed}"
        echo(_line(o))
        outcomes.append(o)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", action="append", metavar="NAME|all",
                   help=f"target to run (repeatable; default all): {', '.join(TARGETS)}")
    p.add_argument("--runs", type=int, help=f"inputs per target (default {DEFAULT_RUNS:,} unless --seconds)")
    p.add_argument("--seconds", type=float, help="time per target; with --runs, whichever ends first")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (default 1)")
    p.add_argument("--json", default="fuzz.json", help="where to write the outcomes (default fuzz.json)")
    p.add_argument("--artifacts", default="fuzz-artifacts",
                   help="where crashing inputs and each target's libFuzzer log go (default fuzz-artifacts)")
    p.add_argument("--corpus", help="keep and grow each target's corpus in DIR/TARGET (default: temporary)")
    p.add_argument("--replay", type=Path, metavar="FILE", help="run one saved input through --target and exit")
    p.add_argument("--list", action="store_true", help="list the targets")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        run_one(args.run_one, runs=args.runs, seconds=args.seconds, seed=args.seed,
                artifacts=Path(args.artifacts), work=args.work or Path(tempfile.mkdtemp()),
                corpus_dir=Path(args.corpus) if args.corpus else None, replay=args.replay)
        return 0  # not reached: libFuzzer exits
    if args.list:
        for t in TARGETS.values():
            print(f"{t.name:16} {t.doc}")
        return 0
    refs = [r for t in (args.target or ["all"]) for r in (TARGETS if t == "all" else [t])]
    if args.replay is not None:
        if len(refs) != 1:
            p.error("--replay needs exactly one --target")
        o = run_target(refs[0], replay=args.replay, artifacts=Path(args.artifacts))
        print(_line(o))
        print(Path(o.log).read_text(errors="replace"))
        return 0 if o.ok else 1
    outcomes = run_all(refs, runs=args.runs, seconds=args.seconds, seed=args.seed,
                       artifacts=Path(args.artifacts), corpus_root=Path(args.corpus) if args.corpus else None)
    Path(args.json).write_text(json.dumps({"seed": args.seed, "runs": args.runs, "seconds": args.seconds,
                                           "started": int(time.time()),
                                           "outcomes": [o.to_json() for o in outcomes]}, indent=2))
    print(table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    # Run as tests.harness.fuzz, not __main__: targets defined elsewhere build on tests.harness.fuzz.Target.
    from tests.harness import fuzz

    sys.exit(fuzz.main())
