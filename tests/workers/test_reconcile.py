"""The daily reconciliation: the stored minute bars resampled to the day against the source's
own daily bars (simulated, replay, and yfinance's adapter against recorded Yahoo payloads)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from config.market_clock import SessionClock
from config.settings import get_settings
from core.locks import EXIT_BUSY
from db.connections import execute
from db.reads import read_from_db
from db.reconciliation import reconciliation_results
from tests.workers.fake_yahoo import DATA, FakeYahoo, install
from workers import reconcile
from workers.bar_store import write_bars
from workers.reconcile import Tolerances, run_reconciliation, sessions_to_check
from workers.sources.base import DAILY_COLUMNS, daily_from_minutes
from workers.sources.replay import ReplaySource
from workers.sources.simulated import SimulatedMarket
from workers.sources.yfinance_source import YFinanceSource

TICKERS = ["AAPL", "KO", "NVDA"]
SESSIONS = [date(2024, 6, 10), date(2024, 6, 11), date(2024, 6, 12)]
FIRST_OPEN = pd.Timestamp("2024-06-10 13:30", tz="UTC")
LAST_CLOSE = pd.Timestamp("2024-06-12 20:00", tz="UTC")
FIELDS = ["open", "high", "low", "close", "volume"]


def fixed_clock(at: str) -> SessionClock:
    return SessionClock(pd.Timestamp(at, tz="UTC"), speed=1.0, time_fn=lambda: 0.0)


# --------------------------------------------------------------------------- the sources


@pytest.mark.no_db
def test_simulated_daily_bars_are_its_raw_minutes_resampled() -> None:
    market = SimulatedMarket(seed=11)
    daily = market.daily_bars(TICKERS, SESSIONS[0], SESSIONS[-1])
    assert list(daily.columns) == DAILY_COLUMNS and len(daily) == 9
    one = market.session_bars("KO", pd.Timestamp("2024-06-11"))
    ko = daily[(daily["ticker"] == "KO") & (daily["session"] == date(2024, 6, 11))].iloc[0]
    assert ko["open"] == one["open"].iloc[0] and ko["close"] == one["close"].iloc[-1]
    assert (ko["high"], ko["low"]) == (one["high"].max(), one["low"].min())
    assert ko["volume"] == one["volume"].sum()
    # across a split the daily bars stay raw, like the minutes served
    [split] = market.corporate_actions(["NVDA"], date(2025, 1, 1), date(2025, 12, 31)).itertuples()
    before = market.daily_bars(["NVDA"], split.ex_date - timedelta(days=5), split.ex_date)
    gap = before["close"].iloc[-2] / before["open"].iloc[-1]
    assert 0.8 * split.value < gap < 1.25 * split.value


@pytest.mark.no_db
def test_replay_daily_bars_are_its_minutes_resampled() -> None:
    bars = SimulatedMarket(seed=11).history(TICKERS, FIRST_OPEN, LAST_CLOSE)
    replay = ReplaySource(bars, clock=fixed_clock("2024-06-13 14:00"))
    daily = replay.daily_bars(TICKERS, SESSIONS[0], date(2024, 6, 13))
    pd.testing.assert_frame_equal(daily, daily_from_minutes(bars))
    assert sorted(set(daily["session"])) == SESSIONS  # 2024-06-13 has not closed


@pytest.mark.no_db
def test_only_sessions_closed_on_the_clock_are_checked() -> None:
    during = pd.Timestamp("2024-06-11 15:00", tz="UTC")
    assert sessions_to_check(during, 3) == [date(2024, 6, 6), date(2024, 6, 7), date(2024, 6, 10)]
    after = pd.Timestamp("2024-06-11 20:05", tz="UTC")
    assert sessions_to_check(after, 1) == [date(2024, 6, 11)]
    early_close = pd.Timestamp("2024-07-03 17:05", tz="UTC")  # 13:05 in New York, July 3rd
    assert sessions_to_check(early_close, 1) == [date(2024, 7, 3)]
    assert sessions_to_check(after, 2, last=date(2024, 6, 7)) == [
        date(2024, 6, 6),
        date(2024, 6, 7),
    ]
    with pytest.raises(ValueError, match="not an XNYS session"):
        sessions_to_check(after, 1, last=date(2024, 6, 8))
    with pytest.raises(ValueError, match="has not closed yet"):
        sessions_to_check(during, 1, last=date(2024, 6, 11))


@pytest.fixture
def fake(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeYahoo]:
    from yfinance.data import YfData

    yield install(
        monkeypatch,
        tmp_path_factory.getbasetemp() / "yf-cache",
        pd.Timestamp("2024-06-11 15:00", tz="UTC"),  # 2024-06-10 closed, 06-11 in session
    )
    YfData.cache_get.cache_clear()


def recorded_daily(symbol: str) -> pd.DataFrame:
    """The daily bars of a recorded Yahoo chart payload, as Yahoo sends them."""
    result = json.loads((DATA / f"yahoo_chart_1d_{symbol}_3mo.json").read_text())["chart"]
    result = result["result"][0]
    frame = pd.DataFrame({k: result["indicators"]["quote"][0][k] for k in FIELDS}, dtype=float)
    stamps = pd.to_datetime(result["timestamp"], unit="s", utc=True).tz_convert("America/New_York")
    return frame.assign(ticker=symbol, session=list(stamps.date))[DAILY_COLUMNS]


@pytest.mark.no_db
def test_yfinance_daily_bars_are_repaired_and_in_the_prices_traded_that_day(
    fake: FakeYahoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yfinance as yf

    calls: list[dict[str, object]] = []
    real = yf.download

    def download(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(yf, "download", download)
    source = YFinanceSource(min_request_interval_s=0.0, attempts=1, max_wait_s=0.0)
    daily = source.daily_bars(["AAPL", "MSFT", "NVDA"], date(2024, 6, 5), date(2024, 6, 11))
    [kwargs] = calls
    assert kwargs["interval"] == "1d" and kwargs["repair"] is True
    assert kwargs["auto_adjust"] is False and kwargs["actions"] is True
    # through today: Yahoo adjusts daily prices for every split up to now
    windows = {(r["period1"], r["period2"]) for r in fake.requests if "period1" in r}
    new_york = "America/New_York"
    assert windows == {
        (
            int(pd.Timestamp("2024-06-05", tz=new_york).timestamp()),
            int(pd.Timestamp("2024-06-12", tz=new_york).timestamp()),
        )
    }
    want = pd.concat([recorded_daily(s) for s in ("AAPL", "MSFT", "NVDA")], ignore_index=True)
    want = want[(want["session"] >= date(2024, 6, 5)) & (want["session"] <= date(2024, 6, 10))]
    # NVDA split 10:1 on 2024-06-10: Yahoo's earlier days are divided by 10, the store's are not
    before = (want["ticker"] == "NVDA") & (want["session"] < date(2024, 6, 10))
    want.loc[before, ["open", "high", "low", "close"]] *= 10.0
    want.loc[before, "volume"] /= 10.0
    pd.testing.assert_frame_equal(daily, want.reset_index(drop=True), check_dtype=False)


# --------------------------------------------------------------------------- the verdicts


def _day(ticker: str, **values: float) -> dict[str, object]:
    return {"ticker": ticker, "session": date(2024, 6, 10)} | dict.fromkeys(FIELDS, 100.0) | values


@pytest.mark.no_db
def test_each_field_is_judged_against_its_tolerance() -> None:
    source = pd.DataFrame(
        [_day(t, volume=1e6) for t in ("OK", "NARROW", "WIDE", "SHORT", "OVER", "CLOSE", "SRC")]
    )
    stored = pd.DataFrame(
        [
            _day("OK", volume=1e6),
            _day("NARROW", high=99.2, low=100.8, volume=1e6),  # a range inside the source's
            _day("WIDE", high=100.8, volume=1e6),  # a high the source never had
            _day("SHORT", volume=0.8e6),  # the closing auction's volume is not in the minutes
            _day("OVER", volume=1.1e6),
            _day("CLOSE", close=100.6, volume=1e6),
            _day("STORE", volume=1e6),
        ]
    ).assign(minutes=390)
    rows = reconcile.reconcile(stored, source, source_name="test", tolerances=Tolerances())
    status = dict(zip(rows["ticker"], rows["status"], strict=True))
    assert status == {
        "OK": "ok",
        "NARROW": "ok",
        "WIDE": "differs",
        "SHORT": "ok",
        "OVER": "differs",
        "CLOSE": "differs",
        "STORE": "missing_source",
        "SRC": "missing_stored",
    }
    detail = dict(zip(rows["ticker"], rows["detail"], strict=True))
    assert detail["WIDE"].startswith("high +0.80% (stored 100.8 vs source 100;")
    assert detail["OVER"].startswith("volume +10.00% (stored 1,100,000 vs source 1,000,000;")
    assert detail["CLOSE"] == (
        "close +0.60% (stored 100.6 vs source 100; accepted -0.5% to +0.5%); "
        "390 of 390 minutes stored"
    )
    diff = dict(zip(rows["ticker"], rows["max_price_diff"], strict=True))
    assert diff["OK"] == 0.0 and diff["NARROW"] == pytest.approx(0.008)
    assert pd.isna(diff["SRC"]) and pd.isna(diff["STORE"])
    with pytest.raises(ValueError, match="volume_short"):
        Tolerances(volume_short=1.5)


@pytest.mark.no_db
def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        reconcile.main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "--session" in out and "--days" in out


# --------------------------------------------------------------------------- on the database


@pytest.fixture
def sim_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The simulated market and three tickers; the root logger as it was afterwards (`main`
    points it at this test's captured stderr)."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    monkeypatch.setenv("MARKET_SOURCE", "simulated")
    get_settings.cache_clear()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    get_settings.cache_clear()


def test_sessions_stored_through_the_write_path_reconcile_ok(
    clean_tables: None, sim_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from workers.sources import make_source

    market = make_source(get_settings())
    write_bars(market.history(TICKERS, FIRST_OPEN, LAST_CLOSE), source=market.name)
    assert reconcile.main(["--session", "2024-06-12", "--days", "3"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "reconciled 3 session(s) 2024-06-10..2024-06-12 against simulated: "
        "ok 9, differs 0, missing_stored 0, missing_source 0"
    )
    rows = reconciliation_results()
    assert len(rows) == 9 and set(rows["status"]) == {"ok"}
    assert set(rows["source"]) == {"simulated"} and (rows["max_price_diff"] == 0).all()
    assert list(rows["session_date"].iloc[[0, -1]]) == [SESSIONS[-1], SESSIONS[0]]


class _LacksOneDay(SimulatedMarket):
    """The simulated market without KO's daily bar of 2024-06-10."""

    def daily_bars(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        daily = super().daily_bars(tickers, start, end)
        lacking = (daily["ticker"] == "KO") & (daily["session"] == SESSIONS[0])
        return daily[~lacking].reset_index(drop=True)


def test_planted_differences_and_missing_days_are_flagged(
    clean_tables: None, sim_env: None
) -> None:
    market = _LacksOneDay(seed=11)
    write_bars(market.history(TICKERS, FIRST_OPEN, LAST_CLOSE), source=market.name)
    # AAPL's 2024-06-11 rewritten 3% higher; KO's 2024-06-12 lacks its afternoon;
    # nothing stored of NVDA's 2024-06-10
    execute(
        "UPDATE bars_1m SET open = open * 1.03, high = high * 1.03, low = low * 1.03, "
        "close = close * 1.03 WHERE ticker = 'AAPL' AND ts >= '2024-06-11 13:30+00' "
        "AND ts < '2024-06-11 20:00+00'"
    )
    execute("DELETE FROM bars_1m WHERE ticker = 'KO' AND ts >= '2024-06-12 16:45+00'")
    execute("DELETE FROM bars_1m WHERE ticker = 'NVDA' AND ts < '2024-06-10 20:00+00'")
    report = run_reconciliation(market, tickers=TICKERS, sessions=SESSIONS)
    assert report.counts == {"ok": 5, "differs": 2, "missing_stored": 1, "missing_source": 1}
    rows = reconciliation_results(only_problems=True).set_index(["ticker", "session_date"])
    assert len(rows) == 4
    aapl = rows.loc[("AAPL", SESSIONS[1])]
    assert aapl["status"] == "differs" and aapl["max_price_diff"] == pytest.approx(0.03)
    for name in ("open", "high", "low", "close"):
        assert f"{name} +3.00% (stored " in aapl["detail"]
    assert "volume" not in aapl["detail"]
    ko = rows.loc[("KO", SESSIONS[2])]
    kept = read_from_db(
        "SELECT count(*) AS n FROM bars_1m WHERE ticker = 'KO' AND ts >= '2024-06-12 13:30+00'"
    )["n"].iloc[0]
    assert ko["status"] == "differs" and "volume -" in ko["detail"]
    assert ko["detail"].endswith(f"{kept} of 390 minutes stored")
    assert rows.loc[("NVDA", SESSIONS[0]), "status"] == "missing_stored"
    assert pd.isna(rows.loc[("NVDA", SESSIONS[0]), "stored_close"])
    assert rows.loc[("KO", SESSIONS[0]), "status"] == "missing_source"
    # the backfill restores KO's afternoon: the next run judges the day again
    lost = market.history(["KO"], pd.Timestamp("2024-06-12 16:45", tz="UTC"), LAST_CLOSE)
    write_bars(lost, source=market.name, on_conflict="nothing")
    run_reconciliation(market, tickers=["KO"], sessions=SESSIONS[2:])
    after = reconciliation_results().set_index(["ticker", "session_date"])
    assert after.loc[("KO", SESSIONS[2]), "status"] == "ok"


def test_a_drain_in_progress_defers_the_run(clean_tables: None, sim_env: None) -> None:
    from db.ops import backfill_lock

    with backfill_lock():
        assert reconcile.main(["--session", "2024-06-12", "--days", "1"]) == EXIT_BUSY
    assert reconciliation_results().empty
