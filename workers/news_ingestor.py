"""The news ingestor: a continuous service that stores scored, de-duplicated, ticker-tagged news.

    python -m workers.news_ingestor [--source simulated|newsapi|rss] [--once]

Each cycle asks the source for articles published since the last cycle (their text cleaned:
`workers.news_text.clean_articles`), drops those already stored (by article key and ticker),
scores the new ones in batches with the sentiment model loaded once at start-up, and writes them
in one transaction. An article the source cleaned or left out is logged and recorded in
`input_flags`; the rest of the batch is stored and the watermark moves past it. Source errors
are retried with jittered back-off; any other error is logged and the next cycle tries again;
SIGTERM / SIGINT stop it between cycles. A heartbeat row (`news_ingestor`) records every cycle.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import pandas as pd
import psycopg2
import sqlalchemy.exc

from config.cli import job_parser, setup_logging
from config.settings import get_settings
from core.timeutil import utc_now
from db.context import newest_article_time, stored_article_pairs
from db.input_flags import InputFlag, record_input_flags
from db.ops import heartbeat
from db.writes import write_to_db
from workers.common import Shutdown, with_retries
from workers.news_source_base import NewsSource
from workers.news_sources import make_news_source
from workers.news_text import shown
from workers.sentiment import SentimentModel, article_texts, load_sentiment_model
from workers.sources.base import SourceError

log = logging.getLogger("workers.news_ingestor")

WORKER = "news_ingestor"
FIRST_LOOKBACK = pd.Timedelta(days=4)  # first cycle on an empty table: a few sessions back
MAX_CATCH_UP = pd.Timedelta(days=30)  # never ask for more than this after a long stop
# What one row can do to a batch write: text the driver cannot send (NUL, lone surrogates), a
# value the table refuses. A lost connection is none of these: it fails the cycle.
ROW_ERRORS = (
    ValueError,
    psycopg2.DataError,
    psycopg2.IntegrityError,
    sqlalchemy.exc.DataError,
    sqlalchemy.exc.IntegrityError,
)


def score_articles(articles: pd.DataFrame, model: SentimentModel) -> pd.DataFrame:
    """Add `sentiment` and `sentiment_model`; each distinct article is scored once."""
    out = articles.copy()
    unique = out.drop_duplicates("article_key")
    scores = model.score(article_texts(unique["title"].tolist(), unique["summary"].tolist()))
    by_key = dict(zip(unique["article_key"], scores, strict=True))
    out["sentiment"] = out["article_key"].map(by_key).astype("float64")
    out["sentiment_model"] = model.name
    return out


def store_articles(
    articles: pd.DataFrame,
    model: SentimentModel,
    *,
    arrived_at: pd.Timestamp | None = None,
    seed_delay: pd.Timedelta | None = None,
    flags: Sequence[InputFlag] = (),
) -> int:
    """Score and write the articles not stored yet; returns rows written.

    Each row records when StockPulse could first have known the article (`available_at`), the
    time features join it on: for articles collected live, the later of publication and
    `arrived_at` (the source's clock: the market clock for simulated news); for seeded history,
    publication plus `seed_delay`. The source's `flags` (articles it cleaned or left out) are
    logged and recorded in `input_flags` before the write; `write_articles` keeps a bad row the
    cleaning missed from costing the rest of the batch."""
    if (arrived_at is None) == (seed_delay is None):
        raise ValueError("store_articles needs arrived_at (live) or seed_delay (seeding)")
    record_flags(flags)
    if articles.empty:
        return 0
    seen = stored_article_pairs(articles["article_key"].unique().tolist())
    pairs = zip(articles["article_key"], articles["ticker"], strict=True)
    fresh = articles[[p not in seen for p in pairs]]
    if fresh.empty:
        return 0
    scored = score_articles(fresh, model)
    scored["ingested_at"] = utc_now()
    published = pd.to_datetime(scored["published_at"], utc=True)
    if arrived_at is not None:
        scored["available_at"] = published.where(published >= arrived_at, arrived_at)
    else:
        assert seed_delay is not None
        scored["available_at"] = published + seed_delay
    written, failed = write_articles(scored)
    record_flags(failed)
    return written


def write_articles(rows: pd.DataFrame) -> tuple[int, list[InputFlag]]:
    """Write scored article rows in one transaction; returns rows written and the articles
    dropped.

    Cleaning makes every row storable, so a batch write that still fails on a row's data
    (`ROW_ERRORS`) is retried article by article, each in its own transaction: the articles the
    database takes are stored and each one it refuses is dropped with a `store_failed` flag. Any
    other error (a lost connection) propagates and the cycle fails as a whole."""
    try:
        return write_to_db(rows, table="news_articles", on_conflict="nothing"), []
    except ROW_ERRORS as exc:
        log.warning("news batch write failed (%s); storing article by article", shown(exc, 300))
    written, failed = 0, []
    for key, article in rows.groupby("article_key", sort=False):
        try:
            written += write_to_db(article, table="news_articles", on_conflict="nothing")
        except ROW_ERRORS as exc:
            first = article.iloc[0]
            link = first["url"] if isinstance(first["url"], str) else first["title"]
            where = f"{shown(first['source'], 80)} {shown(link, 200)}"
            detail = f"{where}: {type(exc).__name__}: {shown(str(exc), 300)}"
            failed.append(InputFlag("news", str(key), "dropped", "store_failed", detail))
    return written, failed


def record_flags(flags: Sequence[InputFlag]) -> None:
    """Record article flags in `input_flags`; each one recorded for the first time is logged
    as a warning (one a later fetch serves again, at debug level)."""
    for flag, new in zip(flags, record_input_flags(flags), strict=True):
        log.log(
            logging.WARNING if new else logging.DEBUG,
            "news: %s article %s (%s): %s",
            flag.action,
            flag.item_key,
            flag.reason,
            flag.detail,
        )


class NewsIngestor:
    """One source, one model, one watermark; `poll_once` is a full fetch-score-store cycle."""

    def __init__(
        self,
        source: NewsSource,
        model: SentimentModel,
        *,
        retry_attempts: int = 4,
        max_wait_s: float = 15.0,  # back-off sleeps delay a shutdown; supervisord waits 30 s
    ) -> None:
        self.source = source
        self.model = model
        self.since: pd.Timestamp | None = None
        self._fetch = with_retries((SourceError,), retry_attempts, max_wait_s, log)(source.fetch)

    def _initial_since(self, now: pd.Timestamp) -> pd.Timestamp:
        last = newest_article_time(self.source.name)
        if last is None:
            return now - FIRST_LOOKBACK
        return max(last, now - MAX_CATCH_UP)

    def poll_once(self) -> int:
        """Fetch, de-duplicate, score and store; the watermark moves only after a good write."""
        now = self.source.now()
        since = self.since if self.since is not None else self._initial_since(now)
        articles = self._fetch(since, now)
        flags = self.source.take_flags()
        written = store_articles(articles, self.model, arrived_at=now, flags=flags)
        self.since = now
        log.info(
            "%s: %d article row(s) fetched, %d new stored (up to %s)",
            self.source.name,
            len(articles),
            written,
            now.strftime("%Y-%m-%d %H:%M"),
        )
        return written

    def run(
        self,
        shutdown: Shutdown,
        interval_s: float,
        *,
        max_cycles: int | None = None,
    ) -> bool:
        """Cycle until shutdown (or `max_cycles`); True when the last cycle succeeded."""
        self.source.sleep = shutdown.wait
        cycles, ok = 0, True
        while not shutdown.requested:
            try:
                written = self.poll_once()
                details: dict[str, object] = {"stored": written}
                ok, status = True, "ok"
            except Exception as exc:  # the service must outlive any single failure
                log.exception("news cycle failed (%s); the next cycle retries", self.source.name)
                details = {"error": f"{type(exc).__name__}: {exc}"}
                ok, status = False, "error"
            self._beat(status, **details)
            cycles += 1
            if (max_cycles is not None and cycles >= max_cycles) or shutdown.wait(interval_s):
                break
        if shutdown.signal_name:
            log.info("news ingestor stopping on %s", shutdown.signal_name)
        return ok

    def _beat(self, status: str, **details: object) -> None:
        try:
            heartbeat(
                WORKER,
                status,
                source=self.source.name,
                model=self.model.name,
                since=None if self.since is None else self.since.isoformat(),
                **details,
            )
        except Exception:
            log.exception("could not record the heartbeat")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = job_parser(
        "workers.news_ingestor",
        "Continuously ingest news, score sentiment and store it (UTC, per ticker).",
    )
    parser.add_argument(
        "--source",
        choices=["simulated", "newsapi", "rss"],
        help="news source (default: settings.news_source / NEWS_SOURCE)",
    )
    parser.add_argument("--once", action="store_true", help="run one cycle and exit")
    parser.add_argument(
        "--interval", type=float, help="seconds between cycles (default: NEWS_POLL_INTERVAL_S)"
    )
    parser.add_argument("--max-cycles", type=int, help="stop after this many cycles")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("workers.news_ingestor")
    settings = get_settings()
    shutdown = Shutdown().install()
    model = load_sentiment_model(settings)  # once per process, before the loop
    try:
        source = make_news_source(args.source, settings)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    log.info("news ingestor: source %s, model %s", source.name, model.name)
    ingestor = NewsIngestor(source, model)
    interval = args.interval if args.interval is not None else settings.news_poll_interval_s
    ok = ingestor.run(shutdown, interval, max_cycles=1 if args.once else args.max_cycles)
    return 0 if ok or not args.once else 1


if __name__ == "__main__":
    sys.exit(main())
