"""The news service on the real database: de-duplication, ticker tagging, scores with the model
name, the model loaded once per process, bad payloads leaving nothing behind, heartbeats."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from config.market_clock import SessionClock
from config.settings import get_settings
from db.reads import read_from_db
from tests.workers.context_http import RecordedServer, recorded_server_fixture  # noqa: F401
from tests.workers.test_sentiment import build_tiny_classifier
from workers import news_ingestor, news_sources, sentiment
from workers.common import Shutdown
from workers.news_ingestor import NewsIngestor, store_articles
from workers.news_sources import NewsApiSource, RequestBudget, RssSource, SimulatedNewsSource
from workers.sentiment import VaderSentiment
from workers.sources.simulated import SimulatedMarket

TICKERS = get_settings().universe
CLOCK_START = pd.Timestamp("2024-03-15 15:00", tz="UTC")

pytestmark = pytest.mark.usefixtures("clean_tables")


def news() -> pd.DataFrame:
    return read_from_db("SELECT * FROM news_articles ORDER BY published_at, ticker")


def simulated_source() -> SimulatedNewsSource:
    return SimulatedNewsSource(TICKERS, SimulatedMarket(seed=42), SessionClock(CLOCK_START))


@pytest.fixture
def vader() -> VaderSentiment:
    return VaderSentiment(batch_size=8)


def test_simulated_cycle_stores_scored_tagged_news_once(vader: VaderSentiment) -> None:
    ingestor = NewsIngestor(simulated_source(), vader)
    written = ingestor.poll_once()
    stored = news()
    assert written == len(stored) > 0
    assert stored["sentiment"].between(-1, 1).all()
    assert (stored["sentiment_model"] == vader.name).all()
    assert set(stored["ticker"]) <= set(TICKERS)
    assert str(stored["published_at"].dt.tz) == "UTC"
    assert (stored["published_at"] <= ingestor.since).all()
    # the simulated event's sign shows in the stored score
    good = stored["title"].str.contains("beats|raises|upgrade|buyback|wins")
    assert (stored.loc[good, "sentiment"] > 0).all() and (stored.loc[~good, "sentiment"] < 0).all()
    # a second cycle over the same window, and a fresh ingestor, add nothing
    assert (
        store_articles(
            simulated_source().fetch(CLOCK_START - pd.Timedelta(days=4), CLOCK_START),
            vader,
            arrived_at=CLOCK_START,
        )
        == 0
    )
    assert NewsIngestor(simulated_source(), vader).poll_once() == 0
    assert len(news()) == len(stored)


def test_one_article_many_tickers_and_duplicates_across_fetches(
    recorded_server: RecordedServer, vader: VaderSentiment
) -> None:
    recorded_server.add_file("/v2/everything", "news_newsapi_everything.json")
    src = NewsApiSource(TICKERS, "k", RequestBudget(10**9))
    src.base_url = recorded_server.url("/v2/everything")
    ingestor = NewsIngestor(src, vader)
    assert ingestor.poll_once() == 4
    assert ingestor.poll_once() == 0  # the same answer again: nothing new
    stored = news()
    rally = stored[stored["title"].str.startswith("Apple and Microsoft")]
    assert sorted(rally["ticker"]) == ["AAPL", "MSFT"]
    assert rally["article_key"].nunique() == 1 and rally["sentiment"].nunique() == 1
    assert recorded_server.hits("/v2/everything") == 2


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("news_newsapi_malformed.json", 200),
        ("news_newsapi_no_articles.json", 200),
        ("news_newsapi_rate_limited.json", 500),
    ],
)
def test_bad_answers_are_logged_and_store_nothing(
    recorded_server: RecordedServer,
    vader: VaderSentiment,
    caplog: pytest.LogCaptureFixture,
    name: str,
    status: int,
) -> None:
    recorded_server.add_file("/v2/everything", name, status=status)
    src = NewsApiSource(TICKERS, "k", RequestBudget(10**9))
    src.base_url = recorded_server.url("/v2/everything")
    ingestor = NewsIngestor(src, vader, retry_attempts=2, max_wait_s=0.05)
    with caplog.at_level(logging.WARNING):
        ok = ingestor.run(Shutdown(), 0.0, max_cycles=2)
    assert not ok
    assert news().empty
    assert "news cycle failed" in caplog.text
    beat = read_from_db(
        "SELECT status, details FROM worker_heartbeats WHERE worker = :w", {"w": "news_ingestor"}
    )
    assert beat["status"].tolist() == ["error"]
    if status >= 500:  # transient errors are retried with back-off before the cycle gives up
        assert recorded_server.hits("/v2/everything") == 4


def test_rate_limit_spends_the_budget_and_waits_for_tomorrow(
    recorded_server: RecordedServer, vader: VaderSentiment, caplog: pytest.LogCaptureFixture
) -> None:
    recorded_server.add_file("/v2/everything", "news_newsapi_rate_limited.json", status=429)
    src = NewsApiSource(TICKERS, "k", RequestBudget(10**9))
    src.base_url = recorded_server.url("/v2/everything")
    ingestor = NewsIngestor(src, vader, retry_attempts=3, max_wait_s=0.05)
    with caplog.at_level(logging.WARNING):
        assert ingestor.run(Shutdown(), 0.0, max_cycles=3)
    assert "HTTP 429 rate limited" in caplog.text
    assert recorded_server.hits("/v2/everything") == 1  # no request until the next UTC day
    assert src.budget.seconds_until_next() > 0
    assert news().empty


def test_missing_fields_store_only_complete_articles(
    recorded_server: RecordedServer, vader: VaderSentiment, caplog: pytest.LogCaptureFixture
) -> None:
    recorded_server.add_file("/v2/everything", "news_newsapi_missing_fields.json")
    src = NewsApiSource(TICKERS, "k", RequestBudget(10**9))
    src.base_url = recorded_server.url("/v2/everything")
    with caplog.at_level(logging.ERROR):
        NewsIngestor(src, vader).poll_once()
    stored = news()
    assert stored["ticker"].tolist() == ["NVDA"]
    assert stored["title"].tolist() == ["Nvidia surges on record data-center revenue"]
    assert "dropped 3 article(s)" in caplog.text


def test_rss_cycle_tags_a_shared_article_with_both_feeds_tickers(
    recorded_server: RecordedServer, vader: VaderSentiment
) -> None:
    path = "/rss/2.0/headline"
    recorded_server.add_file(path, "news_rss_yahoo_aapl.xml", when={"s": "AAPL"})
    recorded_server.add_file(path, "news_rss_yahoo_msft.xml", when={"s": "MSFT"})
    recorded_server.add("/rss/2.0/headline", "Service Unavailable", status=503, when={"s": "XOM"})
    src = RssSource(["AAPL", "MSFT", "XOM"])
    src.url_template = recorded_server.url(path) + "?s={ticker}"
    assert NewsIngestor(src, vader).run(Shutdown(), 0.0, max_cycles=1)
    stored = news()
    assert len(stored) == 5 and set(stored["ticker"]) == {"AAPL", "MSFT"}
    shared = stored[stored["title"].str.contains("two ways")]
    assert sorted(shared["ticker"]) == ["AAPL", "MSFT"] and shared["article_key"].nunique() == 1
    assert (stored["source"] == "rss").all()


def test_database_outage_keeps_the_watermark(
    vader: VaderSentiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = NewsIngestor(simulated_source(), vader)

    def down(*_a: object, **_k: object) -> int:
        raise ConnectionError("database unavailable")

    monkeypatch.setattr(news_ingestor, "write_to_db", down)
    assert not ingestor.run(Shutdown(), 0.0, max_cycles=1)
    assert ingestor.since is None
    monkeypatch.undo()
    assert ingestor.poll_once() > 0


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch):
    """Set environment settings for main(); the cached settings are rebuilt before and after."""

    def apply(**env: str) -> None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def test_main_loads_the_model_once_for_many_cycles(
    tmp_path: Path, settings_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = build_tiny_classifier(tmp_path / "tiny-finbert")
    settings_env(SENTIMENT_MODEL=str(folder), SENTIMENT_BATCH_SIZE="4", DATA_DIR=str(tmp_path))
    market = SimulatedMarket(seed=42, clock=SessionClock(CLOCK_START))
    monkeypatch.setattr(news_sources, "simulated_market", lambda _s: market)
    from transformers import AutoModelForSequenceClassification

    real = AutoModelForSequenceClassification.from_pretrained.__func__  # type: ignore[attr-defined]
    loads: list[str] = []

    def counting(cls, name, *a, **k):  # noqa: ANN001
        loads.append(str(name))
        return real(cls, name, *a, **k)

    monkeypatch.setattr(
        AutoModelForSequenceClassification, "from_pretrained", classmethod(counting)
    )
    sentiment.LOADS.clear()
    assert (
        news_ingestor.main(["--source", "simulated", "--max-cycles", "3", "--interval", "0"]) == 0
    )
    assert loads == [str(folder)]
    assert sentiment.LOADS == ["transformers:tiny-finbert"]
    stored = news()
    assert len(stored) > 0
    assert (stored["sentiment_model"] == "transformers:tiny-finbert").all()
    assert stored["sentiment"].between(-1, 1).all()
    beat = read_from_db("SELECT status, details FROM worker_heartbeats")
    assert beat["status"].tolist() == ["ok"]


def test_cli_help_and_bad_source() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workers.news_ingestor", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--source" in out.stdout and "--once" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "workers.news_ingestor", "--source", "twitter"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_newsapi_without_a_key_is_a_clear_error(settings_env) -> None:
    settings_env(SENTIMENT_MODEL="vader")
    with pytest.raises(ValueError, match="NEWS_API_KEY"):
        news_sources.make_news_source("newsapi")
    assert news_ingestor.main(["--source", "newsapi", "--once"]) == 2


def test_service_runs_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "SENTIMENT_MODEL": "vader", "DATA_DIR": str(tmp_path), "SIM_SPEED": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.news_ingestor", "--source", "simulated", "--interval", "1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        beats = pd.DataFrame()
        for _ in range(600):  # wait (up to a minute) for the first cycle's heartbeat
            beats = read_from_db("SELECT status, details FROM worker_heartbeats")
            if not beats.empty:
                break
            time.sleep(0.1)
        assert beats["status"].tolist() == ["ok"]
        assert beats["details"].iloc[0]["source"] == "simulated"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopping on SIGTERM" in err
    assert len(news()) > 0
