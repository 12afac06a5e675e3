"""Writing bars, through the data-quality guard, with the gaps found beside them, in one
transaction.

Every writer of `bars_1m` (the price ingestor, live or replaying a file, the backfill, history
seeding) goes through `write_bars`, which stores regular-session bars only (the one rule of every
source and write path; see `config.market_calendar.regular_session_mask`) as the source served
them: prices are stored raw and adjusted for splits and dividends when read (`db.bars`), so a
bar that arrives late for a date before an applied action needs no special care.

What makes a bar valid is the bar rule (`db.bar_rule`): the guard quarantines the bars it
refuses (`zero_or_negative`, `ohlc_inconsistent`), and the gateway (`db.writes.write_to_db`)
refuses a batch holding one. The guard (`workers.quality_guard.judge_bars`) judges the bars
against the stored bars around them (raw) and the corporate-action ledger, in the transaction
that stores them:

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

A quarantined bar and a held ticker are alert events (`db.alerts`, in the same transaction).

The gaps found with the bars are queued in the same transaction, so a restart never loses one,
and the scoring worker is notified in it (`db.notify.BARS`). When the write changed complete
buckets of TimescaleDB's continuous aggregates (a backfill, seeding, a late bar), those are
re-materialized right after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from config.market_calendar import regular_session_mask, xnys
from db import quality
from db.alerts import enqueue_event
from db.bar_rule import BAR_COLUMNS
from db.bars import ledger_actions, read_raw_neighbours
from db.connections import connect, reads_on
from db.flavour import refresh_aggregates
from db.notify import BARS, notify
from db.queue import queue_gaps
from db.writes import write_to_db
from workers.guard_rules import GuardParams
from workers.guard_tail import GuardTail
from workers.quality_guard import (
    LEVEL_SHIFT,
    QUARANTINE_REASONS,
    GuardResult,
    judge_arranged,
    judge_bars,
)

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
    stamp: int  # the write's number from the `bar_writes` sequence
    clean: bool  # nothing flagged, waiting or in quarantine
    history: pd.DataFrame | None  # the stored bars read from the database (None: from a tail)


def _follow(tail: GuardTail, outcome: GuardOutcome, written: int) -> None:
    """Bring the writer's tail up to a committed write (or drop it when it cannot follow)."""
    good = outcome.good
    if not outcome.clean or written != len(good):
        tail.forget()
    elif outcome.history is None:
        if not tail.advance(good, outcome.stamp):
            tail.forget()
    else:
        tail.rebuild(outcome.history, good, outcome.stamp)


def _alert(conn: Connection, quarantined: pd.DataFrame, shifts: pd.DataFrame) -> None:
    """Alert events for the bars quarantined and the tickers held, in the write's transaction
    (the outbox: `db.alerts`); each named once by its minute and reason."""
    for row in quarantined.itertuples(index=False):
        bar_time = pd.Timestamp(row.ts)
        payload = {
            "ticker": row.ticker,
            "bar_time": bar_time,
            "reason": row.reason,
            "detail": row.detail,
            "source": row.source,
            "price": row.close,
        }
        fingerprint = f"quarantined_bar:{row.ticker}:{bar_time.isoformat()}:{row.reason}"
        enqueue_event(conn, "quarantined_bar", payload, fingerprint)
    for row in shifts.itertuples(index=False):
        onset = pd.Timestamp(row.ts)
        payload = {"ticker": row.ticker, "bar_time": onset, "reason": row.detail}
        enqueue_event(conn, "held_ticker", payload, f"held_ticker:{row.ticker}:{onset.isoformat()}")


def _last_minute_of_session(ts: pd.Series) -> np.ndarray:
    """True where a bar (its minute's open) is the last minute of its session."""
    cal = xnys()
    return np.array([not cal.is_trading_minute(t + MINUTE) for t in ts], bool)


