"""Offline sources: the simulated market and its clock, replay files, the source factory."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from config.market_calendar import xnys
from config.market_clock import (
    SessionClock,
    anchor_path,
    anchored_clock,
    default_clock_start,
    reset_clock,
)
from config.settings import load_settings
from db.bar_rule import BAR_COLUMNS
from workers.quality_guard import check_bars
from workers.sources import make_source
from workers.sources.base import clean_bars, current_session, final_only
from workers.sources.replay import ReplayFileError, ReplaySource, load_bars_file
from workers.sources.simulated import SimulatedMarket
from workers.sources.yfinance_source import YFinanceSource

pytestmark = pytest.mark.no_db

SESSION = pd.Timestamp("2024-06-10")
OPEN = pd.Timestamp("2024-06-10 13:30", tz="UTC")
TICKERS = ["AAPL", "MSFT", "KO"]


class ManualTime:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def test_session_clock_runs_through_session_minutes_only() -> None:
    real = ManualTime()
    clock = SessionClock(OPEN, speed=60.0, time_fn=real)
    assert clock.now() == OPEN
    real.t += 389.5  # 389.5 real seconds = 389.5 bars
    assert clock.now() == pd.Timestamp("2024-06-10 19:59:30", tz="UTC")
    real.t += 1.0  # the close is skipped: straight to the next session's open
    assert clock.now() == pd.Timestamp("2024-06-11 13:30:30", tz="UTC")


def test_simulated_latest_bars_are_final_and_respect_since() -> None:
    market = SimulatedMarket(seed=3)
    now = pd.Timestamp("2024-06-10 14:00:20", tz="UTC")
    bars = market.latest_bars(TICKERS, now)
    full = pd.concat([market.session_bars(t, SESSION) for t in TICKERS])
    want = final_only(full, now).sort_values(["ts", "ticker"], ignore_index=True)
    assert bars["ts"].max() == pd.Timestamp("2024-06-10 13:59", tz="UTC")
    pd.testing.assert_frame_equal(bars[BAR_COLUMNS], want[BAR_COLUMNS], check_dtype=False)
    since = pd.Timestamp("2024-06-10 13:55", tz="UTC")
    later = market.latest_bars(TICKERS, now, since=since)
    assert later["ts"].min() > since and len(later) == (want["ts"] > since).sum()


def test_at_the_open_the_previous_session_is_still_served() -> None:
    at_open = pd.Timestamp("2024-06-11 13:30:10", tz="UTC")
    assert current_session(at_open) == SESSION
    assert current_session(pd.Timestamp("2024-06-11 13:31", tz="UTC")) == pd.Timestamp("2024-06-11")
    assert current_session(pd.Timestamp("2024-06-09 15:00", tz="UTC")) is None  # Sunday
    bars = SimulatedMarket(seed=3).latest_bars(["KO"], at_open)
    assert bars["ts"].max() == pd.Timestamp("2024-06-10 19:59", tz="UTC")


def test_clean_bars_keeps_bad_prints_for_the_guard_and_drops_rows_without_a_time() -> None:
    rows = [
        ["A", OPEN, 10.0, 10.5, 9.5, 10.2, 100.0],
        ["A", OPEN + pd.Timedelta(minutes=1), 10.0, 9.0, 9.5, 10.2, 100.0],  # high < low
        ["A", OPEN + pd.Timedelta(minutes=2), 0.0, 10.5, 9.5, 10.2, 100.0],  # zero price
        ["A", OPEN + pd.Timedelta(minutes=3), float("inf"), 10.5, 9.5, 10.2, 1.0],
        ["A", OPEN + pd.Timedelta(minutes=4), 10.0, 10.5, 9.5, 10.2, float("nan")],  # volume 0
        ["A", pd.NaT, 10.0, 10.5, 9.5, 10.2, 1.0],  # no time: cannot be stored or judged
    ]
    kept, dropped = clean_bars(pd.DataFrame(rows, columns=BAR_COLUMNS))
    assert dropped == 1
    assert len(kept) == 5  # the write path's guard quarantines the bad prints by reason
    assert list(kept["volume"]) == [100.0, 100.0, 100.0, 1.0, 0.0]
    flags = check_bars(kept, None)
    assert dict(zip(flags["ts"] - OPEN, flags["reason"], strict=True)) == {
        pd.Timedelta(minutes=1): "ohlc_inconsistent",
        pd.Timedelta(minutes=2): "zero_or_negative",
        pd.Timedelta(minutes=3): "zero_or_negative",
    }


def _write_replay(tmp_path: Path, suffix: str) -> tuple[Path, pd.DataFrame]:
    market = SimulatedMarket(seed=9)
    bars = pd.concat([market.session_bars(t, SESSION) for t in ("AAPL", "KO")], ignore_index=True)
    path = tmp_path / f"bars{suffix}"
    if suffix == ".parquet":
        bars.to_parquet(path)
    else:
        out = bars.copy()
        out["ts"] = out["ts"].dt.tz_convert("America/New_York")  # any timezone is accepted
        out.to_csv(path, index=False)
    return path, bars


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_replay_plays_a_file_at_speed(tmp_path: Path, suffix: str) -> None:
    path, bars = _write_replay(tmp_path, suffix)
    real = ManualTime()
    loaded = load_bars_file(path)
    source = ReplaySource(loaded, clock=SessionClock(loaded["ts"].iloc[0], 600.0, time_fn=real))
    assert source.now() == OPEN and source.latest_bars(["AAPL", "KO"], source.now()).empty
    real.t += 3.0  # 600x: 30 bar-minutes
    now = source.now()
    assert now == OPEN + pd.Timedelta(minutes=30)
    got = source.latest_bars(["AAPL", "KO"], now)
    want = bars[bars["ts"] < now.floor("min")]
    assert len(got) == len(want) and got["ts"].max() == now.floor("min") - pd.Timedelta(minutes=1)
    hist = source.history(["KO"], OPEN, OPEN + pd.Timedelta(hours=1))
    assert set(hist["ticker"]) == {"KO"} and hist["ts"].max() < OPEN + pd.Timedelta(hours=1)
    assert source.corporate_actions(["KO"], SESSION.date(), SESSION.date()).empty


def test_replay_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ReplayFileError, match="does not exist"):
        load_bars_file(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("ticker,ts,close\nKO,2024-06-10 13:30,60\n")
    with pytest.raises(
        ReplayFileError, match=r"lacks column\(s\) \['open', 'high', 'low', 'volume'\]"
    ):
        load_bars_file(bad)


def test_default_clock_start_is_one_session_before_the_latest_open() -> None:
    wed_afternoon = pd.Timestamp("2024-06-12 18:00", tz="UTC")
    assert default_clock_start(wed_afternoon) == pd.Timestamp("2024-06-11 13:30", tz="UTC")
    wed_before_open = pd.Timestamp("2024-06-12 12:00", tz="UTC")
    assert default_clock_start(wed_before_open) == pd.Timestamp("2024-06-10 13:30", tz="UTC")
    monday_after_holiday = pd.Timestamp("2024-07-05 15:00", tz="UTC")  # July 4th closed
    assert default_clock_start(monday_after_holiday) == pd.Timestamp("2024-07-03 13:30", tz="UTC")


def test_clock_anchor_is_shared_and_keeps_market_time_on_speed_change(tmp_path: Path) -> None:
    a = anchored_clock(tmp_path, "simulated", speed=60.0, start=OPEN)
    b = anchored_clock(tmp_path, "simulated", speed=60.0)  # a second process: same anchor
    assert b.start == a.start == OPEN and b.real_start == a.real_start
    before = a.now()
    c = anchored_clock(tmp_path, "simulated", speed=6.0)
    assert c.speed == 6.0 and abs((c.now() - before).total_seconds()) < 60
    assert json.loads(anchor_path(tmp_path).read_text())["speed"] == 6.0
    assert reset_clock(tmp_path) and not anchor_path(tmp_path).exists()


def test_make_source_builds_each_kind(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, sim_speed=120.0, sim_seed=5)
    sim = make_source(settings)
    assert isinstance(sim, SimulatedMarket) and sim.seed == 5 and sim.clock_speed == 120.0
    assert sim.skips_closed_hours and anchor_path(tmp_path).exists()
    path, _ = _write_replay(tmp_path, ".csv")
    replay = make_source(
        load_settings(data_dir=tmp_path, replay_path=path, replay_speed=2.0), "replay"
    )
    assert isinstance(replay, ReplaySource) and replay.clock_speed == 120.0
    assert replay.clock.start == OPEN
    yfs = make_source(load_settings(data_dir=tmp_path, yf_min_request_interval_s=3.0), "yfinance")
    assert isinstance(yfs, YFinanceSource) and yfs.limits.min_request_interval_s == 3.0
    assert yfs.limits.max_days_per_request == 7 and not yfs.skips_closed_hours
    with pytest.raises(ValueError, match="unknown market source"):
        make_source(settings, "bloomberg")


@pytest.mark.dates
def test_the_shared_clock_starts_one_session_before_the_latest_open_at_any_instant(
    tmp_path: Path,
) -> None:
    """At whatever instant the demo first starts, its clock starts at the open of the session
    before the latest one that has opened, and every process (the app too) reads the same now."""
    from config.market_clock import market_time

    wall = pd.Timestamp.now(tz="UTC")
    settings = load_settings(data_dir=tmp_path, market_source="simulated", sim_speed=60.0)
    assert market_time(settings).clock == "simulated" and not market_time(settings).anchored
    clock = make_source(settings).clock  # type: ignore[attr-defined]
    cal = xnys()
    first = cal.minute_to_session(clock.start, direction="next")
    opens = [pd.Timestamp(cal.session_open(s)) for s in cal.sessions_window(first, 3)]
    assert opens[0] == clock.start
    assert opens[1] <= wall < opens[2]  # the latest session opened by now is the next one
    seen = market_time(settings)
    assert seen.clock == "simulated" and seen.anchored and seen.speed == 60.0
    assert clock.start <= seen.now < clock.start + pd.Timedelta(minutes=10)


def test_market_time_is_the_wall_clock_for_live_sources(tmp_path: Path) -> None:
    from config.market_clock import market_time

    before = pd.Timestamp.now(tz="UTC")
    seen = market_time(load_settings(data_dir=tmp_path, market_source="yfinance"))
    assert seen.clock == "wall" and before <= seen.now <= pd.Timestamp.now(tz="UTC")
    assert "wall clock" in seen.description
