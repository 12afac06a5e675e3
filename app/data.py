"""The workbench's data layer: the app's database reads, cached once for all sessions.

Pages call these functions and hold no SQL. Results are cached with `st.cache_data`, bounded by
`max_entries` and `ttl`, and keyed on what makes them change (the newest bar, the serving model
version), so a warm rerun of a page costs one cheap stamp query. A database failure surfaces as
`DataUnavailable` carrying a message a user can act on, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pandas as pd
import psycopg2
import streamlit as st
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from config.settings import Settings, get_settings
from db import bars as db_bars
from db import context as db_context
from db import replication as db_replication
from db import signals as db_signals
from db.database_manager import ping, route_reads_to_replica
from db.replication import ReplicaState as ReplicaState  # re-exported for the pages
from db.signals import LiveStamp as LiveStamp  # re-exported for the pages

# the app's reads go to DATABASE_READ_URL's replica when one is set (workers never opt in)
route_reads_to_replica()

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

INTERVALS = db_bars.INTERVALS


class DataUnavailable(RuntimeError):
    """The database cannot answer; `str(exc)` is safe to show to a user."""


def cached_data(*, ttl: float, max_entries: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`st.cache_data` with bounds, shared by every session of the server."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        cached: Callable[P, R] = st.cache_data(
            ttl=ttl, max_entries=max_entries, show_spinner=False
        )(fn)
        return cached

    return decorate


def redact(message: str, settings: Settings | None = None) -> str:
    """`message` with every secret of the settings masked (`Settings.redact`)."""
    return (settings or get_settings()).redact(message)


def describe_db_error(exc: BaseException) -> str:
    """A plain, secret-free sentence for a database failure."""
    if isinstance(exc, ProgrammingError) and "does not exist" in str(exc):
        return (
            "The database schema is missing or out of date: run `python -m db.migrate up`. "
            "This page retries by itself."
        )
    first_line = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
    detail = first_line[0][:200] if first_line else type(exc).__name__
    return (
        f"The database is not reachable ({detail}). Showing what is known; "
        "this page retries by itself."
    )


def from_db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call one of `db`'s query functions, with failures turned into `DataUnavailable`."""
    try:
        return fn(*args, **kwargs)
    except (SQLAlchemyError, psycopg2.Error, OSError, RuntimeError) as exc:
        log.warning("query failed: %s", redact(str(exc)).splitlines()[0] if str(exc) else exc)
        raise DataUnavailable(describe_db_error(exc)) from None


def database_ok() -> bool:
    """True when the database answers a trivial query (uncached; used to recover)."""
    try:
        from_db(ping)
    except DataUnavailable:
        return False
    return True


def replica_state() -> ReplicaState | None:
    """The read replica's recovery state and lag (uncached: lag is live); None without
    `DATABASE_READ_URL`."""
    return from_db(db_replication.replica_state)


# --------------------------------------------------------------------------- live page


def live_stamp(version: str | None) -> LiveStamp:
    """The newest bar, the newest signals of `version` and the last adjustment (uncached)."""
    return from_db(db_signals.live_stamp, version)


def _live_frame(version: str | None, tickers: tuple[str, ...]) -> pd.DataFrame:
    frame = from_db(db_signals.live_board, version, tickers)
    frame["change_pct"] = (frame["last"] / frame["prev_close"] - 1.0) * 100.0
    agree = (frame["lstm_label"] == frame["transformer_label"]).astype(object)
    frame["models_agree"] = agree.where(frame["action"].notna(), None)
    frame["spark"] = frame["spark"].map(lambda v: list(v) if isinstance(v, list) else [])
    return frame


@cached_data(ttl=300, max_entries=8)
def live_table(stamp: LiveStamp, version: str | None, tickers: tuple[str, ...]) -> pd.DataFrame:
    """Per ticker: last price, change since the previous session, recent closes, newest signal.

    Cached on `stamp`: every session shares one copy until a bar or a signal is added.
    """
    del stamp  # the cache key
    return _live_frame(version, tickers)


# --------------------------------------------------------------------------- stock detail


@cached_data(ttl=600, max_entries=64)
def bar_extent(
    ticker: str, newest: pd.Timestamp | None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """First and last bar time of `ticker` (None, None without bars); keyed on the newest bar."""
    del newest  # the cache key
    return from_db(db_bars.bar_extent, ticker)


@cached_data(ttl=600, max_entries=32)
def bars(
    ticker: str, interval: str, start: pd.Timestamp, end: pd.Timestamp, stamp: LiveStamp
) -> pd.DataFrame:
    """Adjusted OHLCV bars of `ticker` at `interval` (1m/5m/1h/1d), aggregated in the database
    (keyed on the live stamp: a new bar or an applied corporate action rebuilds it)."""
    del stamp  # the cache key
    return from_db(db_bars.interval_bars, ticker, interval, start, end)


@cached_data(ttl=600, max_entries=32)
def signal_markers(
    ticker: str, start: pd.Timestamp, end: pd.Timestamp, version: str | None, stamp: LiveStamp
) -> pd.DataFrame:
    """BUY and SELL signals of `ticker` in [start, end) (of `version`, or of every version),
    at their bar's adjusted close."""
    del stamp  # the cache key
    return from_db(db_signals.signal_markers, ticker, start, end, version)


@cached_data(ttl=120, max_entries=32)
def news(ticker: str, start: pd.Timestamp, end: pd.Timestamp, limit: int = 200) -> pd.DataFrame:
    """Headlines about `ticker` published in [start, end), newest last."""
    return from_db(db_context.headlines, ticker, start, end, limit)


@cached_data(ttl=600, max_entries=8)
def macro_context(as_of: pd.Timestamp) -> pd.DataFrame:
    """Per macro series, the latest value known at `as_of` and the one before it."""
    return from_db(db_context.macro_snapshot, as_of)


@cached_data(ttl=600, max_entries=64)
def latest_signal(ticker: str, version: str | None, stamp: LiveStamp) -> dict[str, Any] | None:
    """The newest signal of `ticker` from `version`, as a dict, or None."""
    del stamp  # the cache key
    return from_db(db_signals.latest_signal, ticker, version)


@cached_data(ttl=60, max_entries=1)
def sentiment_model() -> str | None:
    """The sentiment model behind the newest stored article (what the news worker runs now)."""
    return from_db(db_context.latest_sentiment_model)
