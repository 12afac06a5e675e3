"""Reads for the data-health page: freshness and gaps per ticker, backfill, heartbeats, jobs."""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd

from app.data import cached_data, from_db, query
from config.market_calendar import session_minutes, xnys
from db.database_manager import database_flavour

TICKER_SQL = """
SELECT t.ticker, b.ts AS latest_bar, coalesce(s.bars, 0) AS bars_in_session,
       coalesce(q.pending, 0) AS gaps_pending, coalesce(q.failed, 0) AS gaps_failed,
       coalesce(q.filled, 0) AS gaps_filled
FROM unnest(CAST(:tickers AS text[])) WITH ORDINALITY AS t(ticker, pos)
LEFT JOIN LATERAL (
    SELECT ts FROM bars_1m WHERE ticker = t.ticker ORDER BY ts DESC LIMIT 1) b ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS bars FROM bars_1m
    WHERE ticker = t.ticker AND ts >= :open AND ts < :close) s ON true
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE status = :pending) AS pending,
           count(*) FILTER (WHERE status = :failed) AS failed,
           count(*) FILTER (WHERE status = :filled) AS filled
    FROM backfill_queue WHERE ticker = t.ticker) q ON true
ORDER BY t.pos
"""


class OpsStamp(NamedTuple):
    """What changes when the job and backfill views must be rebuilt (one cheap query)."""

    last_run: int | None
    last_finish: pd.Timestamp | None
    queue_rows: int
    queue_changed: pd.Timestamp | None


def _stamp_value(value: Any) -> Any:
    return None if value is None or pd.isna(value) else value


def ops_stamp() -> OpsStamp:
    """The newest job run and its last finish, and the backfill queue's size and last change."""
    row = query(
        "SELECT (SELECT max(id) FROM job_runs) AS last_run, "
        "(SELECT max(finished_at) FROM job_runs) AS last_finish, "
        "(SELECT count(*) FROM backfill_queue) AS queue_rows, "
        "(SELECT max(updated_at) FROM backfill_queue) AS queue_changed"
    ).iloc[0]
    last_run = _stamp_value(row["last_run"])
    return OpsStamp(
        None if last_run is None else int(last_run),
        _stamp_value(row["last_finish"]),
        int(row["queue_rows"]),
        _stamp_value(row["queue_changed"]),
    )


def latest_session(now: pd.Timestamp) -> tuple[pd.Timestamp, pd.DatetimeIndex]:
    """The session that is open at `now`, or the last one before it, and its minutes so far."""
    session = xnys().minute_to_session(now.floor("min"), direction="previous")
    minutes = session_minutes(session)
    return session, minutes[minutes < now]


@cached_data(ttl=600, max_entries=8)
def ticker_health(
    tickers: tuple[str, ...], now: pd.Timestamp, stamp: OpsStamp, newest_bar: pd.Timestamp | None
) -> pd.DataFrame:
    """Per ticker: latest bar, its age, bars and missing minutes in the session, gap counts.

    `now` is the market clock's minute; the cache is keyed on it, on `stamp` (the gap counts)
    and on the newest stored bar."""
    del stamp, newest_bar  # cache keys
    session, minutes = latest_session(now)
    if len(minutes):
        start, end = minutes[0], minutes[-1] + pd.Timedelta(minutes=1)
    else:
        start = end = pd.Timestamp(session).tz_localize("UTC")
    frame = query(
        TICKER_SQL,
        {
            "tickers": list(tickers),
            "open": start,
            "close": end,
            "pending": "pending",
            "failed": "failed",
            "filled": "filled",
        },
    )
    frame["latest_bar"] = pd.to_datetime(frame["latest_bar"], utc=True)
    frame["age_min"] = (now - frame["latest_bar"]).dt.total_seconds() / 60.0
    frame["missing_in_session"] = (len(minutes) - frame["bars_in_session"]).clip(lower=0)
    frame.attrs["session"] = str(pd.Timestamp(session).date())
    frame.attrs["expected"] = len(minutes)
    return frame


@cached_data(ttl=600, max_entries=4)
def backfill_queue(stamp: OpsStamp, limit: int = 200) -> pd.DataFrame:
    """Backfill entries not filled yet (pending and failed), newest first (keyed on `stamp`)."""
    del stamp  # the cache key
    return query(
        "SELECT ticker, gap_start, gap_end, status, attempts, last_error, updated_at "
        "FROM backfill_queue WHERE status IN (:pending, :failed) "
        "ORDER BY gap_start DESC LIMIT :n",
        {"pending": "pending", "failed": "failed", "n": limit},
    )


@cached_data(ttl=10, max_entries=4)
def heartbeats(now: pd.Timestamp) -> pd.DataFrame:
    """Every worker's last heartbeat with its age in seconds."""
    frame = query(
        "SELECT worker, last_beat, pid, status, details FROM worker_heartbeats ORDER BY worker"
    )
    frame["last_beat"] = pd.to_datetime(frame["last_beat"], utc=True)
    frame["age_s"] = (now - frame["last_beat"]).dt.total_seconds()
    frame["details"] = frame["details"].map(_short_details)
    return frame


def _short_details(details: object) -> str:
    if isinstance(details, dict):
        return ", ".join(f"{k}={v}" for k, v in list(details.items())[:6])
    return "" if details is None else str(details)[:120]


@cached_data(ttl=600, max_entries=4)
def job_runs(stamp: OpsStamp, since: pd.Timestamp) -> pd.DataFrame:
    """The last run of every job, with its outcome and the runs and failures since `since`
    (keyed on `stamp`)."""
    del stamp  # the cache key
    frame = query(
        "SELECT l.job, l.started_at, l.finished_at, l.status, l.message, "
        "coalesce(c.runs, 0) AS runs_recent, coalesce(c.failed, 0) AS failed_recent FROM ("
        " SELECT DISTINCT ON (job) job, started_at, finished_at, status, message"
        " FROM job_runs ORDER BY job, started_at DESC) l "
        "LEFT JOIN (SELECT job, count(*) AS runs, count(*) FILTER (WHERE status = :failed)"
        " AS failed FROM job_runs WHERE started_at >= :since GROUP BY job) c USING (job) "
        "ORDER BY l.job",
        {"failed": "failed", "since": since},
    )
    started = pd.to_datetime(frame["started_at"], utc=True)
    finished = pd.to_datetime(frame["finished_at"], utc=True)
    frame["duration_s"] = (finished - started).dt.total_seconds()
    return frame


@cached_data(ttl=600, max_entries=1)
def flavour() -> str:
    """The serving database: PostgreSQL's version and TimescaleDB's, or that it has none."""
    return str(from_db(database_flavour))
