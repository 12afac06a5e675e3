"""Writing bars: on the adjusted scale of already-applied corporate actions, with their gaps.

Every writer of `bars_1m` (the price ingestor, the backfill, history seeding) goes through
`write_bars`, which stores regular-session bars only (the one rule of every source and write
path; see `config.market_calendar.regular_session_mask`). In one transaction it takes the
bar-writers' advisory lock in shared mode (the corporate-action handler takes it exclusively
while it rescales history), reads the factors
of the applied actions, puts bars from before each ex-date on the adjusted scale, upserts them
and queues the gaps found with them. So a bar that arrives late for a date before an applied
split or dividend ends on the same scale as its neighbours, and a restart never loses a gap.
"""

from __future__ import annotations

import logging
from datetime import date

import pandas as pd
import psycopg2
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from config.market_calendar import regular_session_mask
from db.database_manager import connect, read_from_db, write_to_db
from workers.sources.base import BAR_COLUMNS

log = logging.getLogger(__name__)

BARS_LOCK_KEY = 7_301_301  # pg advisory lock: bar writers (shared) vs adjustment (exclusive)
DB_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, psycopg2.Error)
EXCHANGE_TZ = "America/New_York"
PRICES = ["open", "high", "low", "close"]


def ex_date_start(ex_date: date) -> pd.Timestamp:
    """The first instant of the ex-date in New York, in UTC: bars before it get adjusted."""
    return pd.Timestamp(ex_date).tz_localize(EXCHANGE_TZ).tz_convert("UTC")


def lock_bars(conn: Connection, exclusive: bool = False) -> None:
    """Take the bar-writers' transaction lock (shared for writers, exclusive for rescaling)."""
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    conn.execute(text(f"SELECT {fn}(:key)"), {"key": BARS_LOCK_KEY})


def applied_actions(conn: Connection, tickers: list[str]) -> pd.DataFrame:
    """Applied actions of `tickers` in the order they were applied (ticker, ex_date, ...)."""
    rows = conn.execute(
        text(
            "SELECT ticker, ex_date, action_type, value, factor FROM corporate_actions "
            "WHERE applied_at IS NOT NULL AND ticker = ANY(:tickers) "
            "ORDER BY applied_at, ticker, ex_date, action_type"
        ),
        {"tickers": list(tickers)},
    ).fetchall()
    return pd.DataFrame(rows, columns=["ticker", "ex_date", "action_type", "value", "factor"])


def to_adjusted_scale(bars: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """Apply each action's factor to bars before its ex-date, in the order they were applied.

    The arithmetic is the same as the handler's UPDATE (prices * factor, split volume * ratio),
    so a bar written late is bit-for-bit what it would be had it been stored before.
    """
    if bars.empty or actions.empty:
        return bars
    out = bars.copy()
    for act in actions.itertuples(index=False):
        mask = (out["ticker"] == act.ticker) & (out["ts"] < ex_date_start(act.ex_date))
        if not mask.any():
            continue
        out.loc[mask, PRICES] = out.loc[mask, PRICES] * float(act.factor)
        if act.action_type == "split":
            out.loc[mask, "volume"] = out.loc[mask, "volume"] * float(act.value)
    return out


def write_bars(
    bars: pd.DataFrame,
    *,
    source: str,
    gaps: pd.DataFrame | None = None,
    on_conflict: str = "update",
) -> int:
    """Store raw final bars (adjusted here) and queue `gaps`, atomically. Returns bars written."""
    has_gaps = gaps is not None and not gaps.empty
    if bars.empty and not has_gaps:
        return 0
    if not bars.empty:
        regular = regular_session_mask(bars["ts"])
        if not regular.all():
            log.warning(
                "not storing %d bar(s) outside the regular session (regular-session rule)",
                int((~regular).sum()),
            )
            bars = bars[regular]
    written = 0
    with connect() as conn:
        lock_bars(conn)
        if not bars.empty:
            tickers = sorted(set(bars["ticker"]))
            frame = to_adjusted_scale(bars[BAR_COLUMNS], applied_actions(conn, tickers))
            frame = frame.assign(source=source)
            written = write_to_db(frame, table="bars_1m", on_conflict=on_conflict, conn=conn)
        if has_gaps:
            assert gaps is not None
            queue_gaps(conn, gaps)
    return written


def queue_gaps(conn: Connection, gaps: pd.DataFrame) -> None:
    """Add gap rows, pending unless they carry a `status` (seeding records minutes the source
    confirmed empty); a gap already queued keeps its status. One statement."""
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


def last_bar_times(tickers: list[str]) -> dict[str, pd.Timestamp]:
    """Newest stored bar per ticker (one index probe each)."""
    frame = read_from_db(
        "SELECT t.ticker, (SELECT max(b.ts) FROM bars_1m b WHERE b.ticker = t.ticker) AS ts "
        "FROM unnest(CAST(:tickers AS text[])) AS t(ticker)",
        {"tickers": list(tickers)},
    )
    frame = frame.dropna(subset=["ts"])
    return {
        str(r.ticker): pd.Timestamp(r.ts).tz_convert("UTC").as_unit("ns")
        for r in frame.itertuples(index=False)
    }


def stored_bars(tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Stored bars of `tickers` with start <= ts < end, ordered by ticker and time."""
    bars = read_from_db(
        "SELECT ticker, ts, open, high, low, close, volume FROM bars_1m "
        "WHERE ticker = ANY(:tickers) AND ts >= :start AND ts < :end ORDER BY ticker, ts",
        {"tickers": list(tickers), "start": start, "end": end},
    )
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True).dt.as_unit("ns")
    return bars
