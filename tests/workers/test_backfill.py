"""Gap detection plus the post-market backfill make a session complete; failures are bounded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from config.market_calendar import xnys
from config.settings import get_settings
from tests.workers.price_support import (
    FaultySource,
    assert_same_bars,
    queue,
    simulated,
    source_truth,
    stored_bars,
)
from workers import backfill
from workers.bar_store import write_bars
from workers.gaps import empty_gaps
from workers.price_ingestor import PriceIngestor
from workers.sources.base import HistoryOutOfReachError, SourceError, empty_bars

TICKERS = ["AAPL", "JPM", "KO"]
MONDAY_OPEN = pd.Timestamp("2024-06-10 13:30", tz="UTC")
TUESDAY_OPEN = pd.Timestamp("2024-06-11 13:30", tz="UTC")


def test_gaps_and_the_post_market_backfill_make_the_session_complete(clean_tables: None) -> None:
    market, real = simulated("2024-06-10 17:00", speed=60.0, missing_rate=0.02)
    holes = dict.fromkeys(range(1, 40, 5), "hole")  # a bar left out of an answer now and then
    source = FaultySource(market, holes.get)
    ingestor = PriceIngestor(source, TICKERS, sleep=real.sleep, poll_interval_s=300.0)
    ingestor.run(max_polls=40)  # five bars per poll: through Monday's close into Tuesday
    assert market.now() > TUESDAY_OPEN
    q = queue()
    monday = q[(q["gap_start"] >= MONDAY_OPEN) & (q["gap_end"] < TUESDAY_OPEN)]
    assert {"filled", "empty"} <= set(monday["status"])  # holes refetched, no-trade minutes
    assert set(monday["status"]) == {"filled", "empty"}
    stored = stored_bars()
    monday_bars = stored[(stored["ts"] >= MONDAY_OPEN) & (stored["ts"] < TUESDAY_OPEN)]
    assert_same_bars(monday_bars, source_truth(market, TICKERS, MONDAY_OPEN, TUESDAY_OPEN))
    for row in monday[monday["status"] == "empty"].itertuples(index=False):
        assert market.history(
            [row.ticker], row.gap_start, row.gap_end + pd.Timedelta(minutes=1)
        ).empty


def _queue_gap(ticker: str, start: pd.Timestamp, minutes: int = 1) -> None:
    gaps = empty_gaps()
    gaps.loc[0] = [ticker, start, start + pd.Timedelta(minutes=minutes - 1)]
    write_bars(empty_bars(), source="test", gaps=gaps)


class _Broken(FaultySource):
    def __init__(self, market, error: Exception) -> None:  # type: ignore[no-untyped-def]
        super().__init__(market, lambda n: None)
        self.error = error

    def history(self, tickers, start, end):  # type: ignore[no-untyped-def]
        raise self.error


def test_source_errors_are_retried_then_given_up(clean_tables: None) -> None:
    market, _ = simulated("2024-06-11 15:00")
    _queue_gap("KO", pd.Timestamp("2024-06-10 14:00", tz="UTC"), minutes=3)
    broken = _Broken(market, SourceError("HTTP 503"))
    for attempt in range(1, 4):
        report = backfill.drain_queue(broken, max_attempts=3)
        q = queue()
        assert q["attempts"].iloc[0] == attempt
        assert q["status"].iloc[0] == ("failed" if attempt == 3 else "pending")
    assert report.failed == 1 and backfill.drain_queue(broken).failed == 0  # not retried again


def test_gaps_beyond_the_history_reach_fail_at_once(clean_tables: None) -> None:
    market, _ = simulated("2024-06-11 15:00")
    _queue_gap("KO", pd.Timestamp("2024-06-10 14:00", tz="UTC"))
    report = backfill.drain_queue(_Broken(market, HistoryOutOfReachError("older than 30 days")))
    q = queue()
    assert report.failed == 1 and q["status"].iloc[0] == "failed" and q["attempts"].iloc[0] == 1


@pytest.mark.dates
def test_range_backfill_from_the_command_line(
    clean_tables: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UNIVERSE", "KO,PEP")
    monkeypatch.setenv("MARKET_SOURCE", "simulated")
    get_settings.cache_clear()
    try:
        from workers.sources import make_source

        source = make_source(get_settings())
        start_session = xnys().minute_to_session(source.now(), direction="previous")
        sessions = xnys().sessions_window(start_session, -4)[:3]  # three sessions before
        first, last = sessions[0].date(), sessions[-1].date()
        _queue_gap("KO", pd.Timestamp(xnys().session_open(sessions[1])), minutes=2)
        assert backfill.main(["--start", str(first), "--end", str(last)]) == 0
        lo = pd.Timestamp(xnys().session_open(sessions[0]))
        hi = pd.Timestamp(xnys().session_close(sessions[-1]))
        assert_same_bars(stored_bars(), source_truth(source, ["KO", "PEP"], lo, hi))
        assert queue()["status"].iloc[0] == "filled"
        again = backfill.backfill_range(source, ["KO", "PEP"], first, last)
        assert again.bars_written == 0  # idempotent
    finally:
        get_settings.cache_clear()


def test_start_without_end_is_refused() -> None:
    with pytest.raises(SystemExit):
        backfill.main(["--start", "2024-06-10"])


def test_drains_of_the_queue_never_race(
    clean_tables: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The price ingestor's post-market drain and the cron job share one lock: while one holds
    it, the other does nothing to the queue and says so (the CLI exits 75, cron records it
    skipped); the ingestor retries after its next poll."""
    from core.locks import EXIT_BUSY, LockBusyError
    from db.ops import backfill_lock

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MARKET_SOURCE", "simulated")
    get_settings.cache_clear()
    try:
        market, real = simulated("2024-06-11 15:00")
        _queue_gap("KO", pd.Timestamp("2024-06-10 14:00", tz="UTC"), minutes=3)
        ingestor = PriceIngestor(market, ["KO"], sleep=real.sleep)
        with backfill_lock():
            with pytest.raises(LockBusyError):
                backfill.drain_queue(market)
            assert backfill.main([]) == EXIT_BUSY
            assert "being drained already" in capsys.readouterr().err
            ingestor.state_loaded = True
            ingestor._drain(market.now())
            assert ingestor.backfill_due  # deferred, not lost
            assert queue()["attempts"].iloc[0] == 0  # nobody touched the queue
        ingestor._drain(market.now())
        assert not ingestor.backfill_due
        assert queue()["status"].iloc[0] in {"filled", "empty"}
    finally:
        get_settings.cache_clear()
