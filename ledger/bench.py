"""Benchmark of the ledger hot paths against the raw Ed25519 rates of both bindings, measured in one run.

Not imported by `ledger` itself: it reads the clock and starts processes, which the ledger proper never does.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import queue
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import cbor
from .chain import ChainBuilder, ChainState, check_signatures, link, verify_chain
from .cose import BACKENDS, Ed25519Signer, sig_structure, verify_signature
from .record import Record, decode_record

BODY = {"site": "sppg-bandung-01", "sensor": "probe-1", "temp_cc": 6450, "rh_cp": 7120, "crowd": 37}


def _rate(n: int, fn: Callable[[], object], *, repeat: int = 3) -> float:
    """Operations per second for `fn`, which does `n` operations; best of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def _signed_messages(n: int, seed: int = 1) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A key and `n` (signature, message) pairs of distinct record-sized messages it signed."""
    signer = Ed25519Signer.from_seed(bytes([seed]) * 32)
    pairs = []
    for i in range(n):
        msg = sig_structure(b"\xa1\x01\x27", b"x" * 152 + i.to_bytes(8, "big"), b"jejak/record/v1")
        pairs.append((signer.sign(msg), msg))
    return signer.public_key, pairs


def raw_verify(n: int) -> tuple[float, float]:
    """Ed25519 verifications per second on one core through the verifier the ledger uses, and the CPU time of
    one in microseconds: the ceiling that every ingest and sync figure is compared with. Each of the `n`
    signatures is a different record-sized message's, checked once, as an ingest checks them (one signature
    checked over and over runs about 4 % faster than any stream of records can)."""
    started, ended, cpu = _verify_all(*_signed_messages(n))
    return n / (ended - started), cpu / n * 1e6


def _verify_all(key: bytes, pairs: list[tuple[bytes, bytes]]) -> tuple[float, float, float]:
    """Check every pair with `key`: when it started and ended (perf_counter, one clock for every process) and
    the CPU seconds it took."""
    cpu, started = time.process_time(), time.perf_counter()
    for sig, msg in pairs:
        verify_signature(key, sig, msg)
    return started, time.perf_counter(), time.process_time() - cpu


def _verify_when_all_ready(n: int, seed: int, ready: Any, out: Any) -> None:
    key, pairs = _signed_messages(n, seed)
    ready.wait()
    out.put(_verify_all(key, pairs))


def raw_verify_on_cores(n: int, cores: int) -> tuple[float, float]:
    """`raw_verify` on `cores` processes at once, each checking `n` signatures of its own from the same
    moment: the verifications per second those cores give together (from the first start to the last end),
    and the CPU time of one in microseconds. Cores that share a cache, a memory bus or a host's other work
    give less than `cores` times one core's rate, and this says how much less."""
    ctx = multiprocessing.get_context("forkserver")
    ready, out = ctx.Barrier(cores), ctx.Queue()
    procs = [ctx.Process(target=_verify_when_all_ready, args=(n, 2 + i, ready, out), daemon=True)
             for i in range(cores)]
    for proc in procs:
        proc.start()
    spans: list[tuple[float, float, float]] = []
    try:
        while len(spans) < cores:
            try:
                spans.append(out.get(timeout=1))
            except queue.Empty:
                if any(proc.exitcode not in (None, 0) for proc in procs):
                    ready.abort()  # the others stop waiting for the one that died
                    raise RuntimeError("a raw verify process died") from None
    finally:
        for proc in procs:
            proc.join()
    wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return cores * n / wall, sum(cpu for _, _, cpu in spans) / (cores * n) * 1e6


def raw_verify_rate(n: int) -> float:
    """`raw_verify`'s verifications per second."""
    return raw_verify(n)[0]


def _chain(n: int) -> list[Record]:
    signer = Ed25519Signer.from_seed(bytes(range(32)))
    b = ChainBuilder(signer, clock=itertools.count(1_763_856_000, 15).__next__, boot=3)
    recs = [b.genesis()]
    recs += [b.append("reading", dict(BODY, crowd=i)) for i in range(1, n)]
    return recs


