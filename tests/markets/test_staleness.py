"""A market that goes silent: its forecast, its map band and the early warnings judged on it say that its data
is stale (the last report's date, in Indonesian and English); the markets that kept reporting do not."""

from __future__ import annotations

from hub.markets.calendar import date_of, day_number
from hub.markets.model import DAY_S, WIB_OFFSET_S, day_of
from hub.markets.service import MarketService
from hub.markets.staleness import STALE_DAYS, freshness
from hub.markets.warning import AlertTracker
from hub.markets.webhooks import alert_text

from .pasar import MARKETS, PasarConfig, generate


def _evening(date: str) -> int:
    return day_number(date) * DAY_S - WIB_OFFSET_S + 20 * 3600


def test_a_silent_markets_forecast_and_band_say_its_data_is_stale() -> None:
    data = generate()
    silent, since = data.config.silent_market, day_number(data.config.silent_from)
    evening = _evening("2025-02-21")  # the fifth day pasar-kramat-jati has not reported
    svc = MarketService(clock=lambda: evening)
    for o in data.observations:
        if o.arrived_at <= evening:
            svc.add_observation(o)
    fc = svc.forecast("bawang-merah", silent)
    fresh = fc["freshness"]
    assert fresh["stale"] and fresh["last_report"] == "2025-02-15" and fresh["days_since"] == 6
    assert fc["points"][0]["date"] == "2025-02-16"  # what the forecast covers: days already past
    assert fresh["words"]["id"].startswith("Data lama: laporan terakhir 2025-02-15 (6 hari lalu)")
    assert fresh["words"]["en"].startswith("Stale data: last report 2025-02-15 (6 days ago)")
    for market in MARKETS:
        if market != silent:
            other = svc.forecast("bawang-merah", market)["freshness"]
            assert not other["stale"] and other["last_report"] == "2025-02-21" and "words" not in other
    bands = {(b["market"], b["commodity"]): b for b in svc.bands()}
    assert all(b["stale"] == (b["market"] == silent) for b in bands.values()), bands
    assert bands[(silent, "beras-medium")]["days_since_report"] == 6
    live = {(p["market"], p["commodity"]): p["stale"] for p in svc.live_prices()}
    assert live[(silent, "telur-ayam")] and not live[("pasar-senen", "telur-ayam")]
    assert day_of(evening) - since == 4


def test_an_early_warning_judged_on_stale_data_is_marked() -> None:
    # The chilli spike to 10 January, judged by a hub that starts on 16 January with no report since.
    data = generate(PasarConfig(start="2024-08-01", days=day_number("2025-01-10") - day_number("2024-08-01") + 1))
    now = [_evening("2025-01-10")]
    svc = MarketService(clock=lambda: now[0])
    for o in data.observations:
        svc.add_observation(o)
    fresh = [a for a in svc.early_warning() if a.commodity == "cabai-merah"]
    assert fresh and not any(a.stale for a in fresh)
    now[0] = _evening("2025-01-16")
    svc.tracker = AlertTracker()  # as after a restart: every series is judged from normal again
    stale = [a for a in svc.early_warning() if a.commodity == "cabai-merah"]
    assert {a.band for a in stale} == {a.band for a in fresh}
    assert all(a.stale_days == 6 and a.to_dict()["stale"] for a in stale)
    assert "stale data: no report since 2025-01-10 (6 days before)" in stale[0].message
    text = alert_text(stale[0])
    assert "Data lama: laporan terakhir 2025-01-10 (6 hari lalu)" in text and "Stale data: last report" in text
    assert "Data lama" not in alert_text(fresh[0])


def test_stale_flags_the_silent_week_and_the_long_holiday_closures_only() -> None:
    # Each evening of the five months, for every series: is it stale? The silent market from its fourth day
    # without a report until it reports again; honest series only over closures of more than three days
    # (Imlek and Isra Mi'raj, 27-29 January; Lebaran, 31 March to 7 April), when their data are that old.
    data = generate()
    days: dict[tuple[str, str], list[int]] = {}
    for o in data.observations:
        days.setdefault((o.market, o.commodity), []).append(day_of(o.time))
    silent_from = day_number(data.config.silent_from)
    flagged: dict[tuple[str, str], set[int]] = {}
    for key, seen in days.items():
        seen = sorted(set(seen))
        for today in range(seen[0] + 1, data.first_day + data.config.days):
            if freshness([d for d in seen if d <= today], today).stale:
                flagged.setdefault(key, set()).add(today)
    silent = {d for k, v in flagged.items() if k[0] == data.config.silent_market for d in v}
    # Last report Saturday 15 February; the market reports again on Monday 24 February.
    last = day_number("2025-02-15")
    assert set(range(last + STALE_DAYS + 1, day_number("2025-02-24"))) <= silent
    assert min(silent - {d for k, v in flagged.items() if k[0] != data.config.silent_market for d in v}) \
        == last + STALE_DAYS + 1 == silent_from + 2
    honest = {date_of(d).isoformat() for k, v in flagged.items() if k[0] != data.config.silent_market
              and k[1] != data.config.new_commodity for d in v}
    assert honest == {"2025-01-29", "2025-04-02", "2025-04-03", "2025-04-04"}, honest
