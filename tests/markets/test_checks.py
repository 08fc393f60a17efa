"""Each validation check fires for its reason and stays quiet otherwise; the verdict follows the
independent evidence."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hub.markets.calendar import day_number
from hub.markets.ceilings import CeilingTable
from hub.markets.model import DAY_S, WIB_OFFSET_S, PriceObservation
from hub.markets.validate import CHECKS, ObservationBatch, ValidationConfig, Validator

DAY = day_number("2024-06-03")
T0 = DAY * DAY_S - WIB_OFFSET_S + 8 * 3600
_ids = itertools.count()


def obs(price: int, *, reporter: str = "r3", market: str = "pasar-senen", commodity: str = "cabai-merah",
        grade: str = "", t: int = T0, arrived: int | None = None, region: str = "DKI Jakarta") -> PriceObservation:
    return PriceObservation(id=f"o{next(_ids)}", market=market, region=region, commodity=commodity, grade=grade,
                            unit="kg", price_idr=price, time=t, arrived_at=t + 60 if arrived is None else arrived,
                            reporter=reporter)


def history(level: float, n: int = 28, sd: float = 0.01, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(level * np.exp(rng.normal(0, sd, n)))


def validator(*, ceilings: CeilingTable | None = None, config: ValidationConfig | None = None,
              markets: dict[str, float] | None = None, commodity: str = "cabai-merah", grade: str = "") -> Validator:
    """A validator whose series (market -> level) have 28 days of accepted history up to yesterday."""
    v = Validator(config, ceilings=ceilings)
    for k, (m, level) in enumerate((markets or {}).items()):
        v.seed_history((m, commodity, grade, "kg"), "DKI Jakarta", history(level, seed=k), DAY - 1)
    return v


def test_quiet_on_an_ordinary_price() -> None:
    v = validator(markets={"pasar-senen": 40_000, "pasar-kramat-jati": 40_000})
    v.check(obs(40_000, reporter="r1"))
    v.check(obs(40_400, reporter="r2"))
    v.check(obs(40_200, reporter="k1", market="pasar-kramat-jati"))
    verdict = v.check(obs(40_600))
    assert verdict.status == "accepted"
    assert verdict.fired == ()
    assert all(c.reason for c in verdict.checks)
    assert [c.name for c in verdict.checks] == list(CHECKS)


def test_history_checks_fire_and_quarantine_when_no_peer_can_confirm() -> None:
    v = validator(markets={"pasar-senen": 40_000})
    verdict = v.check(obs(60_000))
    for name in ("hampel", "modified_z", "zscore", "iqr", "jump"):
        assert verdict.check(name).fired, name
    assert verdict.quarantined
    assert "no peer can confirm" in verdict.summary
    assert "scaled MADs from the 28-day median" in verdict.check("hampel").reason


def test_history_checks_quiet_without_enough_history() -> None:
    v = Validator()
    v.seed_history(("pasar-senen", "cabai-merah", "", "kg"), "DKI Jakarta", [40_000] * 3, DAY - 1)
    verdict = v.check(obs(90_000))
    assert not verdict.check("hampel").fired and "only 3 accepted days" in verdict.check("hampel").reason


def test_mad_zero_guard_on_sticky_prices() -> None:
    key = ("pasar-senen", "beras-medium", "medium", "kg")
    v = Validator()
    v.seed_history(key, "DKI Jakarta", [12_000] * 28, DAY - 1)
    small = v.check(obs(12_100, commodity="beras-medium", grade="medium"))
    assert not small.check("hampel").fired and not small.check("modified_z").fired
    assert "MAD is 0" in small.check("hampel").reason and "MAD is 0" in small.check("modified_z").reason
    big = v.check(obs(14_000, commodity="beras-medium", grade="medium", reporter="r9"))
    assert big.check("hampel").fired and big.check("modified_z").fired
    # Without the floor, one hundred rupiah on a sticky price would be an outlier: the guard is what
    # keeps it quiet.
    bare = Validator(ValidationConfig(scale_floor=1e-9))
    bare.seed_history(key, "DKI Jakarta", [12_000] * 28, DAY - 1)
    assert bare.check(obs(12_100, commodity="beras-medium", grade="medium")).check("hampel").fired


def test_modified_z_uses_mean_absolute_deviation_when_mad_is_zero() -> None:
    key = ("pasar-senen", "cabai-merah", "", "kg")
    v = Validator(ValidationConfig(scale_floor=1e-9))
    v.seed_history(key, "DKI Jakarta", [40_000] * 20 + [48_000] * 8, DAY - 1)
    res = v.check(obs(44_000)).check("modified_z")
    meanad = 8 * 8000 / 28
    assert res.score == pytest.approx(4000 / (1.253314 * meanad))
    assert "mean absolute deviation" in res.reason


def test_jump_rule() -> None:
    v = validator(markets={"pasar-senen": 40_000})
    assert v.check(obs(61_000)).check("jump").fired  # +52 % in a day; chilli's limit is 35 %
    v2 = validator(markets={"pasar-senen": 40_000})
    assert not v2.check(obs(46_000)).check("jump").fired


def test_reporters_disagree() -> None:
    v = validator(markets={"pasar-senen": 40_000, "pasar-kramat-jati": 40_000})
    v.check(obs(40_000, reporter="r1"))
    v.check(obs(40_400, reporter="r2"))
    bad = v.check(obs(52_000, reporter="r3"))
    assert bad.check("reporters").fired and bad.quarantined
    assert "other reporters at this market disagree" in bad.summary
    good = v.check(obs(41_000, reporter="r4"))
    assert not good.check("reporters").fired and not good.quarantined


def test_nearby_markets_catch_a_market_moving_alone() -> None:
    # Every reporter at one market inflates together: the reporters agree, the nearby market does not.
    v = validator(markets={"pasar-senen": 40_000, "pasar-kramat-jati": 40_000})
    v.check(obs(40_100, reporter="k1", market="pasar-kramat-jati"))
    v.check(obs(52_000, reporter="r1"))
    v.check(obs(52_500, reporter="r2"))
    colluding = v.check(obs(52_200, reporter="r3"))
    assert not colluding.check("reporters").fired
    assert colluding.check("nearby").fired and colluding.quarantined
    assert "nearby markets did not" in colluding.summary


def test_a_real_regional_move_is_accepted() -> None:
    v = validator(markets={"pasar-senen": 40_000, "pasar-kramat-jati": 40_000})
    v.check(obs(52_300, reporter="k1", market="pasar-kramat-jati"))
    v.check(obs(52_000, reporter="r1"))
    v.check(obs(52_500, reporter="r2"))
    moved = v.check(obs(52_200, reporter="r3"))
    assert moved.check("hampel").fired  # unusual against its own history...
    assert not moved.check("nearby").fired  # ...but the neighbours moved with it
    assert moved.status == "accepted"
    # The summary states what the peers reported, not a guess.
    assert "the other reporters here reported r1 Rp 52.000, r2 Rp 52.500" in moved.summary
    assert "nearby markets moved +31" in moved.summary


def test_ceiling_is_a_compliance_finding_never_a_quarantine(ceilings: CeilingTable) -> None:
    v = validator(ceilings=ceilings)
    over = v.check(obs(13_500, commodity="beras-medium", grade="medium"))
    assert over.check("ceiling").fired and not over.quarantined
    assert over.check("ceiling").family == "compliance" and "compliance finding" in over.summary
    reason = over.check("ceiling").reason
    assert "HET" in reason and "Badan Pangan" in reason and "in force since 2024-03-01" in reason
    # From 22 August 2025 the medium-rice HET in zone 1 is Rp 13.500 (Kepbadan 299/2025).
    later = DAY + 500
    t = later * DAY_S - WIB_OFFSET_S + 8 * 3600
    now = v.check(obs(13_500, commodity="beras-medium", grade="medium", t=t, reporter="r9"))
    assert not now.check("ceiling").fired and "299 Tahun 2025" in now.check("ceiling").reason
    under = v.check(obs(12_000, commodity="beras-medium", grade="medium", reporter="r8"))
    assert not under.check("ceiling").fired
    hap = v.check(obs(60_000, commodity="cabai-merah", reporter="r7"))
    assert not hap.check("ceiling").fired and "not a ceiling" in hap.check("ceiling").reason


def test_stale_and_future_times() -> None:
    v = validator(markets={"pasar-senen": 40_000})
    stale = v.check(obs(40_000, t=T0 - 4 * DAY_S, arrived=T0))
    assert stale.check("stale").fired and stale.quarantined
    late = v.check(obs(40_000, reporter="r5", t=T0 - DAY_S, arrived=T0))
    assert not late.check("stale").fired
    future = v.check(obs(40_000, reporter="r6", t=T0 + 3600, arrived=T0))
    assert future.check("future").fired and future.quarantined
    assert not late.check("future").fired


def test_a_mistyped_price_beside_an_honest_one_on_a_regional_spike_day() -> None:
    # Two reporters at Pasar Senen on the day chilli jumps 30 % across Jakarta: one types Rp 520.000 for
    # Rp 52.000. Both prices are unusual against the history; the nearby markets' move vouches for the honest
    # one, so the mistyped one is the one that is wrong (both were held).
    markets = {"pasar-senen": 40_000, "pasar-kramat-jati": 40_000, "pasar-minggu": 40_000}
    rows = [obs(52_300, reporter="k1", market="pasar-kramat-jati"), obs(51_800, reporter="m1", market="pasar-minggu"),
            obs(520_000, reporter="r2"), obs(52_000, reporter="r1")]
    v = validator(markets=markets)
    for o in rows:
        v.check(o)
    honest, typo = v.check(rows[3]), v.check(rows[2])
    assert honest.status == "accepted" and honest.check("hampel").fired, honest.summary
    assert typo.quarantined and typo.check("nearby").fired
    res = validator(markets=markets).validate_batch(ObservationBatch.from_observations(rows))
    assert res.quarantined.tolist() == [False, False, True, False]


def test_a_new_series_whose_first_price_is_mistyped() -> None:
    # Beef starts being reported at three markets; at one the first price has a zero too many. With no
    # history it was taken, and then each right price after it was held as a jump from it for a week.
    v = Validator()
    for k in range(4):
        t = T0 + k * DAY_S
        for market, price in (("pasar-senen", 135_000), ("pasar-kramat-jati", 134_000),
                              ("pasar-minggu", 1_360_000 if k == 0 else 136_000)):
            verdict = v.check(obs(price, reporter=f"{market}/r0", market=market, commodity="daging-sapi", t=t))
            if market == "pasar-minggu":
                assert verdict.quarantined == (k == 0), (k, verdict.summary)
        v.settle(t + DAY_S)
    typo = v.preview(obs(13_500, reporter="x", market="pasar-minggu", commodity="daging-sapi", t=T0 + 4 * DAY_S))
    assert typo.check("plausible").fired and "10.0 times below" in typo.check("plausible").reason


def test_batch_and_streaming_agree_on_the_checks() -> None:
    rows = [obs(40_000, reporter="r1"), obs(40_400, reporter="r2"), obs(70_000, reporter="r3"),
            obs(40_100, reporter="k1", market="pasar-kramat-jati"),
            obs(40_300, reporter="k2", market="pasar-kramat-jati")]
    res = validator(markets={"pasar-senen": 40_000, "pasar-kramat-jati": 40_000}).validate_batch(
        ObservationBatch.from_observations(rows))
    assert res.quarantined.tolist() == [False, False, True, False, False]
    assert res.fired_by("reporters").tolist() == [False, False, True, False, False]


def test_every_check_is_one_object_that_scores_and_explains() -> None:
    from hub.markets.checks import ALL_CHECKS, FAMILIES

    assert [c.name for c in ALL_CHECKS] == list(CHECKS)
    assert len(set(CHECKS)) == len(CHECKS)
    assert all(c.family in FAMILIES for c in ALL_CHECKS)
    v = validator(markets={"pasar-senen": 40_000})
    v.check(obs(40_000, reporter="r1"))
    verdict = v.check(obs(52_000, reporter="r2"))
    # The reporters check names what the peer actually reported.
    assert "r1 Rp 40.000" in verdict.check("reporters").reason


def test_a_regional_move_is_accepted_at_both_markets_whichever_reports_first() -> None:
    """One reporter a market, two markets of a region. The first to report a regional move waits for the other
    (its day was final at once, held with nobody to vouch for it), and a day one market's outlier was held does
    not leave the other without a neighbour's reference the next day (each then held the other's honest prices
    for good, as each waited for the other's accepted price of its own last day)."""
    from hub.markets.model import DAY_S

    v = validator(markets={"pasar-senen": 40_000, "pasar-kramat-jati": 40_000})
    plan = [(("k", 40_100), ("s", 40_000)), (("s", 40_200), ("k", 39_900)),  # both report: each expects the other
            (("k", 52_300), ("s", 52_000)), (("s", 52_200), ("k", 70_000)), (("s", 52_100), ("k", 52_300)),
            (("k", 52_400), ("s", 52_200)), (("s", 52_000), ("k", 52_100))]
    final: list[dict[str, str]] = []
    for day, reports in enumerate(plan):
        t = T0 + day * DAY_S
        status: dict[str, str] = {}
        for who, price in reports:
            market = "pasar-kramat-jati" if who == "k" else "pasar-senen"
            for o, verdict in v.observe(obs(price, reporter=f"{who}1", market=market, t=t)):
                status[o.market] = verdict.status if not verdict.provisional else "provisional"
        final.append(status)
    assert final[2] == {"pasar-kramat-jati": "accepted", "pasar-senen": "accepted"}  # the move, k first
    assert final[3] == {"pasar-senen": "accepted", "pasar-kramat-jati": "quarantined"}  # k's mistyped price
    assert final[4:] == [{"pasar-kramat-jati": "accepted", "pasar-senen": "accepted"}] * 3


