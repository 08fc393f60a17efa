"""Property tests: round trips, the strict-decoder invariant, tamper detection, and Merkle proofs for all sizes."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ledger
from ledger import cbor
from ledger.bodies import SCHEMAS, Field
from ledger.checkpoint import decode_checkpoint
from ledger.errors import LedgerError, MalformedRecord
from tools import verify as jejak_verify

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEY = ledger.Ed25519Signer.from_seed(bytes(range(32)))
HUB = ledger.Ed25519Signer.from_seed(bytes(range(1, 33)))


# --- strategies -----------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=24)


def field_value(name: str, spec: Field) -> st.SearchStrategy[Any]:
    if spec.choices is not None:
        return st.sampled_from(spec.choices)
    if spec.kind is bytes:
        return st.binary(min_size=32, max_size=32)
    if spec.kind is int:
        return st.integers(min_value=spec.minimum if spec.minimum is not None else -(2**40), max_value=2**40)
    if spec.kind is list:
        if spec.list_of is str:
            return st.lists(text, max_size=6)
        return st.lists(st.lists(st.binary(max_size=32) | st.integers(0, 2**32), max_size=3), max_size=4)
    if spec.kind is dict:
        return st.dictionaries(text, st.integers(-(2**31), 2**31) | text, max_size=4)
    return text


def body_for(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = SCHEMAS[kind]
    required = {n: field_value(n, s) for n, s in schema.items() if s.required}
    optional = {n: field_value(n, s) for n, s in schema.items() if not s.required}
    return st.fixed_dictionaries(required, optional=optional)


kinds = st.sampled_from(sorted(k for k in SCHEMAS if k != "key"))
bodies = kinds.flatmap(lambda k: st.tuples(st.just(k), body_for(k)))

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | text,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(text, inner, max_size=5)
    | st.dictionaries(st.integers(-(2**20), 2**20), inner, max_size=5),
    max_leaves=20,
)


def make_chain(n: int, *, detach_at: int | None = None) -> list[ledger.Record]:
    b = ledger.ChainBuilder(KEY, clock=itertools.count(1_700_000_000, 5).__next__, boot=2)
    recs = [b.genesis()]
    for i in range(1, n):
        recs.append(b.append("reading", {"site": "sppg-1", "temp_cc": 600 + i, "crowd": i},
                             detach=(i == detach_at)))
    return recs


CHAIN = make_chain(6, detach_at=3)
RAWS = [r.raw for r in CHAIN]
EXPECTED = ledger.verify_chain(RAWS)
FORK = ledger.encode_record(KEY, device_id=CHAIN[2].device_id, seq=2, prev=CHAIN[1].id, time=1, boot=2,
                            kind="note", body={"text": "another history"})


# --- round trips ----------------------------------------------------------------------------------------


@FAST
@given(cbor_values)
def test_cbor_round_trip(value: Any) -> None:
    data = cbor.encode(value)
    assert cbor.decode(data) == cbor.canonical(value)
    assert cbor.encode(cbor.decode(data)) == data  # canonical form is a fixed point


@FAST
@given(bodies, st.integers(1, 2**40), st.integers(0, 2**40), st.integers(0, 2**20), st.binary(min_size=32,
       max_size=32), st.booleans())
def test_record_round_trip(kind_body: tuple[str, dict[str, Any]], seq: int, time: int, boot: int, prev: bytes,
                           detach: bool) -> None:
    kind, body = kind_body
    try:
        rec = ledger.encode_record(KEY, device_id=bytes(16), seq=seq, prev=prev, time=time, boot=boot, kind=kind,
                                   body=body, detach=detach)
    except MalformedRecord:
        assume(False)  # an oversize body is refused at encoding; that is its own test
        raise
    got = ledger.decode_record(rec.raw)
    assert got == rec
    got.verify_signature(KEY.public_key)
    if detach:
        assert got.body is None
        full = got.with_body(cbor.encode(body))
        assert full.body == cbor.canonical(body)
    else:
        assert got.body == cbor.canonical(body)


@FAST
@given(st.binary(min_size=16, max_size=16), st.integers(0, 2**63), st.binary(min_size=32, max_size=32),
       st.binary(min_size=32, max_size=32) | st.just(b""), st.integers(0, 2**32), st.integers(0, 2**40))
def test_chain_state_round_trip(dev: bytes, length: int, head: bytes, key: bytes, boot: int, time: int) -> None:
    state = ledger.ChainState(device_id=dev, length=length, head=head, key=key, boot=boot, time=time)
    assert ledger.ChainState.from_cbor(state.to_cbor()) == state


# --- strict decoders: a value or MalformedRecord, nothing else -------------------------------------------


def mutations(base: bytes) -> st.SearchStrategy[bytes]:
    n = len(base)

    def flip(i: int, bit: int) -> bytes:
        b = bytearray(base)
        b[i % n] ^= 1 << bit
        return bytes(b)

    return st.one_of(
        st.tuples(st.integers(0, n - 1), st.integers(0, 7)).map(lambda t: flip(*t)),
        st.integers(0, n).map(lambda i: base[:i]),
        st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=4)).map(lambda t: base[:t[0]] + t[1] + base[t[0]:]),
        st.tuples(st.integers(0, n - 1), st.integers(1, 8)).map(lambda t: base[:t[0]] + base[t[0] + t[1]:]),
        st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=4)).map(
            lambda t: base[:t[0]] + t[1] + base[t[0] + len(t[1]):]),
    )


def only_malformed(fn: Any, data: bytes) -> Any:
    try:
        return fn(data)
    except MalformedRecord:
        return None


def _bundle(raws: list[bytes], *, receipts: bool = True) -> bytes:
    """The hub's bundle of CHAIN (checkpoints after seq 2 and at the end), with its log replaced by `raws`."""
    writer = ledger.BundleWriter(HUB, clock=lambda: 1_700_000_000)
    writer.accept(*CHAIN[:3])
    writer.checkpoint(1_700_000_100)
    writer.accept(*CHAIN[3:])
    writer.checkpoint(1_700_000_200)
    body = {3: cbor.encode({"site": "sppg-1", "temp_cc": 603, "crowd": 3})}
    bundle = writer.bundle(created=1_700_000_300, bodies={CHAIN[0].device_id: body})
    log = dataclasses.replace(bundle.logs[0], records=raws)
    return dataclasses.replace(bundle, logs=[log], receipts=bundle.receipts if receipts else []).sealed(HUB).encode()


