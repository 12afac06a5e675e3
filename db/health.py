"""Reads for the data-health page: bars per ticker in the session, the queue, workers, jobs.

Heartbeat details and job messages are stored redacted (`db.ops`); they are redacted again as
they are read, so a row stored before a secret was set, or by an older version, shows none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import pandas as pd

from config.settings import get_settings
from core.redact import redact_values
from core.timeutil import utc
from db.reads import read_from_db

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


def bars_and_gaps(tickers: Sequence[str], start: Any, end: Any) -> pd.DataFrame:
    """Per ticker: its newest bar, its bars in [start, end), and its gaps by status."""
    frame = read_from_db(
        TICKER_SQL,
        {
            "tickers": list(tickers),
            "open": utc(start),
            "close": utc(end),
            "pending": "pending",
            "failed": "failed",
            "filled": "filled",
        },
    )
    frame["latest_bar"] = pd.to_datetime(frame["latest_bar"], utc=True)
    return frame


class OpsStamp(NamedTuple):
    """What changes when the job and backfill views must be rebuilt (one cheap query)."""

    last_run: int | None
    last_finish: pd.Timestamp | None
    queue_rows: int
    queue_changed: pd.Timestamp | None


def _value(value: Any) -> Any:
    return None if value is None or pd.isna(value) else value


def ops_stamp() -> OpsStamp:
    """The newest job run and its last finish, and the backfill queue's size and last change."""
    row = read_from_db(
        "SELECT (SELECT max(id) FROM job_runs) AS last_run, "
        "(SELECT max(finished_at) FROM job_runs) AS last_finish, "
        "(SELECT count(*) FROM backfill_queue) AS queue_rows, "
        "(SELECT max(updated_at) FROM backfill_queue) AS queue_changed"
    ).iloc[0]
    last_run = _value(row["last_run"])
    return OpsStamp(
        None if last_run is None else int(last_run),
        _value(row["last_finish"]),
        int(row["queue_rows"]),
        _value(row["queue_changed"]),
    )


def heartbeats() -> pd.DataFrame:
    """Every worker's last heartbeat: worker, last_beat, pid, status, details."""
    frame = read_from_db(
        "SELECT worker, last_beat, pid, status, details FROM worker_heartbeats ORDER BY worker"
    )
    frame["last_beat"] = pd.to_datetime(frame["last_beat"], utc=True)
    secrets = get_settings().secret_values()
    frame["details"] = [redact_values(d, secrets) for d in frame["details"]]
    return frame


def job_summary(since: Any) -> pd.DataFrame:
    """The last run of every job with its outcome, and its runs and failures since `since`."""
    frame = read_from_db(
        "SELECT l.job, l.started_at, l.finished_at, l.status, l.message, "
        "coalesce(c.runs, 0) AS runs_recent, coalesce(c.failed, 0) AS failed_recent FROM ("
        " SELECT DISTINCT ON (job) job, started_at, finished_at, status, message"
        " FROM job_runs ORDER BY job, started_at DESC) l "
        "LEFT JOIN (SELECT job, count(*) AS runs, count(*) FILTER (WHERE status = :failed)"
        " AS failed FROM job_runs WHERE started_at >= :since GROUP BY job) c USING (job) "
        "ORDER BY l.job",
        {"failed": "failed", "since": utc(since)},
    )
    started = pd.to_datetime(frame["started_at"], utc=True)
    finished = pd.to_datetime(frame["finished_at"], utc=True)
    frame["duration_s"] = (finished - started).dt.total_seconds()
    secrets = get_settings().secret_values()
    frame["message"] = [redact_values(m, secrets) for m in frame["message"]]
    return frame