def test_a_step_held_while_the_nearby_market_was_silent_is_vouched_for_when_it_reports_again() -> None:
    """Pasar Senen's one reporter steps up 30 % while Kramat Jati sends nothing for ten days: nobody can vouch for
    the step, so it is held. When Kramat Jati reports again, at the same new level, Senen's price is compared with
    its move since Senen's last accepted price, eleven days back: accepted. Measured from a week back only, Senen
    could never be vouched for again and was held for good."""
    from hub.markets.model import DAY_S

    v = validator(markets={"pasar-senen": 40_000, "pasar-kramat-jati": 40_000})
    final: list[dict[str, str]] = []
    for day in range(13):
        t = T0 + day * DAY_S
        status: dict[str, str] = {}
        reports = [("s", 40_100 if day < 2 else 52_000)]
        if day < 2 or day >= 12:
            reports.append(("k", 40_000 if day < 2 else 52_300))
        for who, price in reports:
            market = "pasar-kramat-jati" if who == "k" else "pasar-senen"
            for o, verdict in v.observe(obs(price, reporter=f"{who}1", market=market, t=t)):
                status[o.market] = verdict.status
        for o, verdict in v.settle(t + DAY_S):
            status[o.market] = verdict.status
        final.append(status)
    assert [f["pasar-senen"] for f in final[2:12]] == ["quarantined"] * 10  # nobody to vouch for the step
    assert final[12] == {"pasar-senen": "accepted", "pasar-kramat-jati": "accepted"}


