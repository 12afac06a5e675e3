"""The market-data source interface, the exchange calendar and the shared bar frame shape.

Every source returns bars as a DataFrame with columns `BAR_COLUMNS`: ticker, ts (UTC, the
minute's open), open, high, low, close, volume. A bar is final only once its minute has closed;
`MarketDataSource.latest_bars` returns final bars only. Daily bars (`daily_bars`, for the daily
reconciliation) have columns `DAILY_COLUMNS`: ticker, session (the New York session date),
open, high, low, close, volume, raw prices as traded that day.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date

import pandas as pd

from config.market_calendar import (  # noqa: F401 - re-exported for sources
    is_trading_minute,
    regular_session_mask,
    session_minutes,
    sessions_between,
    xnys,
)
from core.timeutil import NEW_YORK
from db.bar_rule import BAR_COLUMNS, PRICE_FIELDS, VALUE_FIELDS, has_key

DAILY_COLUMNS = ["ticker", "session", "open", "high", "low", "close", "volume"]
ACTION_COLUMNS = ["ticker", "ex_date", "action_type", "value"]


class SourceError(RuntimeError):
    """A source failed in a way worth retrying (network, server error)."""


class RateLimitError(SourceError):
    """The source refused the request because of its rate limit; back off with jitter."""


class HistoryOutOfReachError(ValueError):
    """The requested range is older than the source's 1-minute history reaches (not retried)."""


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


def empty_daily() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": pd.Series(dtype="object"),
            "session": pd.Series(dtype="object"),
            **{c: pd.Series(dtype="float64") for c in DAILY_COLUMNS[2:]},
        }
    )


def closed_sessions(start: date, end: date, now: pd.Timestamp) -> list[date]:
    """The XNYS sessions from `start` to `end` (inclusive) whose close has come by `now`: the
    sessions whose daily bar is final."""
    sessions = sessions_between(start, end)
    if sessions.empty:
        return []
    closes = xnys().closes.loc[sessions]
    return [s.date() for s, close in zip(sessions, closes, strict=True) if close <= now]


def daily_from_minutes(bars: pd.DataFrame) -> pd.DataFrame:
    """Minute bars (`BAR_COLUMNS`) resampled to their New York session date: the first open,
    the highest high, the lowest low, the last close and the summed volume, ordered by ticker
    and session (`DAILY_COLUMNS`)."""
    if bars.empty:
        return empty_daily()
    frame = bars.sort_values(["ticker", "ts"], kind="stable")
    session = frame["ts"].dt.tz_convert(NEW_YORK).dt.date
    daily = (
        frame.assign(session=session)
        .groupby(["ticker", "session"], sort=True)
        .agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
        )
        .reset_index()
    )
    return daily.astype(dict.fromkeys(DAILY_COLUMNS[2:], "float64"))[DAILY_COLUMNS]


class MarketDataSource(ABC):
    """One kind of market data. Concrete sources declare `limits` and override their quirks."""

    name: str = "base"
    limits: SourceLimits = SourceLimits(500, None, None, 0.0)
    settle_s: float = 0.0  # real seconds to wait after a minute closes before asking for its bar

    @abstractmethod
    def latest_bars(
        self, tickers: list[str], now: pd.Timestamp, since: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Final bars (minute closed by `now`) of the current session so far.

        `since` is a hint: a source may leave out bars with ts <= since.
        """

    @abstractmethod
    def history(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Final bars with start <= ts < end."""

    @abstractmethod
    def corporate_actions(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        """Splits (value = ratio, e.g. 4 for 4-for-1) and dividends (value = cash per share)."""

    def daily_bars(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        """The source's daily bars (`DAILY_COLUMNS`) of the sessions from `start` to `end`
        (inclusive) that have closed on its clock, raw prices as traded that day (like the
        minute bars it serves, not adjusted for later splits or dividends).

        By default the source's own minute bars resampled (`daily_from_minutes`), so a source
        without daily bars of its own (simulated, replay) serves days consistent with its
        minutes; a source with its own daily bars overrides this.
        """
        sessions = closed_sessions(start, end, self.now())
        if not sessions or not tickers:
            return empty_daily()
        cal = xnys()
        first = pd.Timestamp(cal.session_open(pd.Timestamp(sessions[0])))
        last = pd.Timestamp(cal.session_close(pd.Timestamp(sessions[-1])))
        return daily_from_minutes(self.history(tickers, first, last))

    def now(self) -> pd.Timestamp:
        """The source's clock (wall clock for live sources; simulated/replay clocks differ)."""
        return pd.Timestamp.now(tz="UTC")

    def live_start(self) -> pd.Timestamp:
        """Where the live feed begins: the clock's start for accelerated sources, now for live
        ones. History before it is what `workers.seed_history` seeds."""
        return self.now()

    @property
    def clock_speed(self) -> float:
        """Market seconds per real second of the source's clock (1 for live sources)."""
        return 1.0

    @property
    def skips_closed_hours(self) -> bool:
        """True when the clock jumps over nights and holidays (nothing to idle through)."""
        return False


def final_only(bars: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Drop bars whose minute has not closed yet (ts + 1 min > now): they are still forming."""
    if bars.empty:
        return bars
    return bars[bars["ts"] + pd.Timedelta(minutes=1) <= now].reset_index(drop=True)


def current_session(now: pd.Timestamp) -> pd.Timestamp | None:
    """The session whose bars `latest_bars` serves at `now`, or None outside sessions.

    That is the session of the last closed minute, so at the open of a session the previous
    session's last bar is still served.
    """
    cal = xnys()
    minute = now.floor("min")
    if not cal.is_trading_minute(minute) and not cal.is_trading_minute(
        minute - pd.Timedelta(minutes=1)
    ):
        return None
    return cal.minute_to_session(minute - pd.Timedelta(minutes=1), direction="previous")


def clean_bars(bars: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The bars in the shared shape, for the write path: ts as UTC nanoseconds, prices and
    volume as floats (missing volume as 0), regular-session minutes only
    (`regular_session_mask`: pre- and post-market bars are left out by rule, not counted as
    malformed), rows without a time or a ticker dropped, and rows without any price left out
    (a minute without trades: Yahoo serves those as rows of NaN).

    Bars the bar rule (`db.bar_rule`) refuses for their values are kept: the write path's
    data-quality guard (`workers.bar_store.write_bars`) quarantines them with their reason, so a
    bad print is recorded and retried rather than silently lost. Only the rows the rule refuses
    for want of a key (`has_key`: no ticker or no time) are dropped: they cannot be judged.

    Returns the kept bars and how many rows were dropped for lacking a time or a ticker.
    """
    if bars.empty:
        return empty_bars(), 0
    frame = bars[BAR_COLUMNS].copy()
    ts = frame["ts"]
    if not (isinstance(ts.dtype, pd.DatetimeTZDtype) and str(ts.dtype) == "datetime64[ns, UTC]"):
        frame["ts"] = pd.to_datetime(ts, utc=True).dt.as_unit("ns")
    cols = list(VALUE_FIELDS)
    if not all(pd.api.types.is_float_dtype(frame[c]) for c in cols):
        frame[cols] = frame[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    if frame["volume"].isna().any():
        frame["volume"] = frame["volume"].fillna(0.0)
    ok = has_key(frame)
    dropped = int((~ok).sum())
    ok &= frame[list(PRICE_FIELDS)].notna().any(axis=1).to_numpy()  # no trade
    if dropped:
        frame = frame[ok]
    regular = regular_session_mask(frame["ts"])
    if not regular.all():
        frame = frame[regular]
    return frame.reset_index(drop=True), dropped
