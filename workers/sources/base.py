"""The market-data source interface, the exchange calendar and the shared bar frame shape.

Every source returns bars as a DataFrame with columns `BAR_COLUMNS`: ticker, ts (UTC, the
minute's open), open, high, low, close, volume. A bar is final only once its minute has closed;
`MarketDataSource.latest_bars` returns final bars only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date

import pandas as pd

from config.market_calendar import (  # noqa: F401 - re-exported for sources
    is_trading_minute,
    session_minutes,
    sessions_between,
    xnys,
)

BAR_COLUMNS = ["ticker", "ts", "open", "high", "low", "close", "volume"]
ACTION_COLUMNS = ["ticker", "ex_date", "action_type", "value"]


class SourceError(RuntimeError):
    """A source failed in a way worth retrying (network, server error)."""


class RateLimitError(SourceError):
    """The source refused the request because of its rate limit; back off with jitter."""


@dataclass(frozen=True)
class SourceLimits:
    """What a source allows: tickers per request, history reach, request spacing."""

    max_tickers_per_request: int
    history_days: int | None  # how far back 1-minute history reaches (None: unlimited)
    max_days_per_request: int | None
    min_request_interval_s: float


def empty_bars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": pd.Series(dtype="object"),
            "ts": pd.Series(dtype="datetime64[ns, UTC]"),
            **{c: pd.Series(dtype="float64") for c in BAR_COLUMNS[2:]},
        }
    )


class MarketDataSource(ABC):
    """One kind of market data. Concrete sources declare `limits` and override their quirks."""

    name: str = "base"
    limits: SourceLimits = SourceLimits(500, None, None, 0.0)

    @abstractmethod
    def latest_bars(self, tickers: list[str], now: pd.Timestamp) -> pd.DataFrame:
        """Final bars (minute closed before `now`) of the current session so far."""

    @abstractmethod
    def history(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Final bars with start <= ts < end."""

    @abstractmethod
    def corporate_actions(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        """Splits (value = ratio, e.g. 4 for 4-for-1) and dividends (value = cash per share)."""

    def now(self) -> pd.Timestamp:
        """The source's clock (wall clock for live sources; simulated/replay clocks differ)."""
        return pd.Timestamp.now(tz="UTC")


def final_only(bars: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Drop bars whose minute has not closed yet (ts + 1 min > now): they are still forming."""
    if bars.empty:
        return bars
    return bars[bars["ts"] + pd.Timedelta(minutes=1) <= now].reset_index(drop=True)
