"""The workbench's data layer: the app's database reads, cached once for all sessions.

Pages call these functions and hold no SQL. Results are cached with `st.cache_data`, bounded by
`max_entries` and `ttl`, and keyed on what makes them change (the newest bar, the serving model
version), so a warm rerun of a page costs one cheap stamp query. A database failure surfaces as
`DataUnavailable` carrying a message a user can act on, never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, ParamSpec, TypeVar

import pandas as pd
import psycopg2
import streamlit as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from config.settings import Settings, get_settings
from db.database_manager import read_from_db

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# The app_rerun_live benchmark turns this off to time the same page without caching.
CACHE_ENABLED = True
UTC_ORIGIN = "2000-01-03T00:00:00+00:00"
INTERVALS = {"1m": "1 minute", "5m": "5 minutes", "1h": "1 hour", "1d": "1 day"}
AGGREGATE_VIEWS = {"5m": "bars_5m", "1h": "bars_1h", "1d": "bars_1d"}
SPARK_WINDOW = "90 minutes"


class DataUnavailable(RuntimeError):
    """The database cannot answer; `str(exc)` is safe to show to a user."""


def cached_data(*, ttl: float, max_entries: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`st.cache_data` with bounds, switchable off by `CACHE_ENABLED` (benchmarks)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        cached = st.cache_data(ttl=ttl, max_entries=max_entries, show_spinner=False)(fn)

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return cached(*args, **kwargs) if CACHE_ENABLED else fn(*args, **kwargs)

        call.clear = cached.clear  # type: ignore[attr-defined]
        return call

    return decorate


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings (to be masked in any message shown)."""
    values = [settings.analyst_password.get_secret_value()]
    for secret in (settings.news_api_key, settings.fred_api_key):
        if secret is not None:
            values.append(secret.get_secret_value())
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        values.append(url)
        try:
            password = make_url(url).password
        except Exception:  # an unparsable URL is masked whole above
            password = None
        if password:
            values.append(str(password))
    return [v for v in values if v]


def redact(message: str, settings: Settings | None = None) -> str:
    """`message` with every secret of the settings replaced by asterisks."""
    for secret in sorted(secrets_of(settings or get_settings()), key=len, reverse=True):
        message = message.replace(secret, "**********")
    return message


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


def query(sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """`read_from_db`, with failures turned into `DataUnavailable`."""
    try:
        return read_from_db(sql, params)
    except (SQLAlchemyError, psycopg2.Error, OSError, RuntimeError) as exc:
        log.warning("query failed: %s", redact(str(exc)).splitlines()[0] if str(exc) else exc)
        raise DataUnavailable(describe_db_error(exc)) from None


def database_ok() -> bool:
    """True when the database answers a trivial query (uncached; used to recover)."""
    try:
        query("SELECT 1 AS ok")
    except DataUnavailable:
        return False
    return True


# --------------------------------------------------------------------------- live page


class LiveStamp(NamedTuple):
    """What changes when the live table must be rebuilt."""

    bars_ts: pd.Timestamp | None
    signal_ts: pd.Timestamp | None
    signal_rows: int


def _ts(value: Any) -> pd.Timestamp | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value)


def live_stamp(version: str | None) -> LiveStamp:
    """The newest bar and the newest signals of `version` (two index lookups, uncached)."""
    frame = query(
        "WITH m AS (SELECT max(bar_ts) AS bar_ts FROM signals WHERE model_version = :v) "
        "SELECT (SELECT max(ts) FROM bars_1m) AS bars_ts, m.bar_ts AS signal_ts, "
        "(SELECT count(*) FROM signals s WHERE s.bar_ts = m.bar_ts AND s.model_version = :v) "
        "AS signal_rows FROM m",
        {"v": version or ""},
    )
    row = frame.iloc[0]
    return LiveStamp(_ts(row["bars_ts"]), _ts(row["signal_ts"]), int(row["signal_rows"] or 0))


LIVE_SQL = """
SELECT t.ticker, b.ts AS bar_ts, b.close AS last, p.close AS prev_close, h.closes AS spark,
       s.bar_ts AS signal_ts, s.action, s.confidence, s.reason,
       s.lstm_label, s.lstm_p_down, s.lstm_p_neutral, s.lstm_p_up,
       s.transformer_label, s.transformer_p_down, s.transformer_p_neutral, s.transformer_p_up
FROM unnest(CAST(:tickers AS text[])) WITH ORDINALITY AS t(ticker, pos)
LEFT JOIN LATERAL (
    SELECT ts, close FROM bars_1m WHERE ticker = t.ticker ORDER BY ts DESC LIMIT 1) b ON true
LEFT JOIN LATERAL (
    SELECT close FROM bars_1m
    WHERE ticker = t.ticker
      AND ts < date_bin(CAST(:day AS interval), b.ts, CAST(:origin AS timestamptz))
    ORDER BY ts DESC LIMIT 1) p ON true
LEFT JOIN LATERAL (
    SELECT array_agg(close ORDER BY ts) AS closes FROM bars_1m
    WHERE ticker = t.ticker AND ts > b.ts - CAST(:spark AS interval)) h ON true
LEFT JOIN LATERAL (
    SELECT * FROM signals WHERE ticker = t.ticker AND model_version = :v
    ORDER BY bar_ts DESC LIMIT 1) s ON true
ORDER BY t.pos
"""


