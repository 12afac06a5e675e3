"""Replay: recorded 1-minute bars from a CSV or Parquet file, played back at any speed.

The file has the columns ticker, ts, open, high, low, close, volume (ts: the minute's open;
with a timezone, or naive meaning UTC). Like every source, it serves regular-session bars only:
pre- and post-market rows of the file are left out when it is loaded, and so are malformed
rows, each named in a warning (`workers.sources.replay_file`): a bad row never stops the
replay. The replay clock is a `SessionClock` that starts at the file's first bar and runs
`speed` bar-minutes per real second through session minutes only. Recorded bars carry no
corporate-action events, so `corporate_actions` is always empty; the daily bars
(`MarketDataSource.daily_bars`) are the file's minutes resampled.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from config.market_calendar import xnys
from config.market_clock import SessionClock
from workers.sources.base import (
    ACTION_COLUMNS,
    MarketDataSource,
    SourceLimits,
    current_session,
    empty_bars,
)
from workers.sources.replay_file import ReplayFileError, load_bars_file

__all__ = ["ReplayFileError", "ReplaySource", "load_bars_file"]


class ReplaySource(MarketDataSource):
    """Bars of a recorded file, served as if live on a replay clock."""

    name = "replay"
    limits = SourceLimits(10_000, None, None, 0.0)

    def __init__(
        self, bars: pd.DataFrame, speed: float = 60.0, clock: SessionClock | None = None
    ) -> None:
        if bars.empty:
            raise ReplayFileError("nothing to replay: no bars")
        self._bars = bars.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)
        self._ts_ns = pd.DatetimeIndex(self._bars["ts"]).as_unit("ns").asi8
        self.first_ts: pd.Timestamp = self._bars["ts"].iloc[0]
        self.last_ts: pd.Timestamp = self._bars["ts"].iloc[-1]
        self.clock = clock or SessionClock(self.first_ts, speed=speed * 60.0)

    @classmethod
    def from_file(
        cls, path: Path, speed: float = 60.0, clock: SessionClock | None = None
    ) -> ReplaySource:
        return cls(load_bars_file(path), speed=speed, clock=clock)

    def now(self) -> pd.Timestamp:
        return self.clock.now()

    def live_start(self) -> pd.Timestamp:
        return self.clock.start

    @property
    def clock_speed(self) -> float:
        return float(self.clock.speed)

    @property
    def skips_closed_hours(self) -> bool:
        return True

    def _slice(self, start: pd.Timestamp, end: pd.Timestamp, tickers: list[str]) -> pd.DataFrame:
        """Bars with start <= ts < end for `tickers`."""
        lo = int(np.searchsorted(self._ts_ns, start.value, side="left"))
        hi = int(np.searchsorted(self._ts_ns, end.value, side="left"))
        part = self._bars.iloc[lo:hi]
        return part[part["ticker"].isin(tickers)].reset_index(drop=True)

    def latest_bars(
        self, tickers: list[str], now: pd.Timestamp, since: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        session = current_session(now)
        if session is None:
            return empty_bars()
        start = pd.Timestamp(xnys().session_open(session))
        if since is not None:
            start = max(start, since + pd.Timedelta(microseconds=1))
        return self._slice(start, now.floor("min"), tickers)

    def history(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        out = self._slice(start, end, tickers)
        return out.sort_values(["ticker", "ts"]).reset_index(drop=True)

    def corporate_actions(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        return pd.DataFrame(columns=ACTION_COLUMNS)