BUNDLE = _bundle(RAWS)
CHECKPOINT = decode_checkpoint(ledger.decode_bundle(BUNDLE).checkpoints[1])


def test_base_bundle_verifies() -> None:
    report = ledger.verify_bundle(BUNDLE)
    assert report.ok, [str(p) for p in report.all_problems]
    assert report.receipts_checked == len(RAWS) + report.hub_log


DECODERS = {
    "decode_record": (ledger.decode_record, RAWS[1]),
    "decode_record_detached": (ledger.decode_record, RAWS[3]),
    "decode_checkpoint": (ledger.decode_checkpoint, CHECKPOINT.raw),
    "decode_bundle": (ledger.decode_bundle, BUNDLE),
    "chain_state": (ledger.ChainState.from_cbor, EXPECTED.to_cbor()),
    "cbor_decode": (cbor.decode, CHAIN[1].payload),
    "fork_evidence": (ledger.ForkEvidence.from_cbor, cbor.encode([RAWS[2], FORK.raw])),
}


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_random_bytes_give_a_value_or_malformed(name: str) -> None:
    fn, _ = DECODERS[name]

    @FUZZ
    @given(st.binary(max_size=300))
    def run(data: bytes) -> None:
        only_malformed(fn, data)

    run()


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_mutated_bytes_give_a_value_or_malformed(name: str) -> None:
    fn, base = DECODERS[name]
    fn(base)  # the unmutated input is valid

    @FUZZ
    @given(mutations(base))
    def run(data: bytes) -> None:
        only_malformed(fn, data)

    run()


