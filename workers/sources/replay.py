"""Replay: recorded 1-minute bars from a CSV or Parquet file, played back at any speed.

The file has the columns ticker, ts, open, high, low, close, volume (ts: the minute's open;
with a timezone, or naive meaning UTC). Like every source, it serves regular-session bars only:
pre- and post-market rows of the file are left out when it is loaded. The replay clock is a
`SessionClock` that starts at the file's first bar and runs `speed` bar-minutes per real second
through session minutes only. Recorded bars carry no corporate-action events, so
`corporate_actions` is always empty; the daily bars (`MarketDataSource.daily_bars`) are the
file's minutes resampled.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from config.market_calendar import xnys
from config.market_clock import SessionClock
from workers.sources.base import (
    ACTION_COLUMNS,
    BAR_COLUMNS,
    MarketDataSource,
    SourceLimits,
    clean_bars,
    current_session,
    empty_bars,
)

log = logging.getLogger(__name__)


class ReplayFileError(ValueError):
    """The replay file is missing, unreadable or lacks bar columns."""


def load_bars_file(path: Path) -> pd.DataFrame:
    """Read a bars file (.csv, .csv.gz or .parquet) into the shared bar shape, sorted by time."""
    path = Path(path)
    if not path.exists():
        raise ReplayFileError(f"replay file {path} does not exist (settings.replay_path)")
    try:
        if path.suffix == ".parquet":
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ReplayFileError(f"cannot read replay file {path}: {exc}") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in BAR_COLUMNS if c not in raw.columns]
    if missing:
        raise ReplayFileError(f"replay file {path} lacks column(s) {missing}; needs {BAR_COLUMNS}")
    ts = pd.to_datetime(raw["ts"], utc=False)
    raw["ts"] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    raw["ticker"] = raw["ticker"].astype(str).str.upper()
    bars, dropped = clean_bars(raw)
    if dropped:
        log.warning("replay file %s: dropped %d unusable row(s)", path, dropped)
    outside = len(raw) - dropped - len(bars)
    if outside:
        log.info(
            "replay file %s: %d pre-/post-market bar(s) left out (regular-session bars only)",
            path,
            outside,
        )
    if bars.empty:
        raise ReplayFileError(f"replay file {path} holds no usable bars")
    bars = bars.drop_duplicates(["ticker", "ts"], keep="last")
    return bars.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)


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