def _guard(
    conn: Connection, bars: pd.DataFrame, source: str, tail: GuardTail | None
) -> GuardOutcome:
    """Judge `bars` (regular-session, raw, BAR_COLUMNS + source) and record what the guard
    keeps out, in `conn`'s transaction; returns the bars to store (see the module docstring). A
    write with nothing suspect and nothing in quarantine for its tickers costs one statement,
    the stored bars around it (none with a `tail` that stands in for them) and the judgement."""
    tickers = sorted(set(bars["ticker"]))
    stamp, in_quarantine = quality.open_bars(conn, tickers)
    arranged = tail.arranged(bars, stamp) if tail is not None and in_quarantine.empty else None
    history = None
    if arranged is not None:
        verdict = judge_arranged(arranged, _ledger_reader(conn, bars, tickers), GUARD)
    else:
        bars = _with_pending(conn, bars, in_quarantine)
        history = _stored_neighbours(conn, bars)
        verdict = judge_bars(bars, history, _ledger_reader(conn, bars, tickers), GUARD)
    if verdict.flags.empty and verdict.pending.empty and in_quarantine.empty:
        stored = bars if arranged is not None else bars[[*BAR_COLUMNS, "source"]]
        return GuardOutcome(stored, 0, 0, (), stamp, True, history)
    return _keep_out(conn, bars, verdict, in_quarantine, source, stamp)


def _ledger_reader(
    conn: Connection, bars: pd.DataFrame, tickers: list[str]
) -> Callable[[], pd.DataFrame]:
    """The corporate-action ledger of the days of `bars`, read only when the guard asks for it
    (a level shift is a candidate)."""

    def ledger() -> pd.DataFrame:
        with reads_on(conn):
            first_day = (bars["ts"].min() - pd.Timedelta(days=1)).date()
            return ledger_actions(tickers, first_day, bars["ts"].max().date())

    return ledger


def _with_pending(
    conn: Connection, bars: pd.DataFrame, in_quarantine: pd.DataFrame
) -> pd.DataFrame:
    """`bars` (`pending_id` -1) after the bars of their tickers that wait for their next bar
    (`pending_id` their quarantine row), to be judged again with them. A re-sent print of a
    waiting minute takes its place: the waiting one is settled."""
    bars = bars.assign(pending_id=-1)
    waiting = in_quarantine[in_quarantine["status"] == quality.PENDING]
    if waiting.empty:
        return bars
    keys = pd.MultiIndex.from_frame(waiting[KEY])
    resent = keys.isin(pd.MultiIndex.from_frame(bars[KEY]))
    if resent.any():
        quality.settle_pending(conn, waiting.loc[resent, "id"].tolist())
    waiting = waiting[~resent].rename(columns={"id": "pending_id"})
    return pd.concat([waiting[bars.columns], bars], ignore_index=True)


def _stored_neighbours(conn: Connection, bars: pd.DataFrame) -> pd.DataFrame:
    """The stored bars around `bars` that the guard judges them on (raw, in `conn`)."""
    span = bars.groupby("ticker")["ts"].agg(["min", "max"])
    with reads_on(conn):
        return read_raw_neighbours(
            span.index.tolist(), span["min"], span["max"], GUARD.history_bars, GUARD.shift_bars
        )


def _keep_out(
    conn: Connection,
    bars: pd.DataFrame,
    verdict: GuardResult,
    in_quarantine: pd.DataFrame,
    source: str,
    stamp: int,
) -> GuardOutcome:
    """Record what the guard keeps out of `bars_1m` (quarantine, bars waiting for their next
    bar, held tickers, their alerts) and return the bars to store."""
    if "pending_id" not in bars.columns:
        bars = bars.assign(pending_id=-1)
    fresh_bad, moved, settled = _quarantine_flagged(conn, bars, verdict.flags)
    wait = _wait_for_next_bar(conn, bars, verdict.pending)
    kept_out = pd.concat([fresh_bad[KEY], wait[KEY]], ignore_index=True)
    good = _release(conn, bars, kept_out, settled)
    quarantined = pd.concat([fresh_bad[KEY], moved[KEY]], ignore_index=True)
    quality.retry_minutes(conn, quarantined)
    if (in_quarantine["status"] == quality.QUARANTINED).any():
        quality.mark_replaced(conn, good[KEY])
    shifts = verdict.flags[verdict.flags["reason"] == LEVEL_SHIFT]
    _hold(conn, shifts, source)
    _report(conn, pd.concat([fresh_bad, moved], ignore_index=True), wait, shifts)
    return GuardOutcome(
        good[[*BAR_COLUMNS, "source"]],
        len(quarantined),
        int((wait["pending_id"] < 0).sum()),
        tuple(sorted(set(shifts["ticker"]))),
        stamp,
        False,
        None,
    )


