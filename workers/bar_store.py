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

A quarantined bar and a held ticker are alert events (`db.alerts`, in the same transaction).

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
from db.alerts import enqueue_event
from db.bars import ledger_actions, read_raw_neighbours
from db.database_manager import connect, reads_on, refresh_aggregates, write_to_db
from db.notify import BARS, notify
from db.queue import queue_gaps
from workers.guard_arrays import Bars, arrange
from workers.quality_guard import (
    LEVEL_SHIFT,
    QUARANTINE_REASONS,
    GuardParams,
    judge_arranged,
    judge_bars,
)
from workers.sources.base import BAR_COLUMNS

log = logging.getLogger(__name__)
MINUTE = pd.Timedelta(minutes=1)
GUARD = GuardParams()
KEY = ["ticker", "ts"]
OHLCV_FIELDS = ["open", "high", "low", "close", "volume"]
GUARD_FIELDS = ["ticker", "ts", *OHLCV_FIELDS]


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


def _ohlcv(bars: pd.DataFrame) -> np.ndarray:
    """(n, 5) open, high, low, close, volume as float64 (column by column: cheaper than
    selecting the five as a frame)."""
    return np.column_stack([bars[c].to_numpy(np.float64) for c in OHLCV_FIELDS])


class GuardTail:
    """The last `depth` raw bars of each ticker as this process stored them, kept by a process
    that writes the newest bars over and over (the live price ingestor: `write_bars(...,
    tail=...)`), so its guard reads no history from the database: the poll of 500 tickers would
    otherwise read 61,000 stored bars each minute.

    Trusted only while no other write of `bars_1m` came between two of this process's own: every
    write draws a number from the `bar_writes` sequence (`db.quality.open_bars`), and a number
    that is not the last one plus one means another write (a backfill, seeding, an analyst's
    decision) or a failed one came between. Such a write, one with more than one bar of a
    ticker, a bar not after the newest kept, a ticker not kept, a bar in quarantine, or anything
    the guard flags reads its history from the database, and the tail is rebuilt from it.
    """

    def __init__(self, depth: int | None = None) -> None:
        self.depth = depth or GUARD.history_bars
        self.seq: int | None = None
        self.index: dict[str, int] = {}
        self.ts = np.zeros((0, self.depth), np.int64)
        self.values = np.zeros((0, self.depth, 5))
        self.count = np.zeros(0, np.int64)  # bars kept per ticker, right-aligned in its row

    def _rows(self, new: pd.DataFrame, stamp: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The tail rows of `new`'s tickers and its bar times, when the tail stands in for the
        stored bars of this write."""
        if self.seq is None or stamp != self.seq + 1:
            return None
        rows = np.fromiter((self.index.get(t, -1) for t in new["ticker"]), np.int64, len(new))
        if (rows < 0).any() or len(np.unique(rows)) != len(rows) or (self.count[rows] == 0).any():
            return None
        ts = np.asarray(new["ts"].array.asi8, np.int64)
        if (ts <= self.ts[rows, -1]).any():
            return None
        return rows, ts

    def arranged(self, new: pd.DataFrame, stamp: int) -> Bars | None:
        """The bars to judge (each ticker's tail, then its new bar), or None: read them."""
        found = self._rows(new, stamp)
        if found is None:
            return None
        rows, ts_new = found
        d = self.depth
        ts = np.concatenate([self.ts[rows], ts_new[:, None]], axis=1)
        values = np.concatenate([self.values[rows], _ohlcv(new)[:, None, :]], axis=1)
        valid = (np.arange(d + 1)[None, :] >= (d - self.count[rows])[:, None]).ravel()
        code = np.repeat(np.arange(len(rows)), d + 1)[valid]
        is_new = np.tile(np.arange(d + 1) == d, len(rows))[valid]
        names = new["ticker"].to_numpy(object)
        return arrange(code, names, ts.ravel()[valid], values.reshape(-1, 5)[valid], is_new)

    def advance(self, new: pd.DataFrame, stamp: int) -> bool:
        """Add a write's stored bars (one per ticker, after the tail); False if they do not fit."""
        found = self._rows(new, stamp)
        if found is None:
            return False
        rows, ts = found
        self.ts[rows] = np.concatenate([self.ts[rows, 1:], ts[:, None]], axis=1)
        new_values = _ohlcv(new)[:, None, :]
        self.values[rows] = np.concatenate([self.values[rows, 1:], new_values], axis=1)
        self.count[rows] = np.minimum(self.count[rows] + 1, self.depth)
        self.seq = stamp
        return True

    def rebuild(self, history: pd.DataFrame, stored: pd.DataFrame, stamp: int) -> None:
        """Keep the last bars of the tickers of a write from the stored bars read for it and the
        bars it stored; other tickers' tails stay when no other write came between."""
        if self.seq is None or stamp != self.seq + 1:
            self.forget()
        frame = pd.concat([history[GUARD_FIELDS], stored[GUARD_FIELDS]], ignore_index=True)
        frame = (
            frame.sort_values(["ticker", "ts"], kind="stable").groupby("ticker").tail(self.depth)
        )
        ts = np.asarray(pd.DatetimeIndex(frame["ts"]).asi8, np.int64)
        values = frame[OHLCV_FIELDS].to_numpy(np.float64)
        tickers = frame["ticker"].to_numpy(object)
        bounds = np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            row = self._row(str(tickers[lo]))
            n = hi - lo
            self.ts[row, self.depth - n :] = ts[lo:hi]
            self.values[row, self.depth - n :] = values[lo:hi]
            self.count[row] = n
        self.seq = stamp

    def _row(self, ticker: str) -> int:
        row = self.index.get(ticker)
        if row is None:
            row = self.index[ticker] = len(self.index)
            self.ts = np.vstack([self.ts, np.zeros((1, self.depth), np.int64)])
            self.values = np.concatenate([self.values, np.zeros((1, self.depth, 5))])
            self.count = np.r_[self.count, 0]
        return row

    def forget(self) -> None:
        self.__init__(self.depth)  # type: ignore[misc]

    def after_write(self, outcome: GuardOutcome, written: int) -> None:
        """Follow a committed write of this process."""
        good = outcome.good
        if not outcome.clean or written != len(good):
            self.forget()
        elif outcome.history is None:
            if not self.advance(good, outcome.stamp):
                self.forget()
        else:
            self.rebuild(outcome.history, good, outcome.stamp)


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
    keeps out, in `conn`'s
    transaction; returns the bars to store (see the module docstring). A write with nothing
    suspect and nothing in quarantine for its tickers costs one statement, the stored bars
    around it (none with a `tail` that stands in for them) and the judgement."""
    tickers = sorted(set(bars["ticker"]))
    stamp, in_quarantine = quality.open_bars(conn, tickers)

    def ledger() -> pd.DataFrame:  # read only when a level shift is a candidate
        with reads_on(conn):
            first_day = (bars["ts"].min() - pd.Timedelta(days=1)).date()
            return ledger_actions(tickers, first_day, bars["ts"].max().date())

    arranged = tail.arranged(bars, stamp) if tail is not None and in_quarantine.empty else None
    history = None
    if arranged is not None:
        verdict = judge_arranged(arranged, ledger, GUARD)
    else:
        bars = bars.assign(pending_id=-1)
        waiting = in_quarantine[in_quarantine["status"] == quality.PENDING]
        if not waiting.empty:
            keys = pd.MultiIndex.from_frame(waiting[KEY])
            resent = keys.isin(pd.MultiIndex.from_frame(bars[KEY]))
            if resent.any():  # a re-sent print of a waiting minute takes its place
                quality.settle_pending(conn, waiting.loc[resent, "id"].tolist())
            waiting = waiting[~resent].rename(columns={"id": "pending_id"})
            bars = pd.concat([waiting[bars.columns], bars], ignore_index=True)
        span = bars.groupby("ticker")["ts"].agg(["min", "max"])
        with reads_on(conn):
            history = read_raw_neighbours(
                span.index.tolist(), span["min"], span["max"], GUARD.history_bars, GUARD.shift_bars
            )
        verdict = judge_bars(bars, history, ledger, GUARD)
    flags, wait = verdict.flags, verdict.pending
    if flags.empty and wait.empty and in_quarantine.empty:
        stored = bars if arranged is not None else bars[[*BAR_COLUMNS, "source"]]
        return GuardOutcome(stored, 0, 0, (), stamp, True, history)
    if "pending_id" not in bars.columns:
        bars = bars.assign(pending_id=-1)
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
    _alert(conn, pd.concat([fresh_bad, moved], ignore_index=True), shifts)
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
        stamp,
        False,
        None,
    )


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
        tail.after_write(outcome, written)
    if written:
        refresh_aggregates(good["ts"].min(), good["ts"].max() + MINUTE)
    return written