@pytest.mark.parametrize("name", ["decode_bundle", "chain_state", "fork_evidence", "decode_checkpoint"])
def test_well_formed_cbor_of_the_wrong_shape_is_malformed(name: str) -> None:
    """Structure-aware fuzz: deterministic CBOR whose fields have random types and values."""
    fn, base = DECODERS[name]
    template = cbor.decode(base, tag=18)

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        value = _perturb(template, data)
        try:
            encoded = cbor.encode(value, tag=18 if name == "decode_checkpoint" else None)
        except MalformedRecord:
            return
        only_malformed(fn, encoded)

    run()


def _perturb(value: Any, data: st.DataObject, depth: int = 0) -> Any:
    """Replace one randomly chosen part of `value` with a random CBOR value."""
    if depth > 6 or data.draw(st.integers(0, 4), label="stop") == 0:
        return data.draw(cbor_values, label="replacement")
    if isinstance(value, dict) and value:
        k = data.draw(st.sampled_from(sorted(value, key=repr)), label="key")
        return {**value, k: _perturb(value[k], data, depth + 1)}
    if isinstance(value, list) and value:
        i = data.draw(st.integers(0, len(value) - 1), label="index")
        return [*value[:i], _perturb(value[i], data, depth + 1), *value[i + 1:]]
    if hasattr(value, "tag"):
        import cbor2
        return cbor2.CBORTag(value.tag, _perturb(value.value, data, depth + 1))
    return data.draw(cbor_values, label="replacement")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_verify_bundle_never_crashes_on_a_perturbed_bundle(data: st.DataObject) -> None:
    """Whatever the bundle holds, the auditor's verifier reports; it never dies of a Python error."""
    value = _perturb(cbor.decode(BUNDLE), data)
    try:
        report = ledger.verify_bundle(cbor.encode(value))
    except LedgerError:
        return
    assert isinstance(report.ok, bool)
    report.to_json()


# --- tamper detection -----------------------------------------------------------------------------------


def tampered_chains() -> st.SearchStrategy[tuple[str, list[bytes]]]:
    n = len(RAWS)

    def flip(t: tuple[int, int]) -> tuple[str, list[bytes]]:
        rec, pos = t
        raw = bytearray(RAWS[rec])
        raw[pos // 8] ^= 1 << (pos % 8)
        return "flip", [*RAWS[:rec], bytes(raw), *RAWS[rec + 1:]]

    def delete(i: int) -> tuple[str, list[bytes]]:
        return "delete", RAWS[:i] + RAWS[i + 1:]

    def swap(t: tuple[int, int]) -> tuple[str, list[bytes]]:
        i, j = t
        out = list(RAWS)
        out[i], out[j] = out[j], out[i]
        return "reorder", out

    def cut(t: tuple[int, int]) -> tuple[str, list[bytes]]:
        rec, keep = t
        return "truncate-record", [*RAWS[:rec], RAWS[rec][:keep % len(RAWS[rec])], *RAWS[rec + 1:]]

    return st.one_of(
        st.integers(0, n - 1).flatmap(lambda r: st.tuples(st.just(r), st.integers(0, 8 * len(RAWS[r]) - 1))).map(flip),
        st.integers(0, n - 1).map(delete),
        st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda t: t[0] != t[1]).map(swap),
        st.tuples(st.integers(0, n - 1), st.integers(0, 10_000)).map(cut),
        st.integers(1, n - 1).map(lambda k: ("truncate-log", RAWS[:k])),
    )


@FAST
@given(tampered_chains())
def test_verify_chain_detects_every_tamper(case: tuple[str, list[bytes]]) -> None:
    how, raws = case
    try:
        state = ledger.verify_chain(raws)
    except LedgerError:
        return
    # What still verifies must be a shorter log than the one the device signed: its head is not the head
    # the verifier was told about (a checkpoint or a peer's head), so the truncation shows.
    assert how in ("truncate-log", "delete"), how
    assert (state.length, state.head) != (EXPECTED.length, EXPECTED.head)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=tampered_chains())
