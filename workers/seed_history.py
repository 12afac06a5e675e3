"""Seed the database with simulated history so the demo has bars to train on and to show.

    python -m workers.seed_history --days 25 [--reset-clock] [--no-adjust]

Writes the simulated market's 1-minute bars of the universe for the N sessions before the
session the shared simulated clock starts in (see `workers.sources.clock`), so the price
ingestor continues exactly where the seeded history ends. Idempotent: sessions already complete
in the database are skipped and existing bars are never overwritten. Then, unless
`--no-adjust`, the corporate-action handler records and applies the splits and dividends of
that window, as the before-the-open cron job would have. News and macro seeding live elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from config.market_calendar import xnys
from config.settings import Settings, get_settings
from db.database_manager import read_from_db
from workers.bar_store import write_bars
from workers.common import setup_logging
from workers.corporate_action_handler import run_daily_adjustment
from workers.sources import make_source
from workers.sources.clock import reset_clock
from workers.sources.simulated import SimulatedMarket

log = logging.getLogger(__name__)


@dataclass
class SeedReport:
    sessions: int = 0
    skipped: int = 0
    bars_written: int = 0
    first: str = ""
    last: str = ""

    def __str__(self) -> str:
        return (
            f"{self.sessions} session(s) {self.first}..{self.last}: {self.bars_written} bar(s) "
            f"written, {self.skipped} session(s) already complete"
        )


def seed_sessions(market: SimulatedMarket, days: int) -> pd.DatetimeIndex:
    """The `days` sessions before the session the market's clock starts in."""
    if market.clock is None:
        raise ValueError("seeding needs the simulated market's clock (make_source)")
    cal = xnys()
    first_live = cal.minute_to_session(market.clock.start, direction="next")
    return cal.sessions_window(first_live, -(days + 1))[:-1]


def stored_counts(tickers: list[str], sessions: pd.DatetimeIndex) -> dict[pd.Timestamp, int]:
    """Bars stored per session (New York date) for `tickers`."""
    counts = read_from_db(
        "SELECT CAST(ts AT TIME ZONE :tz AS date) AS day, count(*) AS n FROM bars_1m "
        "WHERE ticker = ANY(CAST(:t AS text[])) AND ts >= :lo AND ts < :hi GROUP BY 1",
        {
            "tz": "America/New_York",
            "t": list(tickers),
            "lo": pd.Timestamp(xnys().session_open(sessions[0])),
            "hi": pd.Timestamp(xnys().session_close(sessions[-1])),
        },
    )
    return {pd.Timestamp(r.day): int(r.n) for r in counts.itertuples(index=False)}


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


def seed_history(
    days: int, settings: Settings | None = None, adjust: bool = True, progress: bool = True
) -> SeedReport:
    """Write `days` simulated sessions ending where the live clock starts; returns a report."""
    settings = settings or get_settings()
    market = make_source(settings, "simulated")
    assert isinstance(market, SimulatedMarket)
    tickers = settings.universe
    sessions = seed_sessions(market, days)
    have = stored_counts(tickers, sessions)
    report = SeedReport(len(sessions), first=str(sessions[0].date()), last=str(sessions[-1].date()))
    with _progress(len(sessions), progress) as tick:
        for session in sessions:
            bars = pd.concat([market.session_bars(t, session) for t in tickers], ignore_index=True)
            if have.get(session, 0) >= len(bars):
                report.skipped += 1
            else:
                report.bars_written += write_bars(bars, source=market.name, on_conflict="nothing")
            tick(str(session.date()))
    if adjust:
        span = (sessions[-1] - sessions[0]).days + 1
        assert market.clock is not None
        today = market.clock.start.tz_convert("America/New_York").date()
        run_daily_adjustment(market, tickers, today=today, lookback_days=span + 1, lookahead_days=0)
    log.info("seed history: %s", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.seed_history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--days", type=int, default=None, help="sessions (default: sim_history_days)"
    )
    parser.add_argument("--reset-clock", action="store_true", help="restart the simulated clock")
    parser.add_argument("--no-adjust", action="store_true", help="skip corporate actions")
    args = parser.parse_args(argv)
    setup_logging("workers.seed_history")
    settings = get_settings()
    days = args.days or settings.sim_history_days
    if days < 1:
        parser.error("--days must be at least 1")
    if args.reset_clock and reset_clock(settings.data_dir):
        log.info("simulated clock reset")
    report = seed_history(days, settings, adjust=not args.no_adjust)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
