"""The acceptance path as a pure function: however a log is cut into offers, the held log ends the same."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import ChainBuilder, ChainState, Ed25519Signer, Record, accept

SIGNER = Ed25519Signer.from_seed(b"\x42" * 32)
_builder = ChainBuilder(SIGNER, clock=lambda: 1_763_900_000, boot=1)
LOG: list[Record] = [_builder.genesis()] + [_builder.append("note", {"text": f"n{i}"}) for i in range(1, 24)]


@dataclass(slots=True)
class Holder:
    """What a store keeps: the records accept returned, and nothing else."""

    state: ChainState = field(default_factory=lambda: ChainState.empty(LOG[0].device_id))
    raws: list[bytes] = field(default_factory=list)

    def raw_at(self, seq: int) -> bytes | None:
        return self.raws[seq] if seq < len(self.raws) else None

    def key_at(self, seq: int) -> bytes | None:
        return SIGNER.public_key

    def id_at(self, seq: int) -> bytes | None:
        return hashlib.sha256(self.raws[seq]).digest() if seq < len(self.raws) else None

    def offer(self, raws: list[bytes], **kw: int) -> tuple[int, int, str]:
        result = accept(self.state, raws, held=self, **kw)
        self.state = result.state
        self.raws += [r.raw for r in result.records]
        return len(result.records), result.duplicates, result.code


offers = st.lists(st.tuples(st.integers(0, len(LOG) - 1), st.integers(1, 8)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offers)
def test_any_offers_keep_a_prefix_and_resending_everything_completes_it(cuts: list[tuple[int, int]]) -> None:
    holder = Holder()
    for start, size in cuts:
        before = len(holder.raws)
        accepted, duplicates, code = holder.offer([r.raw for r in LOG[start:start + size]])
        # An offer past the held head is a gap and changes nothing; one that reaches it extends the log.
        assert code in ("OK", "BROKEN_CHAIN")
        assert holder.raws == [r.raw for r in LOG[:len(holder.raws)]]
        assert accepted == len(holder.raws) - before
        assert duplicates <= size
    # Resending the whole log is always safe and leaves the complete log; only a genesis that is the held
    # head is the overlap that is not counted.
    held = len(holder.raws)
    accepted, duplicates, code = holder.offer([r.raw for r in LOG])
    assert code == "OK" and holder.raws == [r.raw for r in LOG]
    assert holder.state.head == LOG[-1].id and accepted + duplicates == len(LOG) - (held == 1)


def test_quota_and_revocation_keep_the_prefix_before_them() -> None:
    raws = [r.raw for r in LOG]
    assert Holder().offer(raws, max_length=5) == (5, 0, "LIMIT_EXCEEDED")
    assert Holder().offer(raws, revoked_from=3, max_length=5) == (3, 0, "REVOKED_KEY")
    held = Holder()
    held.offer(raws[:10])
    assert held.offer(raws[5:], max_length=12) == (2, 5, "LIMIT_EXCEEDED")