def test_jejak_verify_detects_every_tamper(bundle_dir: Path, case: tuple[str, list[bytes]]) -> None:
    _, raws = case
    path = bundle_dir / "tampered.jejak"
    path.write_bytes(_bundle(raws))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = jejak_verify.main([str(path), "--json"])
    assert code not in (0, 2), code
    assert json.loads(out.getvalue())["ok"] is False


# --- Merkle proofs for every size up to 64 --------------------------------------------------------------

LEAVES = [bytes([i]) * (i % 5) for i in range(64)]
TREE = ledger.MerkleTree(ledger.leaf_hash(x) for x in LEAVES)


def test_every_inclusion_and_consistency_proof_up_to_64() -> None:
    for size in range(1, 65):
        root = TREE.root(size)
        assert root == ledger.MerkleTree(ledger.leaf_hash(x) for x in LEAVES[:size]).root()
        for index in range(size):
            ledger.verify_inclusion(ledger.leaf_hash(LEAVES[index]), index, size, TREE.inclusion_proof(index, size),
                                    root)
        for first in range(1, size + 1):
            ledger.verify_consistency(first, size, TREE.root(first), root, TREE.consistency_proof(first, size))


@FAST
@given(st.integers(2, 64).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(0, 255),
                                                        st.integers(0, 1 << 20))))
def test_altered_inclusion_proofs_fail(t: tuple[int, int, int, int]) -> None:
    size, index, bit, pick = t
    path = TREE.inclusion_proof(index, size)
    root = TREE.root(size)
    leaf = ledger.leaf_hash(LEAVES[index])
    j = pick % len(path)
    bad = [p if k != j else _flip(p, bit) for k, p in enumerate(path)]
    with pytest.raises(ledger.BadProof):
        ledger.verify_inclusion(leaf, index, size, bad, root)
    with pytest.raises(ledger.BadProof):
        ledger.verify_inclusion(leaf, (index + 1 + pick % (size - 1)) % size, size, path, root)
    with pytest.raises(ledger.BadProof):
        ledger.verify_inclusion(leaf, index, size, path[:-1], root)


@FAST
@given(st.integers(2, 64).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n - 1), st.integers(0, 255),
                                                        st.integers(0, 1 << 20))))
def test_altered_consistency_proofs_fail(t: tuple[int, int, int, int]) -> None:
    size, first, bit, pick = t
    proof = TREE.consistency_proof(first, size)
    r1, r2 = TREE.root(first), TREE.root(size)
    j = pick % len(proof)
    bad = [p if k != j else _flip(p, bit) for k, p in enumerate(proof)]
    with pytest.raises(ledger.BadProof):
        ledger.verify_consistency(first, size, r1, r2, bad)
    with pytest.raises(ledger.BadProof):
        ledger.verify_consistency(first, size, r1, _flip(r2, bit), proof)
    with pytest.raises(ledger.BadProof):
        ledger.verify_consistency(first, size, r1, r2, proof[:-1])


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


# --- the decoders' fast paths accept exactly what the generic paths accept --------------------------------


def _outcome(fn: Any, data: bytes) -> Any:
    try:
        return fn(data)
    except MalformedRecord:
        return "MALFORMED"


@pytest.mark.parametrize("base", [RAWS[0], RAWS[1], RAWS[3], FORK.raw], ids=["key", "reading", "detached", "note"])
def test_fast_paths_agree_with_generic_paths(base: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger import record as record_mod

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(mutations(base))
    def run(data: bytes) -> None:
        fast = _outcome(ledger.decode_record, data)
        with monkeypatch.context() as m:
            m.setattr(record_mod, "_split_payload", lambda payload, kid: None)
            m.setattr(cbor, "_flat_in_order", lambda value: False)
            slow = _outcome(ledger.decode_record, data)
        assert fast == slow

    run()