def _parallel_verify(raws: Sequence[bytes], workers: int, pool: Any, chunk: int = 250) -> int:
    """Decode and link in order here (each record names the previous one), and hand each linked chunk to
    the pool at once, so the workers check signatures while the next chunk is being linked."""
    state: ChainState | None = None
    pending = []
    for start in range(0, len(raws), chunk):
        pairs = []
        for raw in raws[start:start + chunk]:
            rec = decode_record(raw)
            if state is None:
                state = ChainState.empty(rec.device_id)
            state, key = link(state, rec)
            pairs.append((rec, key))
        pending.append(pool.apply_async(check_signatures, (pairs,)))
    return sum(p.get() for p in pending)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return every figure; `quick` uses small sizes (for tests), not for reporting."""
    n = 400 if quick else 20_000
    repeat = 1 if quick else 3
    out: dict[str, Any] = {"records": n, "quick": quick, "python": platform.python_version(),
                           "cpus": os.cpu_count() or 1, "verify_backend": BACKENDS[0]}

    # Sign + encode through the real builder: body validation, canonical CBOR, COSE envelope, link.
    def build() -> None:
        _chain(n)
    out["sign_encode_per_s"] = _rate(n, build, repeat=repeat)

    recs = _chain(n)
    raws = [r.raw for r in recs]
    # Raw Ed25519 over exactly the (signature, signed bytes) pairs the chain verify checks, so the ratio
    # measures ledger's own cost and not a cache-friendly single message.
    pairs = [(r.signature, r.signed_bytes) for r in recs]
    msgs = [m for _, m in pairs]

    out["chain_verify_per_s"] = _rate(n, lambda: verify_chain(raws), repeat=repeat)
    out["decode_only_per_s"] = _rate(n, lambda: [decode_record(r) for r in raws], repeat=repeat)

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pub = key.public_key()
    out["openssl_sign_per_s"] = _rate(n, lambda: [key.sign(m) for m in msgs], repeat=repeat)
    out["openssl_verify_per_s"] = _rate(n, lambda: [pub.verify(s, m) for s, m in pairs], repeat=repeat)
    try:
        from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
    except ImportError:  # pragma: no cover - PyNaCl is optional
        out["sodium_sign_per_s"] = out["sodium_verify_per_s"] = None
    else:
        pk, sk = crypto_sign_seed_keypair(bytes(range(32)))
        signed = [s + m for s, m in pairs]
        out["sodium_sign_per_s"] = _rate(n, lambda: [crypto_sign(m, sk) for m in msgs], repeat=repeat)
        out["sodium_verify_per_s"] = _rate(n, lambda: [crypto_sign_open(x, pk) for x in signed], repeat=repeat)
    raw_verify = out["sodium_verify_per_s"] if BACKENDS[0] == "sodium" else out["openssl_verify_per_s"]
    out["chain_verify_vs_raw_verify"] = out["chain_verify_per_s"] / raw_verify
    out["chain_verify_vs_openssl_verify"] = out["chain_verify_per_s"] / out["openssl_verify_per_s"]

    # Parallel: link sequentially, check signatures in chunks over every core.
    import multiprocessing

    workers = out["cpus"]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(check_signatures, [[]] * workers)  # start the workers before timing
        out["parallel_workers"] = workers
        out["parallel_verify_per_s"] = _rate(n, lambda: _parallel_verify(raws, workers, pool), repeat=repeat)
    out["parallel_speedup"] = out["parallel_verify_per_s"] / out["chain_verify_per_s"]

    sample = recs[len(recs) // 2]
    body_len = len(cbor.encode(sample.body))
    out["record_bytes"] = len(sample.raw)
    out["body_bytes"] = body_len
    out["overhead_bytes"] = len(sample.raw) - body_len
    return out


def render(figures: dict[str, Any]) -> str:
    lines = []
    for name, value in figures.items():
        text = f"{value:,.0f}" if isinstance(value, float) and value > 10 else (
            f"{value:.3f}" if isinstance(value, float) else str(value))
        lines.append(f"{name:32s} {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jejak bench", description="Measure ledger signing and verification rates.")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    p.add_argument("--out", type=Path, default=Path("bench-results") / "ledger.json",
                   help="where to write the figures as JSON (default: bench-results/ledger.json)")
    args = p.parse_args(argv)
    figures = run(quick=args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(render(figures))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
