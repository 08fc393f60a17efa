"""Ranges pushed by many edges at once share a commit (Hub.ingest's group commit): one synced write for all the
ranges waiting, each caller still answered with its own result, refusals kept to their own range, and a failed
commit failing the whole group with nothing stored."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.service import Hub, IngestResult, NotEnrolled
from hub.store import LmdbHubStore
from ledger import Ed25519Signer, LedgerError
from tests.wait import wait_until

from .conftest import Clock, enroll, new_device

HUB_KEY = b"\x5b" * 32


class HeldStore(LmdbHubStore):
    """An LMDB store whose commits can be held at the door (to let other pushes pile up), counted, or failed."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.commits = 0
        self.door = threading.Event()
        self.door.set()
        self.at_door = threading.Event()
        self.calls = 0
        self.fail_call: int | None = None  # the commit call (counted from 1) that fails

    def commit(self, batch):
        self.calls += 1
        self.at_door.set()
        self.door.wait()
        if self.calls == self.fail_call:
            raise OSError("disk went away")
        self.commits += 1
        return super().commit(batch)


def _pushers(n: int, clock: Clock, hub: Hub) -> list[tuple[bytes, list[bytes]]]:
    out = []
    for _ in range(n):
        signer, builder = new_device(clock)
        device_id = enroll(hub, signer, clock)
        out.append((device_id, [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw
                                                           for i in range(4)]))
    return out


def _pile_up(hub: Hub, store: HeldStore, offers, pool: ThreadPoolExecutor):
    """Push the first offer and hold its commit at the door while the others arrive; then open the door."""
    store.door.clear()
    store.at_door.clear()
    first = pool.submit(hub.ingest, *offers[0])
    store.at_door.wait(timeout=60)
    rest = [pool.submit(hub.ingest, *offer) for offer in offers[1:]]
    wait_until(lambda: len(hub._offers) == len(offers) - 1, 60, what="the other pushes waiting for the writer")
    store.door.set()
    return [first, *rest]


def test_pushes_waiting_for_the_writer_share_one_commit_and_each_gets_its_own_answer(tmp_path) -> None:
    clock = Clock()
    store = HeldStore(tmp_path / "hub")
    hub = Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    offers = _pushers(12, clock, hub)
    told: list[bytes] = []
    hub.listen(lambda records, at: told.extend(r.id for r in records))
    _, builder = new_device(clock)
    genesis = builder.genesis()
    offers.insert(5, (genesis.device_id, [genesis.raw]))  # not enrolled: refused alone
    before = store.commits

    with ThreadPoolExecutor(len(offers)) as pool:
        futures = _pile_up(hub, store, offers, pool)
        answers = []
        for future in futures:
            try:
                answers.append(future.result(timeout=120))
            except LedgerError as exc:
                answers.append(exc)

    assert store.commits - before == 2, "the first push alone, then every push that waited meanwhile in one commit"
    assert isinstance(answers[5], NotEnrolled)
    accepted = [a for i, a in enumerate(answers) if i != 5]
    assert all(isinstance(a, IngestResult) and a.accepted == 5 and a.problem is None for a in accepted)
    assert sorted(bytes.fromhex(a.device) for a in accepted) == sorted(d for i, (d, _) in enumerate(offers) if i != 5)
    assert len(hub.tree) == store.size()
    assert all(store.chain_state(d).length == 5 for i, (d, _) in enumerate(offers) if i != 5)
    assert len(told) == 12 * 5, "every caller's records are told to the listeners before its call returns"


def test_a_group_whose_commit_fails_stores_none_of_it_and_the_hub_goes_on(tmp_path) -> None:
    clock = Clock()
    store = HeldStore(tmp_path / "hub")
    hub = Hub(store, Ed25519Signer.from_seed(HUB_KEY), clock=clock)
    offers = _pushers(6, clock, hub)
    size = store.size()

    store.fail_call = store.calls + 2  # the first push commits alone; the group that waited behind it fails
    with ThreadPoolExecutor(len(offers)) as pool:
        futures = _pile_up(hub, store, offers, pool)
        assert futures[0].result(timeout=120).accepted == 5
        errors = []
        for future in futures[1:]:
            with pytest.raises(OSError) as caught:
                future.result(timeout=120)
            errors.append(caught.value)
    assert len(errors) == 5 and all("disk went away" in str(e) for e in errors)
    assert store.size() == len(hub.tree) == size + 5, "only the first push is stored; the tree follows the store"
    assert all(store.chain_state(d) is None for d, _ in offers[1:])

    again = [hub.ingest(*offer) for offer in offers[1:]]  # the senders' resends
    assert all(a.accepted == 5 for a in again)
    assert store.size() == len(hub.tree) == size + 30
