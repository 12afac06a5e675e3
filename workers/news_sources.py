"""News sources: a thin subclass of `workers.news_source_base.NewsSource` per provider, and
`make_news_source`, the configured one.

Errors: `SourceError` / `RateLimitError` (worth retrying with back-off) and `PayloadError` (the
provider answered with something unusable; nothing of that answer is kept). What every source
returns, and what it leaves out, is described in `workers.news_source_base`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import feedparser
import pandas as pd
import requests

from config.market_calendar import sessions_between
from config.market_clock import SessionClock
from config.settings import Settings, get_settings
from core.files import write_json_atomic
from workers.http_fetch import PayloadError
from workers.news_source_base import HttpNewsSource, NewsLimits, NewsSource, article_problem
from workers.news_text import TickerTagger, article_key, batch_queries, empty_articles, to_utc
from workers.sources.base import RateLimitError, SourceError
from workers.sources.simulated import SimulatedMarket

log = logging.getLogger(__name__)


class RequestBudget:
    """A daily request allowance spread evenly over the day (UTC), kept across restarts.

    It runs on the wall clock (`clock`), whatever clock the news itself runs on.
    """

    def __init__(
        self,
        per_day: int,
        state_path: Path | None = None,
        clock: Callable[[], pd.Timestamp] = lambda: pd.Timestamp.now(tz="UTC"),
    ) -> None:
        self.per_day = per_day
        self.spacing_s = 86_400.0 / per_day
        self.state_path = state_path
        self.clock = clock
        self.day, self.used, self.last_at, self._previous_at = "", 0, 0.0, 0.0
        if state_path is not None and state_path.exists():
            try:
                state = json.loads(state_path.read_text())
                self.day, self.used, self.last_at = state["day"], state["used"], state["last_at"]
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable request budget state %s", state_path)

    def _roll(self, now: pd.Timestamp) -> None:
        day = now.strftime("%Y-%m-%d")
        if day != self.day:
            self.day, self.used = day, 0

    def seconds_until_next(self) -> float:
        now = self.clock()
        self._roll(now)
        if self.used >= self.per_day:
            return float((now.normalize() + pd.Timedelta(days=1) - now).total_seconds())
        return float(max(0.0, self.last_at + self.spacing_s - now.timestamp()))

    def acquire(self) -> bool:
        """Take one request if the budget allows it now."""
        if self.seconds_until_next() > 0:
            return False
        self.used += 1
        self._previous_at, self.last_at = self.last_at, self.clock().timestamp()
        self._save()
        return True

    def failed(self) -> None:
        """The last request failed in transit: it counts, but a retry need not wait."""
        self.last_at = self._previous_at
        self._save()

    def exhaust(self) -> None:
        """The provider said the quota is spent: no more requests today."""
        self._roll(self.clock())
        self.used = self.per_day
        self._save()

    def _save(self) -> None:
        if self.state_path is not None:
            state = {"day": self.day, "used": self.used, "last_at": self.last_at}
            write_json_atomic(self.state_path, state)


class NewsApiSource(HttpNewsSource):
    """newsapi.org /v2/everything: the universe in a few OR-queries, within a daily budget."""

    name = "newsapi"
    base_url = "https://newsapi.org/v2/everything"
    max_query_chars = 500  # the provider's limit on `q`
    limits = NewsLimits(20, 100, 0.0)

    def __init__(
        self,
        tickers: Sequence[str],
        api_key: str,
        budget: RequestBudget,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(tickers, session)
        if not api_key:
            raise ValueError("the News API source needs NEWS_API_KEY (settings.news_api_key)")
        self.session.headers["X-Api-Key"] = api_key
        self.budget = budget
        self.batches = batch_queries(self.tickers, self.max_query_chars)
        self.tagger = TickerTagger(self.tickers)
        self._cursor = 0
        self._since: dict[int, pd.Timestamp] = {}

    def fetch(self, since: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        frames = []
        for _ in range(len(self.batches)):
            if not self.budget.acquire():
                break
            i = self._cursor
            frames.append(self._fetch_batch(i, self._since.get(i, since)))
            self._since[i] = now - pd.Timedelta(minutes=30)  # overlap; duplicates are dropped
            self._cursor = (i + 1) % len(self.batches)
        if not frames:
            return empty_articles()
        return self.articles_frame([r for f in frames for r in f.to_dict("records")])

    def _fetch_batch(self, i: int, since: pd.Timestamp) -> pd.DataFrame:
        _, query = self.batches[i]
        params = {
            "q": query,
            "searchIn": "title,description",
            "from": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sortBy": "publishedAt",
            "language": "en",
            "pageSize": 100,
        }
        try:
            resp = self.get(self.base_url, params=params)
        except RateLimitError:
            self.budget.exhaust()
            raise
        except SourceError:
            self.budget.failed()
            raise
        return self.parse(resp.content)

    def parse(self, content: bytes) -> pd.DataFrame:
        """Rows from an /everything response; the whole answer is refused if malformed."""
        try:
            body = json.loads(content)
        except ValueError as exc:
            raise PayloadError(f"newsapi: malformed JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("status") != "ok":
            msg = body.get("message") if isinstance(body, dict) else None
            raise PayloadError(f"newsapi: error response: {msg or str(body)[:200]}")
        articles = body.get("articles")
        if not isinstance(articles, list):
            raise PayloadError("newsapi: response has no 'articles' list")
        rows, dropped = [], 0
        for n, item in enumerate(articles):
            if isinstance(item, dict) and item.get("title") == "[Removed]":
                continue  # the provider's placeholder for a withdrawn article
            fields = item if isinstance(item, dict) else {"title": None}
            title, url = fields.get("title"), fields.get("url")
            problem = article_problem(title, url, fields.get("publishedAt"))
            if problem is None:
                rows.extend(self._rows(fields))
                continue
            dropped += 1
            name = next((v for v in (url, title) if isinstance(v, str) and v.strip()), None)
            self.reject(name or f"articles[{n}]", *problem)
        if dropped:
            log.error("newsapi: dropped %d article(s) missing title, url or publishedAt", dropped)
        return self.articles_frame(rows)

    def _rows(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per ticker the article is about (an article `article_problem` passed)."""
        title, url = str(item["title"]), str(item["url"])
        published = to_utc(item.get("publishedAt"))
        summary = item.get("description") if isinstance(item.get("description"), str) else None
        outlet = (
            (item.get("source") or {}).get("name") if isinstance(item.get("source"), dict) else None
        )
        source = f"newsapi:{outlet}" if outlet else "newsapi"
        key = article_key(url, source, title, published)
        return [
            {
                "article_key": key,
                "ticker": t,
                "published_at": published,
                "source": source,
                "title": title.strip(),
                "url": url,
                "summary": summary,
            }
            for t in self.tagger.tags(title, summary)
        ]


