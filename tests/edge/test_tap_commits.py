"""Taps do not wait for each other's commits: a slow fsync delays a tap's acknowledgement, not the next tap."""

from __future__ import annotations

import asyncio
from typing import Any

from edge.config import EdgeConfig
from edge.inputs import TapInput, make_machine
from edge.metrics import Metrics
from tests.wait import wait_for


async def test_taps_reach_the_commit_queue_while_earlier_commits_are_still_running(tmp_path) -> None:
    config = EdgeConfig(site="sppg-01", data_dir=str(tmp_path))
    handed: list[dict[str, Any]] = []
    durable = asyncio.Event()

    async def slow_append(kind: str, body: dict[str, Any]) -> Any:
        handed.append(body)
        await durable.wait()  # the commit holding this record has not returned yet
        return None

    tap = TapInput(make_machine(config.site, config.checkpoint), slow_append, Metrics(), indicator=lambda fb: None)
    durable.set()
    await tap.tap(config.checkpoint.staff[0])
    durable.clear()
    before = len(handed)
    taps = [asyncio.create_task(tap.tap(f"04{i:012x}")) for i in range(5)]
    # All five records are handed to the commit path before any commit returns (one tap per commit before).
    await wait_for(lambda: len(handed) - before == 5, what="five records waiting for one commit")
    assert not any(t.done() for t in taps)
    durable.set()
    feedback = await asyncio.gather(*taps)
    assert [fb[-1]["status"] for fb in feedback] == ["accepted"] * 5
    assert [b["tags"] for b in handed[before:]] == [[f"04{i:012x}"] for i in range(5)]  # in tap order
