"""Seed the database with the 1-minute history before the live feed starts.

    python -m workers.seed_history [--source simulated|replay|yfinance] [--days N]
                                   [--reset-clock] [--no-adjust]

Writes the configured source's bars of the universe for the N sessions before the session its
live feed starts in (`MarketDataSource.live_start`: the shared clock's start for the simulated
and replay sources, now for yfinance), so the price ingestor continues exactly where the seeded
history ends. Requests follow the source's limits (the whole universe per request, at most
`max_days_per_request` days each, never older than its history reaches; yfinance's rate limits
are retried with back-off by the source). Sessions are written one by one, so a run killed
halfway resumes where it stopped: sessions already stored in full are not written again and
existing bars are never overwritten; a second run writes nothing. Minutes of a fetched session
that the source has no bar for are recorded in the backfill queue as confirmed empty (minutes
without trades). Then, unless `--no-adjust`, the corporate-action handler records and applies the
splits and dividends of that window, as the before-the-open cron job would have. News and macro
seeding live in `workers.seed_context`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from config.cli import job_parser, setup_logging
from config.market_calendar import session_minutes, xnys
from config.market_clock import reset_clock
from config.settings import Settings, get_settings
from core.timeutil import NEW_YORK, new_york_date
from db.bars import bars_per_session_day
from workers.bar_store import write_bars
from workers.corporate_action_handler import run_daily_adjustment
from workers.gaps import runs
from workers.sources import SOURCE_KINDS, make_source
from workers.sources.base import MarketDataSource, clean_bars, final_only

log = logging.getLogger(__name__)


@dataclass
class SeedReport:
    sessions: int = 0
    skipped: int = 0
    bars_written: int = 0
    empty_minutes: int = 0
    first: str = ""
    last: str = ""

    def __str__(self) -> str:
        return (
            f"{self.sessions} session(s) {self.first}..{self.last}: {self.bars_written} bar(s) "
            f"written, {self.skipped} session(s) already complete, "
            f"{self.empty_minutes} minute(s) without trades"
        )


def seed_sessions(source: MarketDataSource, days: int) -> pd.DatetimeIndex:
    """The `days` sessions before the session the source's live feed starts in, within the
    source's history reach."""
    cal = xnys()
    start = source.live_start()
    first_live = cal.minute_to_session(start.floor("min"), direction="next")
    sessions = cal.sessions_window(first_live, -(days + 1))[:-1]
    reach = source.limits.history_days
    if reach is not None:
        oldest = (source.now() - pd.Timedelta(days=reach)).tz_convert(None).normalize()
        kept = sessions[sessions > oldest]
        if len(kept) < len(sessions):
            log.warning(
                "%s keeps 1-minute history for about %d days: seeding %d of %d session(s)",
                source.name,
                reach,
                len(kept),
                len(sessions),
            )
        sessions = kept
    return sessions


def session_chunks(source: MarketDataSource, sessions: pd.DatetimeIndex) -> list[pd.DatetimeIndex]:
    """Consecutive sessions grouped so that each group is one request to the source."""
    span = source.limits.max_days_per_request
    if span is None or len(sessions) == 0:
        return [sessions] if len(sessions) else []
    chunks, first = [], 0
    for i in range(1, len(sessions) + 1):
        if i == len(sessions) or (sessions[i] - sessions[first]).days >= span:
            chunks.append(sessions[first:i])
            first = i
    return chunks


def stored_counts(tickers: list[str], sessions: pd.DatetimeIndex) -> dict[pd.Timestamp, int]:
    """Bars stored per session (New York date) for `tickers`."""
    cal = xnys()
    return bars_per_session_day(
        tickers,
        pd.Timestamp(cal.session_open(sessions[0])),
        pd.Timestamp(cal.session_close(sessions[-1])),
    )


