"""What a price chart reads: its bars (with the cap on 1-minute bars one chart reads), the
markers where BUY and SELL runs start with how each turned out, and the headlines on its
timeline. Reads are cached (`app.data.cached_data`) and keyed on the newest bar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.data import cached_data, from_db
from config.market_calendar import xnys
from core.timeutil import utc
from db import bars as db_bars
from db import context as db_context
from db import signals as db_signals
from db.signals import LiveStamp
from ml.features.labels import DOWN, UP

INTERVALS = db_bars.INTERVALS


@cached_data(ttl=600, max_entries=64)
def bar_extent(
    ticker: str, newest: pd.Timestamp | None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """First and last bar time of `ticker` (None, None without bars); keyed on the newest bar."""
    del newest  # the cache key
    return from_db(db_bars.bar_extent, ticker)


MAX_MINUTE_BARS = 20 * 390  # 1-minute bars a chart reads at most: twenty full sessions


@dataclass(frozen=True)
class ChartRange:
    """The range a chart reads (`chart_range`)."""

    start: pd.Timestamp  # later than asked when `capped`
    end: pd.Timestamp
    minute_bars: int  # the 1-minute bars the asked range can hold (its session minutes)
    capped: bool


def chart_range(
    interval: str, start: pd.Timestamp, end: pd.Timestamp, newest: pd.Timestamp | None = None
) -> ChartRange:
    """[start, end) as a chart reads it: at 1m, at most `MAX_MINUTE_BARS` bars, the last ones
    of the range (counted in XNYS session minutes, the only minutes bars are stored for, up
    to `newest`, the newest stored bar, when the range ends after it); other intervals as
    asked."""
    start, end = utc(start), utc(end)
    if interval != "1m":
        return ChartRange(start, end, 0, False)
    calendar = xnys()
    last = end if newest is None else min(end, utc(newest) + pd.Timedelta(minutes=1))
    lo, hi = max(start, calendar.first_minute), min(last, calendar.last_minute)
    minutes = calendar.minutes_in_range(lo, hi) if lo <= hi else pd.DatetimeIndex([])
    minutes = minutes[(minutes >= start) & (minutes < last)]
    if len(minutes) <= MAX_MINUTE_BARS:
        return ChartRange(start, end, len(minutes), False)
    return ChartRange(minutes[-MAX_MINUTE_BARS], end, len(minutes), True)


@cached_data(ttl=600, max_entries=32)
def bars(
    ticker: str, interval: str, start: pd.Timestamp, end: pd.Timestamp, stamp: LiveStamp
) -> pd.DataFrame:
    """Adjusted OHLCV bars of `ticker` at `interval` (1m/5m/1h/1d), aggregated in the database
    (keyed on the live stamp: a new bar or an applied corporate action rebuilds it); at 1m, no
    more than `MAX_MINUTE_BARS`, the last ones of the range (`chart_range`)."""
    start = chart_range(interval, start, end, stamp.bars_ts).start
    frame = from_db(db_bars.interval_bars, ticker, interval, start, end)
    return frame.tail(MAX_MINUTE_BARS) if interval == "1m" else frame


@cached_data(ttl=600, max_entries=32)
def signal_markers(
    ticker: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    version: str | None,
    label_key: str,
    stamp: LiveStamp,
) -> pd.DataFrame:
    """The BUY and SELL signals of `ticker` in [start, end) that start a run of their action
    (of `version`, or of each version), at their bar's adjusted close, each with its realised
    outcome under `label_key` and its `verdict` (`marker_verdicts`)."""
    del stamp  # the cache key
    frame = from_db(db_signals.signal_markers, ticker, start, end, version, label_key)
    frame["verdict"] = marker_verdicts(frame)
    return frame


def marker_verdicts(frame: pd.DataFrame) -> pd.Series:
    """How each BUY/SELL signal turned out, by its bar's realised triple-barrier outcome:
    "right" (BUY then UP, SELL then DOWN), "wrong" (the other way, or NEUTRAL: no clear move,
    as the live scoreboard's hit rate counts it), "pending" (its horizon has not passed yet),
    "no outcome" (its horizon crossed the session's close, so there is none to realise)."""
    wanted = frame["action"].map({"BUY": UP, "SELL": DOWN})
    outcome = frame["outcome"].astype("Int64")
    known = outcome.notna()
    verdict = np.where(
        ~frame["realised"].astype(bool),
        "pending",
        np.where(~known, "no outcome", np.where(outcome.fillna(-1) == wanted, "right", "wrong")),
    )
    return pd.Series(verdict, index=frame.index, dtype=object)


@cached_data(ttl=120, max_entries=32)
def news(ticker: str, start: pd.Timestamp, end: pd.Timestamp, limit: int = 200) -> pd.DataFrame:
    """Headlines about `ticker` published in [start, end), newest last."""
    return from_db(db_context.headlines, ticker, start, end, limit)