def test_backlogs_pushed_in_turn_vouch_for_each_others_regional_move() -> None:
    """A hub that has seen none of a region's prices (new, or its devices back after an outage) takes each market's
    backlog in turn: Kramat Jati's days of a regional step come first, before any nearby market is known to report
    them. They wait for the others' backlogs (the day's backlog window) instead of being held at once for want
    of a neighbour, and Senen's backlog then vouches for them."""
    from hub.markets.model import DAY_S

    v = Validator()
    v.seed_history(("pasar-kramat-jati", "cabai-merah", "", "kg"), "DKI Jakarta", history(40_000, seed=1), DAY - 1)
    v.seed_history(("pasar-senen", "cabai-merah", "", "kg"), "DKI Jakarta", history(40_000, seed=2), DAY - 1)
    now = T0 + 3 * DAY_S - 3 * 3600  # after the last day's cut-off, within the 3 days live data may be late
    final: dict[tuple[str, int], str] = {}
    for k, (market, who) in enumerate((("pasar-kramat-jati", "k1"), ("pasar-senen", "s1"))):
        for day in range(3):
            o = obs(40_000 if day == 0 else 52_000 + 100 * day, reporter=who, market=market, t=T0 + day * DAY_S,
                    arrived=now + 60 * (10 * k + day))
            for seen, verdict in v.observe(o):
                final[(seen.market, (seen.time - T0) // DAY_S)] = verdict.status
    for seen, verdict in v.settle(now + DAY_S):
        final[(seen.market, (seen.time - T0) // DAY_S)] = verdict.status
    assert set(final.values()) == {"accepted"}, final