class RssSource(HttpNewsSource):
    """Keyless per-ticker headline feeds (Yahoo Finance RSS), parsed with feedparser."""

    name = "rss"
    url_template = (
        "https://feeds.finance.yahoo.com/rss/2.0/headline?s={ticker}&region=US&lang=en-US"
    )
    limits = NewsLimits(1, None, 1.0)

    def fetch(self, since: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        failures: dict[str, Exception] = {}
        for n, ticker in enumerate(self.tickers):
            if n and self.sleep(self.limits.min_request_interval_s):
                break  # shutdown requested: keep what was fetched
            try:
                resp = self.get(self.url_template.format(ticker=ticker))
                rows.extend(self.parse(ticker, resp.content))
            except (SourceError, PayloadError) as exc:
                log.error("rss %s: %s", ticker, exc)
                failures[ticker] = exc
        if failures and len(failures) == len(self.tickers):
            transient = any(isinstance(e, SourceError) for e in failures.values())
            kind = SourceError if transient else PayloadError  # only transient ones are retried
            raise kind(f"rss: every feed failed ({', '.join(failures)})")
        return self.articles_frame(rows)

    def parse(self, ticker: str, content: bytes) -> list[dict[str, Any]]:
        """Rows of one ticker's feed; a malformed or empty feed raises PayloadError."""
        feed = feedparser.parse(content)
        if feed.bozo and not feed.entries:
            raise PayloadError(f"malformed feed: {feed.get('bozo_exception')}")
        if not feed.entries:
            raise PayloadError("empty feed (no items)")
        rows, dropped = [], 0
        for n, entry in enumerate(feed.entries):
            title, url = entry.get("title"), entry.get("link")
            published = to_utc(entry.get("published"))
            problem = article_problem(title, url, entry.get("published"))
            if problem is not None:
                self.reject(str(url or title or f"{ticker} item {n}"), *problem)
                dropped += 1
                continue
            rows.append(
                {
                    "article_key": article_key(url, "rss", title, published),
                    "ticker": ticker,
                    "published_at": published,
                    "source": "rss",
                    "title": title.strip(),
                    "url": url,
                    "summary": entry.get("summary") or None,
                }
            )
        if dropped:
            log.error("rss %s: dropped %d item(s) missing title, link or pubDate", ticker, dropped)
        return rows


class SimulatedNewsSource(NewsSource):
    """Headlines of the simulated market's news events, published up to the source's clock."""

    name = "simulated"

    def __init__(
        self, tickers: Sequence[str], market: SimulatedMarket, clock: SessionClock | None = None
    ) -> None:
        super().__init__(tickers)
        self.market = market
        self.clock = clock

    def now(self) -> pd.Timestamp:
        return self.clock.now() if self.clock is not None else super().now()

    def fetch(self, since: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        sessions = sessions_between(
            since.tz_convert(None).normalize(), now.tz_convert(None).normalize()
        )
        rows = []
        for session in sessions:
            for ticker in self.tickers:
                events = self.market.news_events(ticker, session)
                for ev in events.itertuples(index=False):
                    if not since < ev.published_at <= now:
                        continue
                    rows.append(
                        {
                            "article_key": article_key(
                                None, self.name, ev.headline, ev.published_at
                            ),
                            "ticker": ticker,
                            "published_at": ev.published_at,
                            "source": self.name,
                            "title": ev.headline,
                            "url": None,
                            "summary": None,
                        }
                    )
        return self.articles_frame(rows)


def simulated_market(settings: Settings) -> SimulatedMarket:
    """The simulated market on the clock every process shares (`workers.sources.make_source`)."""
    from workers.sources import make_source

    market = make_source(settings, "simulated")
    assert isinstance(market, SimulatedMarket)
    return market


def make_news_source(name: str | None = None, settings: Settings | None = None) -> NewsSource:
    """The configured news source (`settings.news_source` unless `name` is given)."""
    settings = settings or get_settings()
    name = name or settings.news_source
    if name == "simulated":
        market = simulated_market(settings)
        # on the simulated market's clock when the prices are simulated too; beside live or
        # replayed prices, simulated headlines are published on the wall clock
        clock = market.clock if settings.market_source == "simulated" else None
        return SimulatedNewsSource(settings.universe, market, clock)
    if name == "newsapi":
        key = settings.news_api_key.get_secret_value() if settings.news_api_key else ""
        budget = RequestBudget(
            settings.news_daily_request_budget, settings.data_dir / "news_api_budget.json"
        )
        return NewsApiSource(settings.universe, key, budget)
    if name == "rss":
        return RssSource(settings.universe)
    raise ValueError(f"unknown news source '{name}'; choose simulated, newsapi or rss")
