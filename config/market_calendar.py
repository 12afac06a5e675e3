"""The exchange calendar (XNYS from `exchange_calendars`): sessions, holidays, early closes."""

from __future__ import annotations

import functools
from datetime import date

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from core.timeutil import new_york_date


@functools.lru_cache(maxsize=1)
def xnys() -> xcals.ExchangeCalendar:
    """The NYSE calendar from 2018 to 2031 or two years ahead, whichever is later."""
    ahead = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=730)).normalize().tz_localize(None)
    end = max(ahead, pd.Timestamp("2031-01-31"))
    return xcals.get_calendar("XNYS", start="2018-01-01", end=end)


def sessions_between(
    start: date | str | pd.Timestamp, end: date | str | pd.Timestamp
) -> pd.DatetimeIndex:
    """XNYS sessions from `start` to `end` inclusive (naive dates)."""
    return xnys().sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))


def session_minutes(session: pd.Timestamp) -> pd.DatetimeIndex:
    """The UTC open times of every 1-minute bar of a session (early closes included)."""
    return xnys().session_minutes(session)


def is_trading_minute(ts: pd.Timestamp) -> bool:
    return bool(xnys().is_trading_minute(ts.floor("min")))


def is_session_day(day: date | pd.Timestamp | None = None) -> bool:
    """True when `day` (default: today in New York) is an XNYS trading session."""
    if day is None:
        day = new_york_date()
    return bool(xnys().is_session(pd.Timestamp(day)))


def regular_session_mask(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """True where a bar time (UTC, the minute's open) is a minute of an XNYS regular session.

    The one rule for every source and write path: only regular-session bars are stored (no
    pre- or post-market minutes); features, gap detection and labels assume it.
    """
    stamps = pd.DatetimeIndex(ts)
    if stamps.empty:
        return np.zeros(0, dtype=bool)
    stamps = stamps.tz_convert("UTC") if stamps.tz is not None else stamps.tz_localize("UTC")
    stamps = stamps.as_unit("ns")
    minutes = xnys().minutes_in_range(stamps.min().floor("min"), stamps.max().ceil("min"))
    return np.asarray(stamps.isin(minutes.as_unit("ns")))
