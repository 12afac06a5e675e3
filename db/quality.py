"""The data-quality guard's records (`quarantined_bars`, `ticker_holds`, `daily_reconciliation`,
`input_flags`; see `db/migrations/m0005_data_quality.py`): one query per question.

The write path (`workers.bar_store.write_bars`) calls the functions taking a `conn`, inside the
transaction that stores the bars, so a bar is either in `bars_1m` or in quarantine, never both
and never neither. Analysts' decisions (`decide_bar`, `decide_hold`) name who decided and why;
the two that move bars in or out of `bars_1m` go through the database functions
`accept_quarantined_bar` and `reject_hold` (`db.roles`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text

from core.timeutil import NEW_YORK, utc, utc_series
from db.reads import read_from_db

PENDING = "pending"
QUARANTINED = "quarantined"
REPLACED = "replaced"
ACCEPTED = "accepted"
REJECTED = "rejected"
HELD = "held"
EXPLAINED = "explained"
DECISIONS = (ACCEPTED, REJECTED)
RAW = ["ticker", "ts", "open", "high", "low", "close", "volume", "source"]
QUARANTINE_COLUMNS = [*RAW, "reason", "detail"]


def _stamps(values: Any) -> list[Any]:
    return [utc(v).to_pydatetime() for v in values]


def _floats(values: Any) -> list[float | None]:
    """Raw prices as the driver passes them (NaN and infinities kept: the raw print)."""
    return [float(v) for v in pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)]


def _frame(rows: Any, columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(columns))
    if "ts" in frame.columns:
        frame["ts"] = utc_series(frame["ts"]) if len(frame) else frame["ts"].astype("M8[ns, UTC]")
    return frame


# --------------------------------------------------------------------- the write path
OPEN_BARS_SQL = (
    "WITH s AS (SELECT nextval('bar_writes') AS n) SELECT s.n, q.id, "  # noqa: S608 (fixed names)
    f"{', '.join('q.' + c for c in RAW)}, q.status FROM s LEFT JOIN quarantined_bars q "
    "ON q.status IN (%(pending)s, %(q)s) AND q.ticker = ANY(CAST(%(t)s AS text[])) "
    "ORDER BY q.ticker, q.ts"
)


OPEN_COLUMNS = ["id", *RAW, "status"]


@functools.cache
def _no_open_bars() -> pd.DataFrame:
    """The (shared, not to be modified) answer of `open_bars` when nothing is open."""
    return _frame([], OPEN_COLUMNS)


def open_bars(conn: Connection, tickers: Sequence[str]) -> tuple[int, pd.DataFrame]:
    """This write's number from the `bar_writes` sequence, and the open quarantine rows of
    `tickers` (pending and quarantined): id, the raw bar with its source, status. Usually none:
    the write path asks on every write (one statement)."""
    cursor = conn.connection.cursor()  # the driver's own: no statement compilation
    try:
        cursor.execute(OPEN_BARS_SQL, {"pending": PENDING, "q": QUARANTINED, "t": list(tickers)})
        rows = cursor.fetchall()
    finally:
        cursor.close()
    stamp = int(rows[0][0])
    found = [row[1:] for row in rows if row[1] is not None]
    return stamp, _frame(found, OPEN_COLUMNS) if found else _no_open_bars()


def count_write(conn: Connection) -> None:
    """Draw a `bar_writes` number for a write of `bars_1m` outside `workers.bar_store`."""
    conn.execute(text("SELECT nextval('bar_writes')"))


def settle_pending(conn: Connection, ids: Sequence[int], flags: pd.DataFrame | None = None) -> None:
    """Pending bars decided: those in `flags` (id, reason, detail) stay as quarantined with
    their reason; the others of `ids` were stored in `bars_1m` (or replaced by a re-sent print
    of their minute) and leave quarantine."""
    flagged = [] if flags is None else [int(i) for i in flags["id"]]
    if flagged:
        assert flags is not None
        conn.execute(
            text(
                "UPDATE quarantined_bars q SET status = :q, reason = u.reason, detail = u.detail "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:r AS text[]), CAST(:d AS text[])) "
                "AS u(id, reason, detail) WHERE q.id = u.id"
            ),
            {
                "q": QUARANTINED,
                "ids": flagged,
                "r": list(flags["reason"]),
                "d": list(flags["detail"]),
            },
        )
    released = sorted({int(i) for i in ids} - set(flagged))
    if released:
        conn.execute(
            text("DELETE FROM quarantined_bars WHERE id = ANY(CAST(:ids AS bigint[]))"),
            {"ids": released},
        )


def quarantine(conn: Connection, bars: pd.DataFrame, status: str = QUARANTINED) -> int:
    """Keep `bars` (QUARANTINE_COLUMNS: the raw bar, its source, reason and detail) out of
    `bars_1m`, in `conn`'s transaction. A print identical to one of its minute already in
    quarantine is not added twice. Returns rows added."""
    if bars.empty:
        return 0
    values = {c: list(bars[c].astype(str)) for c in ("ticker", "source", "reason", "detail")}
    prices = {c: _floats(bars[c]) for c in ("open", "high", "low", "close", "volume")}
    added = conn.execute(
        text(
            "INSERT INTO quarantined_bars (ticker, ts, open, high, low, close, volume, source, "
            "reason, detail, status) "
            "SELECT u.* , :status FROM unnest(CAST(:ticker AS text[]), "
            "CAST(:ts AS timestamptz[]), CAST(:open AS float8[]), CAST(:high AS float8[]), "
            "CAST(:low AS float8[]), CAST(:close AS float8[]), CAST(:volume AS float8[]), "
            "CAST(:source AS text[]), CAST(:reason AS text[]), CAST(:detail AS text[])) "
            "AS u(ticker, ts, open, high, low, close, volume, source, reason, detail) "
            "WHERE NOT EXISTS (SELECT 1 FROM quarantined_bars q WHERE q.ticker = u.ticker "
            "AND q.ts = u.ts AND q.status IN (:pending, :q) "
            "AND (q.open, q.high, q.low, q.close, q.volume) "
            "IS NOT DISTINCT FROM (u.open, u.high, u.low, u.close, u.volume))"
        ),
        {
            **values,
            **prices,
            "ts": _stamps(bars["ts"]),
            "status": status,
            "pending": PENDING,
            "q": QUARANTINED,
        },
    ).rowcount
    return int(added)


def take_out_of_bars(conn: Connection, keys: pd.DataFrame) -> pd.DataFrame:
    """Remove stored bars (ticker, ts) from `bars_1m` and return them raw with their source,
    for quarantine in the same transaction (a verdict that needed the bars after them)."""
    if keys.empty:
        return _frame([], RAW)
    rows = conn.execute(
        text(
            "DELETE FROM bars_1m b USING unnest(CAST(:t AS text[]), "  # noqa: S608 (fixed names)
            "CAST(:ts AS timestamptz[])) AS u(ticker, ts) WHERE b.ticker = u.ticker "
            f"AND b.ts = u.ts RETURNING {', '.join('b.' + c for c in RAW)}"
        ),
        {"t": [str(t) for t in keys["ticker"]], "ts": _stamps(keys["ts"])},
    ).all()
    return _frame(rows, RAW)


def mark_replaced(conn: Connection, stored: pd.DataFrame) -> int:
    """Open quarantine rows of minutes a passing print has now been stored for: `replaced`."""
    if stored.empty:
        return 0
    return int(
        conn.execute(
            text(
                "UPDATE quarantined_bars q SET status = :replaced, decided_at = now() "
                "FROM unnest(CAST(:t AS text[]), CAST(:ts AS timestamptz[])) AS u(ticker, ts) "
                "WHERE q.ticker = u.ticker AND q.ts = u.ts AND q.status = :q"
            ),
            {
                "replaced": REPLACED,
                "q": QUARANTINED,
                "t": [str(t) for t in stored["ticker"]],
                "ts": _stamps(stored["ts"]),
            },
        ).rowcount
    )


def retry_minutes(conn: Connection, minutes: pd.DataFrame) -> int:
    """Queue the backfill to fetch quarantined minutes (ticker, ts) again: a source often
    corrects a bad print later. Only a minute's first quarantine is retried (a second bad print
    of it stays for an analyst). Returns minutes queued."""
    if minutes.empty:
        return 0
    return int(
        conn.execute(
            text(
                "INSERT INTO backfill_queue (ticker, gap_start, gap_end, status, attempts) "
                "SELECT u.ticker, u.ts, u.ts, 'pending', 0 "
                "FROM unnest(CAST(:t AS text[]), CAST(:ts AS timestamptz[])) AS u(ticker, ts) "
                "WHERE (SELECT count(*) FROM quarantined_bars q "
                "       WHERE q.ticker = u.ticker AND q.ts = u.ts AND q.status <> :pending) = 1 "
                "ON CONFLICT (ticker, gap_start) DO UPDATE SET status = 'pending', "
                "gap_end = EXCLUDED.gap_end, updated_at = now() "
                "WHERE backfill_queue.status <> 'pending'"
            ),
            {
                "t": [str(t) for t in minutes["ticker"]],
                "ts": _stamps(minutes["ts"]),
                "pending": PENDING,
            },
        ).rowcount
    )


def hold_tickers(conn: Connection, holds: pd.DataFrame) -> int:
    """Hold tickers at a level shift (ticker, onset_ts, reason, detail, source), in `conn`'s
    transaction; an onset already recorded (held or decided) is not recorded again."""
    if holds.empty:
        return 0
    return int(
        conn.execute(
            text(
                "INSERT INTO ticker_holds (ticker, onset_ts, reason, detail, source) "
                "SELECT * FROM unnest(CAST(:t AS text[]), CAST(:ts AS timestamptz[]), "
                "CAST(:r AS text[]), CAST(:d AS text[]), CAST(:s AS text[])) "
                "ON CONFLICT (ticker, onset_ts) DO NOTHING"
            ),
            {
                "t": [str(t) for t in holds["ticker"]],
                "ts": _stamps(holds["onset_ts"]),
                "r": [str(x) for x in holds["reason"]],
                "d": [str(x) for x in holds["detail"]],
                "s": [str(x) for x in holds["source"]],
            },
        ).rowcount
    )


def explain_holds(conn: Connection, actions: pd.DataFrame, actor: str) -> int:
    """End the holds whose onset falls on the ex-date (New York session date) of an action the
    corporate-action job found (actions: ticker, ex_date, action_type, value)."""
    if actions.empty:
        return 0
    return int(
        conn.execute(
            text(
                "UPDATE ticker_holds h SET status = :explained, decided_at = now(), "
                "decided_by = :actor, decision_reason = 'corporate action ' || u.kind || ' ' "
                "|| u.value || ' on ' || u.ex_date "
                "FROM unnest(CAST(:t AS text[]), CAST(:d AS date[]), CAST(:k AS text[]), "
                "CAST(:v AS float8[])) AS u(ticker, ex_date, kind, value) "
                "WHERE h.status = :held AND h.ticker = u.ticker "
                "AND (h.onset_ts AT TIME ZONE :tz)::date = u.ex_date"
            ),
            {
                "tz": NEW_YORK,
                "explained": EXPLAINED,
                "held": HELD,
                "actor": actor,
                "t": [str(t) for t in actions["ticker"]],
                "d": [pd.Timestamp(d).date() for d in actions["ex_date"]],
                "k": [str(k) for k in actions["action_type"]],
                "v": [float(v) for v in actions["value"]],
            },
        ).rowcount
    )


# --------------------------------------------------------------------- reads
def held_tickers() -> pd.DataFrame:
    """Open holds: id, ticker, onset_ts, reason, detail, source, flagged_at (oldest first)."""
    frame = read_from_db(
        "SELECT id, ticker, onset_ts, reason, detail, source, flagged_at FROM ticker_holds "
        "WHERE status = :held ORDER BY onset_ts, ticker",
        {"held": HELD},
    )
    for col in ("onset_ts", "flagged_at"):
        frame[col] = utc_series(frame[col]) if len(frame) else frame[col].astype("M8[ns, UTC]")
    return frame


def hold_history(limit: int = 200) -> pd.DataFrame:
    """Every hold, newest first, with its decision."""
    return read_from_db(
        "SELECT id, ticker, onset_ts, status, detail, flagged_at, decided_at, decided_by, "
        "decision_reason FROM ticker_holds ORDER BY flagged_at DESC, id DESC LIMIT :n",
        {"n": limit},
    )


def quarantined(statuses: Sequence[str] = (QUARANTINED, PENDING), limit: int = 500) -> pd.DataFrame:
    """Quarantined bars with these statuses, newest minute first: id, the raw bar, source,
    reason, detail, status, flagged_at and the decision."""
    return read_from_db(
        "SELECT id, ticker, ts, open, high, low, close, volume, source, reason, detail, status, "
        "flagged_at, decided_at, decided_by, decision_reason FROM quarantined_bars "
        "WHERE status = ANY(CAST(:s AS text[])) ORDER BY ts DESC, ticker LIMIT :n",
        {"s": list(statuses), "n": limit},
    )


def quarantine_counts() -> pd.DataFrame:
    """Per ticker and reason, quarantined bars still open and in all: ticker, reason, open,
    total."""
    return read_from_db(
        "SELECT ticker, reason, count(*) FILTER (WHERE status = :q) AS open, count(*) AS total "
        "FROM quarantined_bars WHERE status <> :pending GROUP BY ticker, reason "
        "ORDER BY open DESC, total DESC, ticker",
        {"q": QUARANTINED, "pending": PENDING},
    )
