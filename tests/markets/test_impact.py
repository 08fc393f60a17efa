"""Impact: score, contributions from the data, weights that sum to 1, and a dominant factor that
follows the data."""

from __future__ import annotations

import math

import numpy as np

from hub.markets.calendar import day_number
from hub.markets.impact import FACTORS, ImpactInputs, impact

FIRST = day_number("2024-06-01")  # far from Ramadan, so the season factor stays small
T = 200


def _scenario(driver: str, seed: int = 1) -> ImpactInputs:
    """A series whose past rises came with `driver` rising, and whose last week has both rising again."""
    rng = np.random.default_rng(seed)
    price = 30_000 * np.exp(rng.normal(0, 0.004, T))
    crowd = 400 * np.exp(rng.normal(0, 0.05, T))
    mbg = 500 * np.exp(rng.normal(0, 0.05, T))
    rh = 75 + rng.normal(0, 1.5, T)
    bursts = [(40, 1.0), (90, 1.0), (140, 1.0), (T - 7, 1.2)]
    for start, k in bursts:
        sl = slice(start, start + 7)
        price[sl] *= 1 + 0.06 * k
        if driver == "crowd":
            crowd[sl] *= 1 + 0.9 * k
        elif driver == "mbg":
            mbg[sl] *= 1 + 3.0 * k
        elif driver == "weather":
            rh[sl] += 12 * k
    return ImpactInputs(commodity="telur-ayam", first_day=FIRST, price=price, crowd=crowd, mbg_kg=mbg,
                        rh_pct=rh, temp_c=29 + rng.normal(0, 0.5, T), label="telur-ayam at pasar-senen")


def test_dominant_factor_follows_the_data() -> None:
    found = {driver: impact(_scenario(driver)).dominant for driver in ("crowd", "mbg", "weather")}
    assert found == {"crowd": "crowd", "mbg": "mbg", "weather": "weather"}


def test_weights_sum_to_one_and_score_reflects_the_change() -> None:
    a = impact(_scenario("crowd"))
    assert math.isclose(sum(a.weights.values()), 1.0, rel_tol=1e-9)
    assert set(a.weights) == {*FACTORS, "unexplained"}
    assert a.direction == "up" and a.change_pct > 4 and a.score > 60
    assert a.current_idr > a.baseline_idr
    assert "ridge regression" in a.statement and "Dominant factor: crowd" in a.statement
    assert "Not assessed (no data): supply, notes, macro" in a.statement
    crowd = next(f for f in a.factors if f.factor == "crowd")
    assert crowd.features["crowd_log"]["elasticity"] > 0


def test_a_quiet_week_scores_low() -> None:
    s = _scenario("crowd")
    price = s.price.copy()
    price[-7:] = np.median(price[-40:-7])
    crowd = s.crowd.copy()
    crowd[-7:] = np.median(crowd[-40:-7])
    quiet = impact(ImpactInputs(commodity=s.commodity, first_day=s.first_day, price=price, crowd=crowd))
    assert quiet.score < 30 and quiet.direction != "up"


def test_impact_needs_two_windows_of_prices() -> None:
    s = _scenario("crowd")
    try:
        impact(ImpactInputs(commodity="telur-ayam", first_day=FIRST, price=s.price[:20]))
    except ValueError as e:
        assert "needs 35 days" in str(e)
    else:
        raise AssertionError("impact on 20 days should fail")
