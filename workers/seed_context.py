"""Seed the demo's context history: simulated news (scored) and macro series.

    python -m workers.seed_context [--days N]

Stores the news of the N sessions before the shared simulated clock's start, scored by the
sentiment model, and the simulated macro series released by that start (from a year before
the first session, so monthly figures exist from the first bar on). Idempotent: a second run
stores nothing new. The news ingestor then carries on from where the seed ends.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import pandas as pd
from rich.progress import Progress

from config.cli import setup_logging
from config.market_calendar import xnys
from config.settings import get_settings
from db.ops import job_run
from workers.macro_ingestor import ingest_all
from workers.macro_sources import SimulatedMacroSource
from workers.news_ingestor import store_articles
from workers.news_sources import SimulatedNewsSource, simulated_market
from workers.sentiment import SentimentModel, load_sentiment_model

log = logging.getLogger("workers.seed_context")

JOB = "seed_context"
MACRO_LEAD = pd.Timedelta(days=400)


def sessions_before(start: pd.Timestamp, days: int) -> pd.DatetimeIndex:
    """The last `days` XNYS sessions that opened before `start`."""
    cal = xnys()
    window = cal.sessions_in_range(
        (start - pd.Timedelta(days=2 * days + 14)).tz_convert(None).normalize(),
        start.tz_convert(None).normalize(),
    )
    opened = [s for s in window if cal.session_open(s) < start]
    return pd.DatetimeIndex(opened[-days:])


def seed_news(
    source: SimulatedNewsSource,
    model: SentimentModel,
    sessions: pd.DatetimeIndex,
    end: pd.Timestamp,
    progress: Progress | None = None,
    delay: pd.Timedelta = pd.Timedelta(minutes=5),
) -> int:
    """Store each session's simulated news published before `end`, each known `delay` after
    its publication (as if it had been collected live); returns rows written."""
    cal = xnys()
    task = progress.add_task("news", total=len(sessions)) if progress else None
    written = 0
    for session in sessions:
        since = cal.session_open(session) - pd.Timedelta(minutes=1)
        until = min(cal.session_close(session), end - pd.Timedelta(microseconds=1))
        written += store_articles(source.fetch(since, until), model, seed_delay=delay)
        if progress is not None and task is not None:
            progress.update(task, advance=1, description=f"news {session:%Y-%m-%d}")
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workers.seed_context",
        description="Seed simulated news (scored) and macro history for the demo (idempotent).",
    )
    parser.add_argument(
        "--days",
        type=int,
        help="sessions of news before the clock's start (default: SIM_HISTORY_DAYS)",
    )
    args = parser.parse_args(argv)
    if args.days is not None and args.days < 1:
        parser.error("--days must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("workers.seed_context")
    settings = get_settings()
    days = args.days or settings.sim_history_days
    market = simulated_market(settings)
    assert market.clock is not None
    start = market.clock.start
    sessions = sessions_before(start, days)
    model = load_sentiment_model(settings)
    source = SimulatedNewsSource(settings.universe, market, market.clock)
    first = xnys().session_open(sessions[0])
    log.info(
        "seeding %d sessions (%s .. %s) of news and macro up to the clock's start %s",
        len(sessions),
        sessions[0].date(),
        sessions[-1].date(),
        start,
    )
    with job_run(JOB) as run, Progress(transient=False) as progress:
        delay = pd.Timedelta(minutes=settings.news_seed_delay_min)
        news_rows = seed_news(source, model, sessions, start, progress, delay)
        task = progress.add_task("macro", total=1)
        macro_rows, failed = ingest_all(
            SimulatedMacroSource(settings.sim_seed), start=(first - MACRO_LEAD).date(), now=start
        )
        progress.update(task, advance=1)
        run.note(f"{news_rows} news row(s), {sum(macro_rows.values())} macro row(s)")
        if failed:
            raise RuntimeError(f"macro series failed: {failed}")
    log.info(
        "seeded %d news row(s) (model %s) and %d macro row(s)",
        news_rows,
        model.name,
        sum(macro_rows.values()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