def _quarantine_flagged(
    conn: Connection, bars: pd.DataFrame, flags: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Quarantine the flagged bars: the write's own (a waiting one settled with its verdict)
    and stored ones a later bar showed to be bad (moved out of `bars_1m`). Returns the write's
    flagged bars, the moved ones and the waiting ones settled (pending_id, reason, detail)."""
    bad = flags[flags["reason"].isin(QUARANTINE_REASONS)]
    fresh_bad = bad[~bad["in_history"]][[*KEY, "reason", "detail"]].merge(bars, on=KEY)
    was_pending = fresh_bad["pending_id"] >= 0
    quality.quarantine(conn, fresh_bad.loc[~was_pending])
    settled = fresh_bad.loc[was_pending, ["pending_id", "reason", "detail"]]
    stored_bad = bad[bad["in_history"]]
    moved = quality.take_out_of_bars(conn, stored_bad[KEY])
    moved = moved.merge(stored_bad[[*KEY, "reason", "detail"]], on=KEY)
    quality.quarantine(conn, moved)
    return fresh_bad, moved, settled


def _wait_for_next_bar(conn: Connection, bars: pd.DataFrame, pending: pd.DataFrame) -> pd.DataFrame:
    """The bars whose spike verdict waits for their next bar (not the last minute of a session:
    nothing after it can decide); the new ones are quarantined as `pending`."""
    wait = pending.merge(bars, on=KEY)
    wait = wait[~_last_minute_of_session(wait["ts"])] if len(wait) else wait
    quality.quarantine(
        conn, wait.loc[wait["pending_id"] < 0].assign(reason="spike"), status=quality.PENDING
    )
    return wait


def _release(
    conn: Connection, bars: pd.DataFrame, kept_out: pd.DataFrame, settled: pd.DataFrame
) -> pd.DataFrame:
    """The bars not kept out; the waiting bars among them, and the waiting bars the guard
    decided on (`settled`), leave the waiting list."""
    good = bars[~pd.MultiIndex.from_frame(bars[KEY]).isin(pd.MultiIndex.from_frame(kept_out))]
    released = good.loc[good["pending_id"] >= 0, "pending_id"].tolist()
    if released or len(settled):
        quality.settle_pending(
            conn,
            released + settled["pending_id"].tolist(),
            settled.rename(columns={"pending_id": "id"}),
        )
    return good


def _hold(conn: Connection, shifts: pd.DataFrame, source: str) -> None:
    """Hold the tickers whose level shifted with nothing in the ledger to explain it."""
    quality.hold_tickers(
        conn,
        shifts.rename(columns={"ts": "onset_ts"}).assign(source=source)[
            ["ticker", "onset_ts", "reason", "detail", "source"]
        ],
    )


def _report(
    conn: Connection, quarantined: pd.DataFrame, wait: pd.DataFrame, shifts: pd.DataFrame
) -> None:
    """Alert events and log lines for the bars quarantined, waiting and the tickers held."""
    _alert(conn, quarantined, shifts)
    for row in quarantined.itertuples(index=False):
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


def write_bars(
    bars: pd.DataFrame,
    *,
    source: str,
    gaps: pd.DataFrame | None = None,
    on_conflict: str = "update",
    tail: GuardTail | None = None,
) -> int:
    """Store final bars as served (raw) through the guard and queue `gaps`, atomically.
    Returns bars written. `tail`: the writer's `GuardTail` (a process writing the newest bars
    poll after poll), which the guard judges on instead of reading the stored bars."""
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
    outcome = None
    with connect() as conn:
        if not bars.empty:
            outcome = _guard(conn, bars[BAR_COLUMNS].assign(source=source), source, tail)
            good = outcome.good
            written = write_to_db(good, table="bars_1m", on_conflict=on_conflict, conn=conn)
            if written:  # the scoring worker wakes when this transaction commits
                notify(conn, BARS, pd.Timestamp(good["ts"].max()).isoformat())
        if has_gaps:
            assert gaps is not None
            queue_gaps(conn, gaps)
    if tail is not None and outcome is not None:
        _follow(tail, outcome, written)
    if written:
        refresh_aggregates(good["ts"].min(), good["ts"].max() + MINUTE)
    return written