def empty_minutes(bars: pd.DataFrame, tickers: list[str], session: pd.Timestamp) -> pd.DataFrame:
    """Minutes of `session` the source served no bar for, as confirmed-empty queue rows.

    A ticker with no bar at all in the session is left out: that is a failed answer, not a
    session without trades, and the price ingestor's gap check or a later seed covers it."""
    minutes = session_minutes(session)
    rows: list[dict[str, object]] = []
    for ticker, mine in bars.groupby("ticker"):
        if str(ticker) not in tickers or mine.empty:
            continue
        missing = minutes[~minutes.isin(pd.DatetimeIndex(mine["ts"]))]
        rows.extend(runs(str(ticker), missing, minutes))
    frame = pd.DataFrame(rows, columns=["ticker", "gap_start", "gap_end"])
    return frame.assign(status="empty")


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on a terminal; log lines otherwise."""
    if enabled and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        ) as bar:
            task = bar.add_task("seeding sessions", total=total)
            yield lambda label: bar.update(task, advance=1, description=f"seeding {label}")
        return
    done = {"n": 0}

    def tick(label: str) -> None:
        done["n"] += 1
        if enabled and (done["n"] == total or done["n"] % max(1, total // 10) == 0):
            log.info("seeded %d/%d sessions (%s)", done["n"], total, label)

    yield tick


def _seed_chunk(
    source: MarketDataSource,
    tickers: list[str],
    chunk: pd.DatetimeIndex,
    report: SeedReport,
    tick: Callable[[str], None],
) -> None:
    cal = xnys()
    have = stored_counts(tickers, chunk)
    lo, hi = pd.Timestamp(cal.session_open(chunk[0])), pd.Timestamp(cal.session_close(chunk[-1]))
    fetched, _ = clean_bars(final_only(source.history(tickers, lo, hi), source.now()))
    fetched = fetched[fetched["ticker"].isin(tickers)]
    day = fetched["ts"].dt.tz_convert(NEW_YORK).dt.tz_localize(None).dt.normalize()
    for session in chunk:
        bars = fetched[day == session]
        if have.get(session, 0) >= len(bars):
            report.skipped += 1
        else:
            empty = empty_minutes(bars, tickers, session)
            report.bars_written += write_bars(
                bars, source=source.name, gaps=empty, on_conflict="nothing"
            )
            report.empty_minutes += _minutes_in(empty)
        tick(str(session.date()))


def _minutes_in(gaps: pd.DataFrame) -> int:
    if gaps.empty:
        return 0
    return int(((gaps["gap_end"] - gaps["gap_start"]) / pd.Timedelta(minutes=1) + 1).sum())


def seed_history(
    days: int,
    settings: Settings | None = None,
    *,
    source: MarketDataSource | None = None,
    adjust: bool = True,
    progress: bool = True,
) -> SeedReport:
    """Write `days` sessions of the source's history ending where its live feed starts."""
    settings = settings or get_settings()
    source = source or make_source(settings)
    tickers = list(settings.universe)
    sessions = seed_sessions(source, days)
    if len(sessions) == 0:
        log.info("seed history: no session before %s to seed", source.live_start())
        return SeedReport()
    report = SeedReport(len(sessions), first=str(sessions[0].date()), last=str(sessions[-1].date()))
    with _progress(len(sessions), progress) as tick:
        for chunk in session_chunks(source, sessions):
            _seed_chunk(source, tickers, chunk, report, tick)
    if adjust:
        span = (sessions[-1] - sessions[0]).days + 1
        today = new_york_date(source.live_start())
        run_daily_adjustment(source, tickers, today=today, lookback_days=span + 1, lookahead_days=0)
    log.info("seed history: %s", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("workers.seed_history", __doc__)
    parser.add_argument("--source", choices=SOURCE_KINDS, help="default: settings.market_source")
    parser.add_argument(
        "--days", type=int, default=None, help="sessions (default: sim_history_days)"
    )
    parser.add_argument("--reset-clock", action="store_true", help="restart the shared clock")
    parser.add_argument("--no-adjust", action="store_true", help="skip corporate actions")
    args = parser.parse_args(argv)
    setup_logging("workers.seed_history")
    settings = get_settings()
    days = args.days or settings.sim_history_days
    if days < 1:
        parser.error("--days must be at least 1")
    if args.reset_clock and reset_clock(settings.data_dir):
        log.info("market clock reset")
    source = make_source(settings, args.source)
    report = seed_history(days, settings, source=source, adjust=not args.no_adjust)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