def _live_frame(version: str | None, tickers: tuple[str, ...]) -> pd.DataFrame:
    frame = query(
        LIVE_SQL,
        {
            "tickers": list(tickers),
            "v": version or "",
            "day": "1 day",
            "origin": UTC_ORIGIN,
            "spark": SPARK_WINDOW,
        },
    )
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


@st.cache_data(ttl=600, max_entries=2, show_spinner=False)
def timescale_views() -> bool:
    """True when TimescaleDB and its continuous aggregates bars_5m/1h/1d exist."""
    frame = query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = :ext) AS ext, "
        "to_regclass(:view) IS NOT NULL AS view",
        {"ext": "timescaledb", "view": "bars_1d"},
    )
    return bool(frame.iloc[0]["ext"]) and bool(frame.iloc[0]["view"])


@cached_data(ttl=30, max_entries=64)
def bar_extent(ticker: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """First and last bar time of `ticker` (None, None without bars)."""
    frame = query(
        "SELECT (SELECT min(ts) FROM bars_1m WHERE ticker = :t) AS first, "
        "(SELECT max(ts) FROM bars_1m WHERE ticker = :t) AS last",
        {"t": ticker},
    )
    return _ts(frame.iloc[0]["first"]), _ts(frame.iloc[0]["last"])


def _bars_sql(interval: str) -> str:
    if interval == "1m":
        return (
            "SELECT ts, open, high, low, close, volume FROM bars_1m "
            "WHERE ticker = :t AND ts >= :start AND ts < :end ORDER BY ts"
        )
    if timescale_views():
        view = AGGREGATE_VIEWS[interval]  # a fixed name, never user input
        return (
            f"SELECT ts, open, high, low, close, volume FROM {view} "
            "WHERE ticker = :t AND ts >= :start AND ts < :end ORDER BY ts"
        )
    return (
        "SELECT date_bin(CAST(:width AS interval), ts, CAST(:origin AS timestamptz)) AS ts, "
        "(array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low, "
        "(array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume) AS volume "
        "FROM bars_1m WHERE ticker = :t AND ts >= :start AND ts < :end GROUP BY 1 ORDER BY 1"
    )


@cached_data(ttl=60, max_entries=32)
def bars(ticker: str, interval: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """OHLCV bars of `ticker` at `interval` (1m/5m/1h/1d), aggregated in the database."""
    if interval not in INTERVALS:
        raise ValueError(f"interval {interval!r} is not one of {list(INTERVALS)}")
    params = {"t": ticker, "start": start, "end": end}
    if interval != "1m":
        params |= {"width": INTERVALS[interval], "origin": UTC_ORIGIN}
    frame = query(_bars_sql(interval), params)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


@cached_data(ttl=60, max_entries=32)
def signal_markers(
    ticker: str, start: pd.Timestamp, end: pd.Timestamp, version: str | None
) -> pd.DataFrame:
    """BUY and SELL signals of `ticker` in [start, end) (of `version`, or of every version)."""
    return query(
        "SELECT bar_ts, action, confidence, close, model_version, reason FROM signals "
        "WHERE ticker = :t AND bar_ts >= :start AND bar_ts < :end AND action <> :hold "
        "AND (CAST(:v AS text) IS NULL OR model_version = :v) ORDER BY bar_ts",
        {"t": ticker, "start": start, "end": end, "hold": "HOLD", "v": version},
    )


@cached_data(ttl=120, max_entries=32)
def news(ticker: str, start: pd.Timestamp, end: pd.Timestamp, limit: int = 200) -> pd.DataFrame:
    """Headlines about `ticker` published in [start, end), newest last."""
    return query(
        "SELECT published_at, title, source, sentiment, url FROM news_articles "
        "WHERE ticker = :t AND published_at >= :start AND published_at < :end "
        "ORDER BY published_at DESC LIMIT :n",
        {"t": ticker, "start": start, "end": end, "n": limit},
    ).iloc[::-1]


@cached_data(ttl=600, max_entries=8)
def macro_context(as_of: pd.Timestamp) -> pd.DataFrame:
    """Per macro series, the latest value known at `as_of` and the one before it."""
    frame = query(
        "SELECT series_id, obs_date, value, realtime_start FROM ("
        " SELECT DISTINCT ON (series_id, obs_date) series_id, obs_date, value, realtime_start"
        " FROM macro_observations WHERE realtime_start <= :as_of"
        " ORDER BY series_id, obs_date DESC, realtime_start DESC) v "
        "ORDER BY series_id, obs_date DESC",
        {"as_of": as_of},
    )
    if frame.empty:
        return pd.DataFrame(columns=["series_id", "obs_date", "value", "previous", "released"])
    frame["previous"] = frame.groupby("series_id")["value"].shift(-1)
    latest = frame.groupby("series_id", sort=True).head(1)
    return latest.rename(columns={"realtime_start": "released"}).reset_index(drop=True)


@cached_data(ttl=5, max_entries=64)
def latest_signal(ticker: str, version: str | None) -> dict[str, Any] | None:
    """The newest signal of `ticker` from `version`, as a dict, or None."""
    frame = query(
        "SELECT bar_ts, action, confidence, reason, lstm_label, transformer_label, close "
        "FROM signals WHERE ticker = :t AND model_version = :v ORDER BY bar_ts DESC LIMIT 1",
        {"t": ticker, "v": version or ""},
    )
    return None if frame.empty else dict(frame.iloc[0])
