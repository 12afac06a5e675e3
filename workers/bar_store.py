"""Writing bars, through the data-quality guard, with the gaps found beside them, in one
transaction.

Every writer of `bars_1m` (the price ingestor, live or replaying a file, the backfill, history
seeding) goes through `write_bars`, which stores regular-session bars only (the one rule of every
source and write path; see `config.market_calendar.regular_session_mask`) as the source served
them: prices are stored raw and adjusted for splits and dividends when read (`db.bars`), so a
bar that arrives late for a date before an applied action needs no special care.

The guard (`workers.quality_guard.judge_bars`) judges the bars against the stored bars around
them (raw) and the corporate-action ledger, in the transaction that stores them:

- a suspect bar (a reason of `QUARANTINE_REASONS`) goes to `quarantined_bars` with its raw
  values, source, reason and detail instead of `bars_1m`, so no feature, signal, outcome or
  chart sees it; its minute is queued for the backfill, which fetches it again (a source often
  corrects a bad print) and stores it if the new print passes (the quarantine row then says
  `replaced`). A stored bar that a later bar shows to be a spike moves from `bars_1m` to
  quarantine;
- a bar whose close moved like a spike waits out of `bars_1m` (`pending`) for its next bar,
  which decides: back where it came from (a spike: quarantined) or not (stored with the next
  bar). The last bar of a session does not wait (nothing after it in its session can decide);
- a level shift the ledger does not explain holds its ticker (`ticker_holds`): the scoring
  worker serves HOLD for it, with the reason, until an analyst decides on the data-health page
  or the corporate-action job finds the action. The bars themselves are stored.

The gaps found with the bars are queued in the same transaction, so a restart never loses one,
and the scoring worker is notified in it (`db.notify.BARS`). When the write changed complete
buckets of TimescaleDB's continuous aggregates (a backfill, seeding, a late bar), those are
re-materialized right after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from config.market_calendar import regular_session_mask, xnys
from db import quality
from db.bars import ledger_actions, read_raw_neighbours
from db.database_manager import connect, reads_on, refresh_aggregates, write_to_db
from db.notify import BARS, notify
from db.queue import queue_gaps
from workers.quality_guard import LEVEL_SHIFT, QUARANTINE_REASONS, GuardParams, judge_bars
from workers.sources.base import BAR_COLUMNS

log = logging.getLogger(__name__)
MINUTE = pd.Timedelta(minutes=1)
GUARD = GuardParams()
KEY = ["ticker", "ts"]


@dataclass(frozen=True)
class GuardOutcome:
    """What the guard did with a write: the bars to store and what it kept out."""

    good: pd.DataFrame  # BAR_COLUMNS + source
    quarantined: int
    pending: int
    held: tuple[str, ...]


def _last_minute_of_session(ts: pd.Series) -> np.ndarray:
    """True where a bar (its minute's open) is the last minute of its session."""
    cal = xnys()
    return np.array([not cal.is_trading_minute(t + MINUTE) for t in ts], bool)


def _guard(conn: Connection, bars: pd.DataFrame, source: str) -> GuardOutcome:
    """Judge `bars` (regular-session, raw) and record what the guard keeps out, in `conn`'s
    transaction; returns the bars to store (see the module docstring). A write with nothing
    suspect and nothing in quarantine for its tickers costs two reads and the judgement."""
    bars = bars[BAR_COLUMNS].assign(source=source, pending_id=-1)
    tickers = sorted(set(bars["ticker"]))
    in_quarantine = quality.open_bars(conn, tickers)
    waiting = in_quarantine[in_quarantine["status"] == quality.PENDING]
    if not waiting.empty:
        resent = pd.MultiIndex.from_frame(waiting[KEY]).isin(pd.MultiIndex.from_frame(bars[KEY]))
        if resent.any():  # a re-sent print of a waiting minute takes its place
            quality.settle_pending(conn, waiting.loc[resent, "id"].tolist())
        waiting = waiting[~resent].rename(columns={"id": "pending_id"})
        bars = pd.concat([waiting[bars.columns], bars], ignore_index=True)
    span = bars.groupby("ticker")["ts"].agg(["min", "max"])
    with reads_on(conn):
        history = read_raw_neighbours(
            span.index.tolist(), span["min"], span["max"], GUARD.history_bars, GUARD.shift_bars
        )

        def ledger() -> pd.DataFrame:  # read only when a level shift is a candidate
            with reads_on(conn):
                first_day = (span["min"].min() - pd.Timedelta(days=1)).date()
                return ledger_actions(tickers, first_day, span["max"].max().date())

        verdict = judge_bars(bars, history, ledger, GUARD)
    flags, wait = verdict.flags, verdict.pending
    if flags.empty and wait.empty and in_quarantine.empty:
        return GuardOutcome(bars[[*BAR_COLUMNS, "source"]], 0, 0, ())
    bad = flags[flags["reason"].isin(QUARANTINE_REASONS)]
    fresh_bad = bad[~bad["in_history"]][[*KEY, "reason", "detail"]].merge(bars, on=KEY)
    was_pending = fresh_bad["pending_id"] >= 0
    quality.quarantine(conn, fresh_bad.loc[~was_pending])
    settled = fresh_bad.loc[was_pending, ["pending_id", "reason", "detail"]]
    stored_bad = bad[bad["in_history"]]
    moved = quality.take_out_of_bars(conn, stored_bad[KEY])
    moved = moved.merge(stored_bad[[*KEY, "reason", "detail"]], on=KEY)
    quality.quarantine(conn, moved)

    wait = wait.merge(bars, on=KEY)
    wait = wait[~_last_minute_of_session(wait["ts"])] if len(wait) else wait
    quality.quarantine(
        conn, wait.loc[wait["pending_id"] < 0].assign(reason="spike"), status=quality.PENDING
    )
    kept_out = pd.concat([fresh_bad[KEY], wait[KEY]], ignore_index=True)
    good = bars[~pd.MultiIndex.from_frame(bars[KEY]).isin(pd.MultiIndex.from_frame(kept_out))]
    released = good.loc[good["pending_id"] >= 0, "pending_id"].tolist()
    if released or len(settled):
        quality.settle_pending(
            conn,
            released + settled["pending_id"].tolist(),
            settled.rename(columns={"pending_id": "id"}),
        )
    quarantined = pd.concat([fresh_bad[KEY], moved[KEY]], ignore_index=True)
    quality.retry_minutes(conn, quarantined)
    if (in_quarantine["status"] == quality.QUARANTINED).any():
        quality.mark_replaced(conn, good[KEY])

    shifts = flags[flags["reason"] == LEVEL_SHIFT]
    quality.hold_tickers(
        conn,
        shifts.rename(columns={"ts": "onset_ts"}).assign(source=source)[
            ["ticker", "onset_ts", "reason", "detail", "source"]
        ],
    )
    for row in pd.concat([fresh_bad, moved], ignore_index=True).itertuples(index=False):
        log.warning(
            "quarantined %s %s from %s: %s (%s)",
            row.ticker,
            row.ts,
            row.source,
            row.reason,
            row.detail,
        )
    for row in wait.itertuples(index=False):
        log.info("bar %s %s waits for its next bar: %s", row.ticker, row.ts, row.detail)
    for row in shifts.itertuples(index=False):
        log.warning("holding %s from %s: %s", row.ticker, row.ts, row.detail)
    return GuardOutcome(
        good[[*BAR_COLUMNS, "source"]],
        len(quarantined),
        int((wait["pending_id"] < 0).sum()),
        tuple(sorted(set(shifts["ticker"]))),
    )


def write_bars(
    bars: pd.DataFrame,
    *,
    source: str,
    gaps: pd.DataFrame | None = None,
    on_conflict: str = "update",
) -> int:
    """Store final bars as served (raw) through the guard and queue `gaps`, atomically.
    Returns bars written."""
    has_gaps = gaps is not None and not gaps.empty
    if not bars.empty:
        regular = regular_session_mask(bars["ts"])
        if not regular.all():
            log.warning(
                "not storing %d bar(s) outside the regular session (regular-session rule)",
                int((~regular).sum()),
            )
            bars = bars[regular]
    if bars.empty and not has_gaps:
        return 0
    written = 0
    good = bars
    with connect() as conn:
        if not bars.empty:
            good = _guard(conn, bars, source).good
            written = write_to_db(good, table="bars_1m", on_conflict=on_conflict, conn=conn)
            if written:  # the scoring worker wakes when this transaction commits
                notify(conn, BARS, pd.Timestamp(good["ts"].max()).isoformat())
        if has_gaps:
            assert gaps is not None
            queue_gaps(conn, gaps)
    if written:
        refresh_aggregates(good["ts"].min(), good["ts"].max() + MINUTE)
    return written
