"""The evaluation on generated data with ground truth meets its goals, per check and combined."""

from __future__ import annotations

from hub.markets.evaluate import evaluate_forecasts, evaluate_validation
from hub.markets.synth import SynthConfig, generate
from hub.markets.validate import CHECKS


def test_validation_goals(synth) -> None:
    r = evaluate_validation(synth)
    assert r["combined"]["caught"] >= 0.95
    assert r["combined"]["false_alarms"] <= 0.01
    assert r["combined"]["false_alarms_during_real_shocks"] <= 0.01
    assert r["goal"]["met"]
    assert set(r["per_check"]) == set(CHECKS)
    assert all(v >= 0.9 for v in r["per_manipulation"].values()), r["per_manipulation"]
    # The seed-2 style checks alone would raise far more false alarms than the combined verdict.
    assert r["per_check"]["zscore"]["false_alarms"] > 5 * r["combined"]["false_alarms"]


def test_forecast_goal() -> None:
    # A full year, so the held-out tails (the last four four-week steps) fall outside Ramadan and Lebaran,
    # where every model's error is larger (MASE about 1.1 on tails there).
    data = generate(SynthConfig(seed=7, days=365))
    r = evaluate_forecasts(data, tails=4)
    assert r["mase_chosen"] < 1.0
    assert r["mase_chosen"] < r["mase_snaive"]
    assert sum(r["chosen_models"].values()) == 4 * r["series"]
