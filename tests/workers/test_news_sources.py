"""News sources against recorded payloads over a local HTTP server: parsing, keys, tagging,
the request budget, and every bad answer turned into a clear error."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from config.market_clock import SessionClock
from tests.workers.context_http import RecordedServer, recorded_server_fixture  # noqa: F401
from workers.http_fetch import PayloadError
from workers.news_sources import NewsApiSource, RequestBudget, RssSource, SimulatedNewsSource
from workers.news_text import TickerTagger, article_key, batch_queries, normalise_url
from workers.sources.base import RateLimitError, SourceError
from workers.sources.simulated import SimulatedMarket

pytestmark = pytest.mark.no_db

UNIVERSE = "AAPL MSFT GOOGL AMZN META NVDA TSLA JPM V JNJ WMT PG XOM UNH HD MA BAC KO PEP DIS"
TICKERS = UNIVERSE.split()
NOW = pd.Timestamp("2024-05-08 12:00", tz="UTC")
SINCE = pd.Timestamp("2024-05-06 00:00", tz="UTC")


def newsapi(server: RecordedServer, budget: RequestBudget | None = None) -> NewsApiSource:
    src = NewsApiSource(TICKERS, "test-key", budget or RequestBudget(90))
    src.base_url = server.url("/v2/everything")
    return src


# --------------------------------------------------------------------------- keys and tags


def test_article_key_is_stable_across_tracking_params_and_hosts() -> None:
    a = "https://www.reuters.com/technology/story-2024/?utm_source=newsapi&id=7#top"
    b = "http://reuters.com/technology/story-2024?id=7"
    assert normalise_url(a) == normalise_url(b) == "https://reuters.com/technology/story-2024?id=7"
    assert article_key(a, "x", "t") == article_key(b, "y", "other title")
    assert article_key(None, "rss", "Apple  Beats", NOW) == article_key(
        None, "RSS", "apple beats", NOW
    )
    assert article_key(None, "rss", "Apple beats", NOW) != article_key(
        None, "rss", "Apple beats", NOW + pd.Timedelta(days=1)
    )


def test_tagger_matches_names_symbols_and_cashtags_only() -> None:
    tagger = TickerTagger(TICKERS)
    assert tagger.tags("Apple and Microsoft rally") == ["AAPL", "MSFT"]
    assert tagger.tags("Shares of $V rose; (NYSE: MA) too") == ["V", "MA"]
    assert tagger.tags("TSLA falls") == ["TSLA"]
    # short symbols as ordinary words, and names inside other words, do not count
    assert tagger.tags("V shaped recovery in MA and HD video; pineapple prices") == []
    assert tagger.tags("Procter & Gamble and Johnson & Johnson") == ["JNJ", "PG"]


def test_universe_fits_in_few_queries_under_the_length_limit() -> None:
    batches = batch_queries(TICKERS, 500)
    assert len(batches) == 1
    assert sorted(t for group, _ in batches for t in group) == sorted(TICKERS)
    small = batch_queries(TICKERS, 120)
    assert len(small) > 2
    assert all(len(q) <= 120 for _, q in small)
    assert [t for group, _ in small for t in group] == TICKERS


# --------------------------------------------------------------------------- News API


def test_newsapi_parses_tags_and_dedups(recorded_server: RecordedServer) -> None:
    recorded_server.add_file("/v2/everything", "news_newsapi_everything.json")
    rows = newsapi(recorded_server).fetch(SINCE, NOW)
    by_title = rows.groupby("title")["ticker"].apply(sorted).to_dict()
    assert by_title == {
        "Apple and Microsoft lead tech rally as AI spending climbs": ["AAPL", "MSFT"],
        "Tesla shares plunge after delivery miss": ["TSLA"],
        "Visa earnings beat estimates as cross-border volume grows": ["V"],
    }
    # the same Reuters story under two URLs is one article: one key, one row per ticker
    reuters = rows[rows["title"].str.startswith("Apple")]
    assert reuters["article_key"].nunique() == 1 and len(reuters) == 2
    assert str(rows["published_at"].dt.tz) == "UTC"
    visa = rows[rows["ticker"] == "V"].iloc[0]
    assert visa["published_at"] == pd.Timestamp("2024-05-07 21:05", tz="UTC")
    assert visa["source"] == "newsapi:Investopedia"
    # the request: one OR-query, the key in a header (never in the URL), since as from=
    (path, query, headers) = recorded_server.requests[0]
    assert " OR " in query["q"][0] and query["from"] == ["2024-05-06T00:00:00Z"]
    assert headers["X-Api-Key"] == "test-key"
    assert "test-key" not in str(query)


def test_newsapi_drops_articles_missing_fields_and_logs(
    recorded_server: RecordedServer, caplog: pytest.LogCaptureFixture
) -> None:
    recorded_server.add_file("/v2/everything", "news_newsapi_missing_fields.json")
    with caplog.at_level(logging.ERROR):
        rows = newsapi(recorded_server).fetch(SINCE, NOW)
    assert rows["ticker"].tolist() == ["NVDA"]
    assert rows["title"].notna().all() and rows["published_at"].notna().all()
    assert "dropped 3 article(s)" in caplog.text


@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        ("news_newsapi_malformed.json", 200, PayloadError),
        ("news_newsapi_no_articles.json", 200, PayloadError),
        ("news_newsapi_rate_limited.json", 429, RateLimitError),
        ("news_newsapi_rate_limited.json", 500, SourceError),
        ("news_newsapi_rate_limited.json", 401, PayloadError),
    ],
)
def test_newsapi_bad_answers_raise(
    recorded_server: RecordedServer, name: str, status: int, error: type[Exception]
) -> None:
    recorded_server.add_file("/v2/everything", name, status=status)
    with pytest.raises(error):
        newsapi(recorded_server).fetch(SINCE, NOW)


class FakeClock:
    def __init__(self, start: pd.Timestamp) -> None:
        self.now = start

    def __call__(self) -> pd.Timestamp:
        return self.now


def test_newsapi_429_spends_the_day_and_budget_spreads_requests(
    recorded_server: RecordedServer, tmp_path
) -> None:
    state = tmp_path / "budget.json"
    clock = FakeClock(NOW)
    recorded_server.add_file("/v2/everything", "news_newsapi_everything.json")
    src = newsapi(recorded_server, RequestBudget(96, state, clock))  # one request per 15 min
    assert not src.fetch(SINCE, NOW).empty
    clock.now = NOW + pd.Timedelta(minutes=10)
    assert src.fetch(SINCE, NOW).empty  # too soon: no request
    assert recorded_server.hits("/v2/everything") == 1
    clock.now = NOW + pd.Timedelta(minutes=15)
    assert not src.fetch(SINCE, NOW).empty
    assert recorded_server.hits("/v2/everything") == 2
    assert RequestBudget(96, state, clock).used == 2  # a restart keeps the count
    recorded_server.routes.clear()
    recorded_server.add_file("/v2/everything", "news_newsapi_rate_limited.json", status=429)
    clock.now = NOW + pd.Timedelta(minutes=30)
    with pytest.raises(RateLimitError):
        src.fetch(SINCE, NOW)
    clock.now = NOW + pd.Timedelta(hours=5)
    assert src.fetch(SINCE, NOW).empty  # spent until midnight UTC
    assert recorded_server.hits("/v2/everything") == 3
    clock.now = pd.Timestamp("2024-05-09 00:01", tz="UTC")
    assert src.budget.acquire()


def test_a_failed_request_counts_but_its_retry_need_not_wait(
    recorded_server: RecordedServer,
) -> None:
    clock = FakeClock(NOW)
    recorded_server.add("/v2/everything", "Bad Gateway", status=502)
    recorded_server.add_file("/v2/everything", "news_newsapi_everything.json")
    src = newsapi(recorded_server, RequestBudget(90, None, clock))
    with pytest.raises(SourceError):
        src.fetch(SINCE, NOW)
    assert not src.fetch(SINCE, NOW).empty  # the retry, at once
    assert src.budget.used == 2
    assert src.budget.seconds_until_next() == pytest.approx(960.0)


def test_budget_never_exceeds_the_daily_allowance() -> None:
    clock = FakeClock(NOW)
    budget = RequestBudget(90, None, clock)
    granted = 0
    for t in pd.date_range("2024-05-08", periods=24 * 60, freq="min", tz="UTC"):
        clock.now = t
        granted += budget.acquire()
    assert granted == 90
    assert budget.spacing_s == pytest.approx(960.0)


# --------------------------------------------------------------------------- RSS


def rss(server: RecordedServer, tickers: list[str]) -> RssSource:
    src = RssSource(tickers)
    src.url_template = server.url("/rss/2.0/headline") + "?s={ticker}"
    src.sleep = lambda _s: None
    return src


def test_rss_parses_feeds_and_tags_each_with_its_ticker(
    recorded_server: RecordedServer, caplog: pytest.LogCaptureFixture
) -> None:
    recorded_server.add_file("/rss/2.0/headline", "news_rss_yahoo_aapl.xml")
    recorded_server.add_file("/rss/2.0/headline", "news_rss_yahoo_msft.xml")
    with caplog.at_level(logging.ERROR):
        rows = rss(recorded_server, ["AAPL", "MSFT"]).fetch(SINCE, NOW)
    assert "dropped 1 item(s)" in caplog.text  # the undated item
    shared = rows[rows["title"].str.contains("two ways")]
    assert sorted(shared["ticker"]) == ["AAPL", "MSFT"] and shared["article_key"].nunique() == 1
    probe = rows[rows["title"].str.contains("probe")].iloc[0]
    assert probe["published_at"] == pd.Timestamp("2024-05-06 13:10", tz="UTC")  # -0400 -> UTC
    assert len(rows) == 5


@pytest.mark.parametrize("name", ["news_rss_yahoo_empty.xml", "news_rss_malformed.xml"])
def test_rss_bad_feed_is_logged_and_others_still_served(
    recorded_server: RecordedServer, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    recorded_server.add_file("/rss/2.0/headline", name, content_type="application/rss+xml")
    recorded_server.add_file("/rss/2.0/headline", "news_rss_yahoo_msft.xml")
    with caplog.at_level(logging.ERROR):
        rows = rss(recorded_server, ["AAPL", "MSFT"]).fetch(SINCE, NOW)
    assert set(rows["ticker"]) == {"MSFT"}
    assert "rss AAPL" in caplog.text


def test_rss_every_feed_failing_raises(recorded_server: RecordedServer) -> None:
    recorded_server.add("/rss/2.0/headline", "Internal Server Error", status=500)
    with pytest.raises(SourceError, match="every feed failed"):
        rss(recorded_server, ["AAPL", "MSFT"]).fetch(SINCE, NOW)


# --------------------------------------------------------------------------- simulated


def test_simulated_news_follows_market_events_up_to_the_clock() -> None:
    market = SimulatedMarket(seed=42)
    clock = SessionClock(pd.Timestamp("2024-03-15 15:00", tz="UTC"), speed=1.0)
    src = SimulatedNewsSource(TICKERS, market, clock)
    now = src.now()
    rows = src.fetch(now - pd.Timedelta(days=7), now)
    assert not rows.empty and (rows["published_at"] <= now).all()
    expected = pd.concat(
        [
            market.news_events(t, s)
            for t in TICKERS
            for s in pd.to_datetime(["2024-03-11", "2024-03-12", "2024-03-13", "2024-03-14"])
        ]
    )
    assert set(expected["headline"]) <= set(rows["title"])
    again = src.fetch(now - pd.Timedelta(days=7), now)
    assert again["article_key"].tolist() == rows["article_key"].tolist()  # deterministic keys


def test_rss_every_feed_empty_is_not_retried(recorded_server: RecordedServer) -> None:
    recorded_server.add_file("/rss/2.0/headline", "news_rss_yahoo_empty.xml")
    with pytest.raises(PayloadError, match="every feed failed"):
        rss(recorded_server, ["AAPL", "MSFT"]).fetch(SINCE, NOW)


def test_rss_stops_between_feeds_on_shutdown(recorded_server: RecordedServer) -> None:
    recorded_server.add_file("/rss/2.0/headline", "news_rss_yahoo_aapl.xml")
    src = rss(recorded_server, ["AAPL", "MSFT", "GOOGL"])
    src.sleep = lambda _s: True  # Shutdown.wait returns True once a stop was requested
    rows = src.fetch(SINCE, NOW)
    assert set(rows["ticker"]) == {"AAPL"}
    assert recorded_server.hits("/rss/2.0/headline") == 1
