"""The persistent backfill queue: gaps in the 1-minute history and what became of them.

A gap is a run of session minutes of one ticker with no bar although later bars arrived (or the
session closed). It is `pending` until the backfill asks the source: `filled` when the source
had bars, `empty` when it had none (a minute without trades; seeding records those it sees
directly), `failed` after too many errors or beyond the source's history reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Connection, text

from config.settings import get_settings
from core.redact import redact_values
from core.timeutil import utc_series
from db.connections import connect
from db.reads import read_from_db

FAR_FUTURE = pd.Timestamp("2262-01-01", tz="UTC")
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def queue_gaps(conn: Connection, gaps: pd.DataFrame) -> None:
    """Add gap rows (ticker, gap_start, gap_end), pending unless they carry a `status`, in
    `conn`'s transaction; a gap already queued keeps its status. One statement."""
    status = gaps["status"] if "status" in gaps.columns else pd.Series("pending", gaps.index)
    conn.execute(
        text(
            "INSERT INTO backfill_queue (ticker, gap_start, gap_end, status, attempts) "
            "SELECT u.t, u.s, u.e, u.status, CASE WHEN u.status = :pending THEN 0 ELSE 1 END "
            "FROM unnest(CAST(:t AS text[]), CAST(:s AS timestamptz[]), "
            "CAST(:e AS timestamptz[]), CAST(:status AS text[])) AS u(t, s, e, status) "
            "ON CONFLICT (ticker, gap_start) DO NOTHING"
        ),
        {
            "t": [str(t) for t in gaps["ticker"]],
            "s": [pd.Timestamp(x).to_pydatetime() for x in gaps["gap_start"]],
            "e": [pd.Timestamp(x).to_pydatetime() for x in gaps["gap_end"]],
            "status": [str(x) for x in status],
            "pending": "pending",
        },
    )


def pending_gaps(
    before: pd.Timestamp | None = None,
    start: pd.Timestamp | None = None,
    tickers: Sequence[str] | None = None,
    limit: int = 20_000,
) -> pd.DataFrame:
    """Gaps still to fill, oldest first (ending before `before`, starting at or after `start`,
    of `tickers`): ticker, gap_start, gap_end, attempts."""
    gaps = read_from_db(
        "SELECT ticker, gap_start, gap_end, attempts FROM backfill_queue "
        "WHERE status = :pending AND gap_end < :before AND gap_start >= :start "
        "AND (CAST(:all_tickers AS boolean) OR ticker = ANY(CAST(:tickers AS text[]))) "
        "ORDER BY gap_start, ticker LIMIT :limit",
        {
            "pending": "pending",
            "before": FAR_FUTURE if before is None else before,
            "start": EPOCH if start is None else start,
            "all_tickers": tickers is None,
            "tickers": list(tickers or []),
            "limit": limit,
        },
    )
    gaps["gap_start"], gaps["gap_end"] = utc_series(gaps["gap_start"]), utc_series(gaps["gap_end"])
    return gaps


def mark_gaps(gaps: pd.DataFrame, statuses: Sequence[str], error: str | None = None) -> None:
    """Record one attempt for each gap with its new status (one statement); `error` is stored
    redacted (`Settings.redact`), as the data-health page shows it."""
    if gaps.empty:
        return
    if error is not None:
        error = get_settings().redact(error)
    with connect() as conn:
        conn.execute(
            text(
                "UPDATE backfill_queue q SET status = u.status, attempts = q.attempts + 1, "
                "last_error = :error, updated_at = now() "
                "FROM unnest(CAST(:tickers AS text[]), CAST(:starts AS timestamptz[]), "
                "CAST(:statuses AS text[])) AS u(ticker, gap_start, status) "
                "WHERE q.ticker = u.ticker AND q.gap_start = u.gap_start"
            ),
            {
                "tickers": [str(t) for t in gaps["ticker"]],
                "starts": [pd.Timestamp(t).to_pydatetime() for t in gaps["gap_start"]],
                "statuses": list(statuses),
                "error": error,
            },
        )


def unresolved_gaps(limit: int = 200) -> pd.DataFrame:
    """Gaps not filled yet (pending and failed), newest first, for the data-health page (their
    errors redacted again: a row may predate a secret)."""
    gaps = read_from_db(
        "SELECT ticker, gap_start, gap_end, status, attempts, last_error, updated_at "
        "FROM backfill_queue WHERE status IN (:pending, :failed) "
        "ORDER BY gap_start DESC LIMIT :n",
        {"pending": "pending", "failed": "failed", "n": limit},
    )
    secrets = get_settings().secret_values()
    gaps["last_error"] = [redact_values(e, secrets) for e in gaps["last_error"]]
    return gaps
