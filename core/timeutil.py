"""Time zones and UTC helpers: every timestamp StockPulse stores or compares is UTC."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd

NEW_YORK = "America/New_York"


def utc(value: Any) -> pd.Timestamp:
    """`value` (a string, datetime or Timestamp) as a UTC Timestamp; naive means UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_series(values: Any) -> pd.Series:
    """Timestamps (any form; naive means UTC) as a UTC, nanosecond datetime Series."""
    return pd.Series(pd.to_datetime(values, utc=True)).dt.as_unit("ns")


def utc_now() -> pd.Timestamp:
    """The wall clock, UTC (the market clock is `config.market_clock`)."""
    return pd.Timestamp.now(tz="UTC")


def iso(value: Any) -> str:
    """A timestamp as ISO 8601 text in UTC."""
    return str(utc(value).isoformat())


def new_york_date(value: datetime | pd.Timestamp | None = None) -> date:
    """The calendar date in New York at `value` (default: now): the trading day it belongs to."""
    local = (utc_now() if value is None else utc(value)).tz_convert(NEW_YORK)
    return date(local.year, local.month, local.day)


def ny_midnight(day: date) -> pd.Timestamp:
    """The first instant of a New York calendar date, in UTC (where an ex-date starts)."""
    return pd.Timestamp(day).tz_localize(NEW_YORK).tz_convert("UTC")
