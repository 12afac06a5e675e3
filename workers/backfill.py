"""Post-market backfill: fill the gaps in `backfill_queue`, or refetch a date range.

    python -m workers.backfill                         drain the queue (cron, after the close)
    python -m workers.backfill --start 2024-06-03 --end 2024-06-07   refetch those sessions

Gaps are fetched per session with one history request for all tickers concerned. A gap the
source has bars for becomes `filled`; a gap the source has nothing for is a minute without
trades: `empty`, never retried. Errors count an attempt and keep the gap `pending`; after
`--max-attempts`, or when the gap is older than the source's history reaches, it is `failed`.
The price ingestor also drains the queue itself whenever a session closes; every drain holds one
lock (`db.ops.backfill_lock`), so the two never race: the second says so and exits 75. Under
cron the `workers.cron_job` guard records the run in `job_runs`; the last line printed is the
report.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from config.cli import job_parser, run_job
from config.market_calendar import sessions_between, xnys
from config.settings import get_settings
from db.ops import backfill_lock
from db.queue import mark_gaps, pending_gaps
from workers.bar_store import write_bars
from workers.sources import SOURCE_KINDS, make_source
from workers.sources.base import HistoryOutOfReachError, MarketDataSource, clean_bars, final_only

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
MINUTE = pd.Timedelta(minutes=1)


@dataclass
class BackfillReport:
    filled: int = 0
    empty: int = 0
    failed: int = 0
    retry: int = 0
    bars_written: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"gaps filled {self.filled}, confirmed empty {self.empty}, failed {self.failed}, "
            f"to retry {self.retry}; bars written {self.bars_written}"
        )


def _session_of(ts: pd.Series) -> pd.Series:
    minutes = pd.DatetimeIndex(ts).as_unit("ns")
    return pd.Series(xnys().minutes_to_sessions(minutes), index=ts.index)


def resolve(gaps: pd.DataFrame, bars: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Status of each gap given the source's bars for its span, and the bars inside gaps."""
    statuses, inside = [], []
    by_ticker = dict(list(bars.groupby("ticker"))) if not bars.empty else {}
    for gap in gaps.itertuples(index=False):
        mine = by_ticker.get(gap.ticker)
        hit = (
            mine[(mine["ts"] >= gap.gap_start) & (mine["ts"] <= gap.gap_end)]
            if mine is not None
            else None
        )
        if hit is not None and not hit.empty:
            statuses.append("filled")
            inside.append(hit)
        else:
            statuses.append("empty")
    found = pd.concat(inside, ignore_index=True) if inside else bars.iloc[0:0]
    return statuses, found


def _fill_session(
    source: MarketDataSource, gaps: pd.DataFrame, report: BackfillReport, max_attempts: int
) -> None:
    tickers = sorted(set(gaps["ticker"]))
    start, end = gaps["gap_start"].min(), gaps["gap_end"].max() + MINUTE
    try:
        bars, _ = clean_bars(final_only(source.history(tickers, start, end), source.now()))
    except HistoryOutOfReachError as exc:
        mark_gaps(gaps, ["failed"] * len(gaps), str(exc))
        report.failed += len(gaps)
        return
    except Exception as exc:  # a source failure: count the attempt, retry on a later run
        log.warning("backfill of %d gap(s) %s..%s failed: %s", len(gaps), start, end, exc)
        give_up = gaps["attempts"] + 1 >= max_attempts
        mark_gaps(
            gaps, ["failed" if g else "pending" for g in give_up], f"{type(exc).__name__}: {exc}"
        )
        report.failed += int(give_up.sum())
        report.retry += int((~give_up).sum())
        report.errors.append(str(exc))
        return
    statuses, inside = resolve(gaps, bars)
    report.bars_written += write_bars(inside, source=source.name, on_conflict="nothing")
    mark_gaps(gaps, statuses)
    report.filled += statuses.count("filled")
    report.empty += statuses.count("empty")


def drain_queue(
    source: MarketDataSource,
    *,
    before: pd.Timestamp | None = None,
    tickers: list[str] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> BackfillReport:
    """Fill pending gaps (ending before `before`), one history request per session.

    Holds `db.ops.backfill_lock`; raises `LockBusyError` at once when another drain holds it.
    """
    report = BackfillReport()
    with backfill_lock():
        gaps = pending_gaps(before=before, tickers=tickers)
        if gaps.empty:
            return report
        for _, group in gaps.groupby(_session_of(gaps["gap_start"])):
            _fill_session(source, group.reset_index(drop=True), report, max_attempts)
    log.info("backfill: %s", report)
    return report


def backfill_range(
    source: MarketDataSource, tickers: list[str], start: date, end: date
) -> BackfillReport:
    """Refetch every session from `start` to `end` and store the bars that are missing (under
    `db.ops.backfill_lock`, like every drain)."""
    with backfill_lock():
        return _backfill_range(source, tickers, start, end)


def _backfill_range(
    source: MarketDataSource, tickers: list[str], start: date, end: date
) -> BackfillReport:
    report = BackfillReport()
    sessions = sessions_between(start, end)
    step = source.limits.max_days_per_request or len(sessions) or 1
    cal = xnys()
    now = source.now()
    for i in range(0, len(sessions), step):
        chunk = sessions[i : i + step]
        lo = pd.Timestamp(cal.session_open(chunk[0]))
        hi = min(pd.Timestamp(cal.session_close(chunk[-1])), now.floor("min"))
        if hi <= lo:
            break
        bars, _ = clean_bars(final_only(source.history(tickers, lo, hi), now))
        report.bars_written += write_bars(bars, source=source.name, on_conflict="nothing")
        gaps = pending_gaps(before=hi, start=lo, tickers=tickers)
        statuses, _ = resolve(gaps, bars)
        mark_gaps(gaps, statuses)
        report.filled += statuses.count("filled")
        report.empty += statuses.count("empty")
        log.info("backfill %s..%s: %d bar(s) added", chunk[0].date(), chunk[-1].date(), len(bars))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("workers.backfill", __doc__)
    parser.add_argument("--source", choices=SOURCE_KINDS, help="default: settings.market_source")
    parser.add_argument("--start", type=date.fromisoformat, help="first session (YYYY-MM-DD)")
    parser.add_argument("--end", type=date.fromisoformat, help="last session (YYYY-MM-DD)")
    parser.add_argument("--max-attempts", type=int, default=MAX_ATTEMPTS)
    args = parser.parse_args(argv)
    if (args.start is None) != (args.end is None):
        parser.error("--start and --end go together")
    settings = get_settings()
    source = make_source(settings, args.source)

    def work() -> object:
        if args.start is not None:
            return backfill_range(source, settings.universe, args.start, args.end)
        return drain_queue(source, max_attempts=args.max_attempts)

    return run_job("workers.backfill", work, busy="the queue is being drained already")


if __name__ == "__main__":
    sys.exit(main())
