"""Coverage-guided fuzzing (atheris) of the ledger's decoders, at test size, through the `python -m tests.harness.fuzz` runner:
every target runs in its own subprocess, finds no crash and tries inputs; a deliberately broken target is
reported as a crash with its input saved. `python -m tests.harness.fuzz --seconds 300` runs them for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import fuzz

# A few thousand inputs each; the bundle targets verify signatures per input and get fewer.
RUNS = {name: 2000 for name in fuzz.TARGETS} | {"bundle": 1000, "bundle_compare": 1200}
BROKEN = "tests.fuzz.broken_target:TARGET"


def test_every_target_runs_clean(tmp_path: Path) -> None:
    outcomes = []
    for name in fuzz.TARGETS:
        outcome = fuzz.run_target(name, runs=RUNS[name], seed=1, artifacts=tmp_path, timeout=300)
        outcomes.append(outcome)
        print(f"{name}: {outcome.inputs} inputs, coverage {outcome.coverage}, {len(outcome.crashes)} crashes")
        assert outcome.error is None, (name, outcome.error, Path(outcome.log).read_text()[-3000:])
        assert outcome.crashes == [], (name, outcome.crashes)
        assert outcome.exit_code == 0
        assert outcome.inputs >= RUNS[name], (name, outcome.inputs)
        assert outcome.coverage > 0 and outcome.seeds > 0, name
    assert not list(tmp_path.glob("*-crash-*"))


def test_a_broken_target_is_reported_with_its_input(tmp_path: Path) -> None:
    outcome = fuzz.run_target(BROKEN, runs=100_000, seed=1, artifacts=tmp_path, timeout=120)
    assert outcome.exit_code != 0
    assert not outcome.ok
    [crash] = outcome.crashes
    assert crash["kind"] == "crash"
    assert crash["exception"].startswith("ValueError: broken decoder")
    saved = Path(crash["file"]).read_bytes()
    assert saved.startswith(b"\xde\xad") and crash["input_hex"] == saved.hex()
    assert Path(crash["file"]).parent == tmp_path
    assert outcome.inputs > 0 and outcome.coverage > 0
    # The saved input reproduces the crash on its own.
    again = fuzz.run_target(BROKEN, replay=Path(crash["file"]), artifacts=tmp_path / "replay", timeout=60)
    assert not again.ok and again.crashes and again.crashes[0]["exception"].startswith("ValueError")


def test_cli_runs_targets_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fuzz.json"
    code = fuzz.main(["--target", "chain_state", "--target", "sync_heads", "--runs", "500", "--seed", "3",
                      "--json", str(out), "--artifacts", str(tmp_path / "art")])
    assert code == 0
    result = json.loads(out.read_text())
    assert [o["target"] for o in result["outcomes"]] == ["chain_state", "sync_heads"]
    for o in result["outcomes"]:
        assert o["ok"] and o["inputs"] >= 500 and o["coverage"] > 0 and o["crashes"] == []
        assert o["command"] == f"python -m tests.harness.fuzz --target {o['target']} --runs 500 --seed 3"
    assert "| chain_state |" in capsys.readouterr().out


def test_test_only_targets_are_not_in_all() -> None:
    assert all(t.instrument[0] != "tests.fuzz.broken_decoder" for t in fuzz.TARGETS.values())
    assert "broken" not in fuzz.TARGETS
    with pytest.raises(SystemExit):
        fuzz.resolve("broken")
