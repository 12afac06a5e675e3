"""One rule for every source and write path: only regular-session bars are stored.

A recorded file with pre-market, regular and post-market bars goes through the seeding, the live
poll and the backfill paths (and the replay loader); the stored bars are exactly the regular
minutes, and no extended-hours minute is ever queued as a gap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from config.market_calendar import regular_session_mask, xnys
from config.market_clock import SessionClock
from tests.workers.price_support import ManualTime, queue, stored_bars
from workers import backfill
from workers.price_ingestor import PriceIngestor
from workers.seed_history import seed_history
from workers.sources.replay import ReplaySource, load_bars_file
from workers.sources.simulated import SimulatedMarket

TICKERS = ["AAPL", "KO"]
SESSIONS = pd.DatetimeIndex(["2024-06-10", "2024-06-11", "2024-06-12", "2024-06-13"])


def extended_hours(regular: pd.DataFrame, session: pd.Timestamp) -> pd.DataFrame:
    """Pre-market (04:00-09:29 New York) and post-market (16:00-19:59) bars of one session,
    priced around the session's first and last bar, as Yahoo returns them with prepost."""
    day = pd.Timestamp(session).tz_localize("America/New_York")
    pre = pd.date_range(
        day + pd.Timedelta(hours=4), day + pd.Timedelta(hours=9, minutes=29), freq="min"
    )
    post = pd.date_range(
        day + pd.Timedelta(hours=16), day + pd.Timedelta(hours=19, minutes=59), freq="min"
    )
    frames = []
    for ticker, mine in regular.groupby("ticker"):
        for stamps, ref in ((pre, mine["open"].iloc[0]), (post, mine["close"].iloc[-1])):
            price = np.full(len(stamps), float(ref)) * (1 + 0.001 * np.sin(np.arange(len(stamps))))
            frames.append(
                pd.DataFrame(
                    {
                        "ticker": ticker,
                        "ts": stamps.tz_convert("UTC"),
                        "open": price,
                        "high": price * 1.001,
                        "low": price * 0.999,
                        "close": price,
                        "volume": 100.0,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def recording() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(everything recorded, the regular bars among it); a few regular minutes never traded."""
    market = SimulatedMarket(seed=5, missing_rate=0.0)
    regular = pd.concat(
        [market.session_bars(t, s) for s in SESSIONS for t in TICKERS], ignore_index=True
    )
    no_trades = [50, 51, 400, 1200, 1600]  # minutes without trades
    regular = regular.drop(index=no_trades).reset_index(drop=True)
    extended = pd.concat(
        [extended_hours(regular[regular["ts"].dt.date == s.date()], s) for s in SESSIONS]
    )
    everything = pd.concat([regular, extended], ignore_index=True)
    return everything.sort_values(["ts", "ticker"], ignore_index=True), regular


class WholeDays(ReplaySource):
    """A recorded feed that, like a day-granular download, answers every request with whole
    calendar days: pre- and post-market bars included."""

    def history(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        day = pd.Timedelta(days=1)
        return super().history(tickers, start.floor("D") - day, end.ceil("D") + day)

    def latest_bars(
        self, tickers: list[str], now: pd.Timestamp, since: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        return self._slice(now.floor("D") - pd.Timedelta(days=1), now.floor("min"), tickers)


def assert_regular_only(regular: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> None:
    stored = stored_bars()
    assert regular_session_mask(stored["ts"]).all()
    want = regular[(regular["ts"] >= start) & (regular["ts"] < end)]
    got = stored[(stored["ts"] >= start) & (stored["ts"] < end)]
    assert len(got) == len(want)
    merged = got.merge(want, on=["ticker", "ts"], suffixes=("", "_want"))
    assert len(merged) == len(want)
    assert np.allclose(merged["close"], merged["close_want"])
    q = queue()
    if not q.empty:
        assert regular_session_mask(q["gap_start"]).all()
        assert regular_session_mask(q["gap_end"]).all()


def test_seed_poll_and_backfill_store_regular_session_bars_only(clean_tables: None) -> None:
    everything, regular = recording()
    cal = xnys()
    third_open = pd.Timestamp(cal.session_open(SESSIONS[2]))
    real = ManualTime()
    source = WholeDays(everything, clock=SessionClock(third_open, speed=60.0, time_fn=real))
    # seeding: the two sessions before the clock's start
    report = seed_history(2, source=source, adjust=False, progress=False)
    assert report.sessions == 2 and report.bars_written == int((regular["ts"] < third_open).sum())
    assert_regular_only(regular, regular["ts"].min(), third_open)
    empty = queue()
    assert set(empty["status"]) == {"empty"} and len(empty) == 3  # the seeded no-trade runs

    # the live poll: through the third session and into the fourth (every poll sees whole days)
    ingestor = PriceIngestor(
        source, TICKERS, sleep=real.sleep, poll_interval_s=600.0, drain_backfill=False
    )
    ingestor.run(max_polls=45)
    fourth_open = pd.Timestamp(cal.session_open(SESSIONS[3]))
    assert source.now() > fourth_open + pd.Timedelta(minutes=30)
    end = fourth_open + pd.Timedelta(minutes=30)
    assert_regular_only(regular, regular["ts"].min(), end)
    pending = queue()[lambda q: q["status"] == "pending"]
    assert len(pending) == 1  # the third session's no-trade minute

    # the backfill drain and a range backfill: whole days come back, regular bars are kept
    report = backfill.drain_queue(source)
    assert report.empty == len(pending) and report.filled == 0
    backfill.backfill_range(source, TICKERS, SESSIONS[0].date(), SESSIONS[2].date())
    assert_regular_only(regular, regular["ts"].min(), end)


def test_the_replay_loader_keeps_regular_session_bars_only(tmp_path: Path) -> None:
    everything, regular = recording()
    path = tmp_path / "bars.csv"
    everything.to_csv(path, index=False)
    loaded = load_bars_file(path)
    assert len(loaded) == len(regular)
    assert regular_session_mask(loaded["ts"]).all()
