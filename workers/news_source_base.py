"""The base of every news source (`NewsSource`) and the shape of its answer.

Every source returns articles as a DataFrame with `ARTICLE_COLUMNS`, one row per (article,
ticker), publication times in UTC, text cleaned (`NewsSource.articles_frame`). An article the
provider sent without a title, a link or a parseable publication time is left out
(`article_problem`), and one whose text had to be cleaned is kept cleaned; either is noted in
`source.flags` for the ingestor to log and record, and the rest of the answer is used.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import requests

from db.input_flags import InputFlag
from workers.http_fetch import http_get, new_session
from workers.news_text import ARTICLE_COLUMNS, clean_articles, empty_articles, scrub, shown, to_utc


@dataclass(frozen=True)
class NewsLimits:
    """What a provider allows: tickers per request, requests per day, spacing of requests."""

    max_tickers_per_request: int
    daily_request_budget: int | None
    min_request_interval_s: float


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Clean article rows as a frame with `ARTICLE_COLUMNS`, de-duplicated on (article_key,
    ticker)."""
    if not rows:
        return empty_articles()
    frame = pd.DataFrame(rows, columns=ARTICLE_COLUMNS)
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True)
    return frame.drop_duplicates(["article_key", "ticker"]).reset_index(drop=True)


def article_problem(title: object, url: object, published: object) -> tuple[str, str] | None:
    """Why a provider's article cannot be stored, as (reason, detail), or None: it needs a
    title, a link and a parseable publication time."""
    if not isinstance(title, str) or not title.strip():
        return "no_title", f"title {shown(title)}"
    if not isinstance(url, str) or not url.strip():
        return "no_url", f"url {shown(url)}"
    if to_utc(published) is None:
        return "no_published_at", f"publication time {shown(published)}"
    return None


class NewsSource(ABC):
    """One kind of news feed for a ticker universe."""

    name: str = "base"
    limits = NewsLimits(500, None, 0.0)

    def __init__(self, tickers: Sequence[str]) -> None:
        self.tickers = list(tickers)
        # pauses between requests; the service swaps in Shutdown.wait (True = stop now)
        self.sleep: Callable[[float], object] = time.sleep
        self.flags: list[InputFlag] = []  # articles cleaned or left out since take_flags()

    @abstractmethod
    def fetch(self, since: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        """Articles published after `since` (as far as the provider allows) up to `now`."""

    def now(self) -> pd.Timestamp:
        """The source's clock (wall clock; the simulated source runs on the session clock)."""
        return pd.Timestamp.now(tz="UTC")

    def reject(self, item: str, reason: str, detail: str) -> None:
        """Leave an article out (`item`: its link, else its title) with a `dropped` flag."""
        item = scrub(item)[:2_048] or "?"
        self.flags.append(InputFlag("news", item, "dropped", reason, f"{self.name}: {detail}"))

    def articles_frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Rows as a frame (`frame_of`), cleaned first (`clean_articles`), with their flags."""
        clean, flags = clean_articles(rows)
        self.flags += flags
        return frame_of(clean)

    def take_flags(self) -> list[InputFlag]:
        """The flags of the articles cleaned or left out since the last call (the ingestor
        logs and records them)."""
        taken, self.flags = self.flags, []
        return taken


class HttpNewsSource(NewsSource):
    """A provider reached over HTTP with `requests` (status codes mapped by `http_get`)."""

    timeout_s = 20.0

    def __init__(self, tickers: Sequence[str], session: requests.Session | None = None) -> None:
        super().__init__(tickers)
        self.session = session or new_session()

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return http_get(self.session, url, who=self.name, timeout_s=self.timeout_s, **kwargs)
