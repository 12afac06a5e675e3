"""The price ingestor against the real database, on a simulated market with a manual clock."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from config.market_calendar import xnys
from db.reads import read_from_db
from tests.workers.price_support import (
    FaultySource,
    assert_same_bars,
    queue,
    simulated,
    source_truth,
    stored_bars,
)
from workers import price_ingestor
from workers.gaps import find_gaps, missing_minutes
from workers.price_ingestor import PriceIngestor, last_closed_minute
from workers.sources.base import SourceLimits

TICKERS = ["AAPL", "MSFT", "KO", "XOM"]
OPEN = pd.Timestamp("2024-06-10 13:30", tz="UTC")
MIN = pd.Timedelta(minutes=1)


def ts(hhmm: str, day: str = "2024-06-10") -> pd.Timestamp:
    return pd.Timestamp(f"{day} {hhmm}", tz="UTC").as_unit("ns")


def bars_at(ticker: str, *stamps: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame({"ticker": ticker, "ts": list(stamps)})


# ---------------------------------------------------------------------------- gap detection


def test_missing_minutes_between_known_and_new_bars_are_gaps() -> None:
    last = {"AAPL": ts("13:40")}
    new = bars_at("AAPL", ts("13:41"), ts("13:44"), ts("13:45"), ts("13:49"))
    gaps = find_gaps(last, new)
    assert list(zip(gaps["gap_start"], gaps["gap_end"], strict=True)) == [
        (ts("13:42"), ts("13:43")),
        (ts("13:46"), ts("13:48")),
    ]


def test_gaps_are_split_per_session_and_skip_closed_hours() -> None:
    last = {"KO": ts("19:57")}  # Monday, 3 minutes before the close
    new = bars_at("KO", ts("13:32", "2024-06-11"))  # Tuesday, 2 minutes after the open
    gaps = find_gaps(last, new)
    assert list(zip(gaps["gap_start"], gaps["gap_end"], strict=True)) == [
        (ts("19:58"), ts("19:59")),
        (ts("13:30", "2024-06-11"), ts("13:31", "2024-06-11")),
    ]
    assert len(missing_minutes(gaps)) == 4


def test_a_closed_session_checks_its_last_minutes_and_new_tickers_start_clean() -> None:
    last = {"AAPL": ts("19:50"), "MSFT": ts("19:59")}
    new = bars_at("XOM", ts("19:55"), ts("19:57"))  # a ticker seen for the first time
    gaps = find_gaps(last, new, through=ts("19:59"))
    got = {(r.ticker, r.gap_start, r.gap_end) for r in gaps.itertuples(index=False)}
    assert got == {
        ("AAPL", ts("19:51"), ts("19:59")),
        ("XOM", ts("19:56"), ts("19:56")),
        ("XOM", ts("19:58"), ts("19:59")),  # nothing before 19:55 is asked of a new ticker
    }


def test_last_closed_minute_follows_the_calendar() -> None:
    assert last_closed_minute(ts("20:00:30")) == ts("19:59")
    assert last_closed_minute(ts("15:00")) == ts("19:59", "2024-06-07")  # Friday
    early = pd.Timestamp("2024-11-29 19:00", tz="UTC")  # the day after Thanksgiving: 13:00 close
    assert last_closed_minute(early) == pd.Timestamp("2024-11-29 17:59", tz="UTC")


# ---------------------------------------------------------------------------- the loop


def run_ingestor(market, real, polls: int, **kw) -> PriceIngestor:  # type: ignore[no-untyped-def]
    ingestor = PriceIngestor(market, TICKERS, sleep=real.sleep, **kw)
    ingestor.run(max_polls=polls)
    return ingestor


def test_session_is_stored_completely_and_missing_minutes_end_confirmed_empty(
    clean_tables: None,
) -> None:
    market, real = simulated("2024-06-10 19:30", speed=60.0, missing_rate=0.03)
    ingestor = run_ingestor(market, real, polls=45)  # Monday 19:30 -> past the close -> Tuesday
    end = market.now().floor("min")  # the minute still forming at the last poll
    assert end > ts("13:40", "2024-06-11")
    stored = stored_bars()
    # the first poll served Monday so far, later polls every new minute
    assert_same_bars(stored, source_truth(market, TICKERS, OPEN, end))
    q = queue()
    monday = q["gap_end"] < ts("20:00")
    assert monday.any() and (~monday).any()
    assert (q.loc[monday, "status"] == "empty").all()  # drained at the close: no trades there
    assert (q.loc[~monday, "status"] == "pending").all()  # Tuesday is still open
    newest = stored.groupby("ticker")["ts"].max()
    minutes = xnys().minutes_in_range(OPEN, end - MIN)
    have = set(zip(stored["ticker"], stored["ts"], strict=True))
    expected_gaps = {(t, m) for t in TICKERS for m in minutes if m < newest[t]} - have
    assert missing_minutes(q) == expected_gaps
    beat = read_from_db("SELECT status, details FROM worker_heartbeats")
    details = beat["details"].iloc[0]
    details = json.loads(details) if isinstance(details, str) else details
    assert beat["status"].iloc[0] == "stopped" and ingestor.stats.polls == 45
    assert details["bars_written"] == len(stored) and details["buffered_bars"] == 0


def test_restart_resumes_from_the_database_and_keeps_its_gaps(clean_tables: None) -> None:
    market, real = simulated("2024-06-10 14:00", speed=60.0, missing_rate=0.05)
    run_ingestor(market, real, polls=15)
    gaps_before = queue()
    assert not gaps_before.empty
    real.t += 10  # the worker is down for ten bars
    second = PriceIngestor(market, TICKERS, sleep=real.sleep)
    second.run(max_polls=10)
    stored = stored_bars()
    assert_same_bars(stored, source_truth(market, TICKERS, OPEN, market.now().floor("min")))
    kept = queue().merge(gaps_before[["ticker", "gap_start"]], on=["ticker", "gap_start"])
    assert len(kept) == len(gaps_before)


def test_forming_bars_never_get_in_and_a_late_bar_becomes_a_gap(clean_tables: None) -> None:
    market, real = simulated("2024-06-10 15:00", speed=60.0, missing_rate=0.0)
    faults = {1: "hole", 3: "partial_last_bar", 8: "partial_last_bar"}
    source = FaultySource(market, faults.get)
    PriceIngestor(source, TICKERS, sleep=real.sleep).run(max_polls=15)
    truth = source_truth(market, TICKERS, OPEN, market.now().floor("min"))
    hole = queue()
    assert len(hole) == 1 and hole["status"].iloc[0] == "pending"
    assert hole["gap_start"].iloc[0] == hole["gap_end"].iloc[0]
    late = (hole["ticker"].iloc[0], hole["gap_start"].iloc[0])
    rest = truth[[(t, m) != late for t, m in zip(truth["ticker"], truth["ts"], strict=True)]]
    assert_same_bars(stored_bars(), rest)  # and no mid-minute price of a forming bar


class _RateLimited(FaultySource):
    limits = SourceLimits(100, 30, 7, 2.0)


def test_rate_limits_back_off_longer_than_a_bar(clean_tables: None) -> None:
    market, real = simulated("2024-06-10 15:00", speed=60.0)
    source = _RateLimited(market, lambda n: "rate_limit" if n <= 3 else None)
    ingestor = PriceIngestor(source, TICKERS, sleep=real.sleep)
    waits = [ingestor.step() for _ in range(3)]
    assert ingestor.rate_limits == 3 and ingestor.stats.rate_limited == 3
    assert waits[0] >= 2.5 and waits[2] >= 10.0  # jittered, with a growing ceiling
    assert ingestor.step() <= 2.0 and ingestor.rate_limits == 0  # back to the request spacing
    assert not stored_bars().empty


def test_idles_outside_sessions_on_a_wall_clock_source(clean_tables: None) -> None:
    market, _ = simulated("2024-06-10 15:00")
    market.clock = None  # wall-clock mode: the market's own closed hours apply

    class Sunday(FaultySource):
        def now(self) -> pd.Timestamp:
            return pd.Timestamp("2024-06-09 15:00", tz="UTC")

        @property
        def skips_closed_hours(self) -> bool:
            return False

    source = Sunday(market, lambda n: None)
    ingestor = PriceIngestor(source, TICKERS)
    wait = ingestor.step()
    assert 1.0 <= wait <= 60.0 and source.polls == 0
    beat = read_from_db("SELECT status FROM worker_heartbeats")
    assert list(beat["status"]) == ["idle"]


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        price_ingestor.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--source" in out and "--once" in out and "--max-polls" in out
