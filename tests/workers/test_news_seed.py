"""`python -m workers.seed_context`: the demo's news and macro history up to the clock's start,
idempotent, and the news service carrying on from where it ends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pandas as pd
import pytest

from config.market_calendar import xnys
from config.market_clock import SessionClock
from config.settings import get_settings
from db.reads import read_from_db
from workers import seed_context
from workers.news_ingestor import NewsIngestor
from workers.news_sources import SimulatedNewsSource
from workers.sentiment import VaderSentiment
from workers.sources.simulated import SimulatedMarket

COUNTS = (
    "SELECT (SELECT count(*) FROM news_articles) AS n, "
    "(SELECT count(*) FROM macro_observations) AS m"
)
START = pd.Timestamp("2024-03-15 13:30", tz="UTC")  # a session open

pytestmark = pytest.mark.usefixtures("clean_tables")


@pytest.fixture
def market(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedMarket]:
    monkeypatch.setenv("SENTIMENT_MODEL", "vader")
    get_settings.cache_clear()
    sim = SimulatedMarket(seed=get_settings().sim_seed, clock=SessionClock(START, speed=1.0))
    monkeypatch.setattr(seed_context, "simulated_market", lambda _s: sim)
    yield sim
    monkeypatch.undo()
    get_settings.cache_clear()


def test_seed_fills_the_sessions_before_the_clock_start_once(market: SimulatedMarket) -> None:
    assert seed_context.main(["--days", "3"]) == 0
    news = read_from_db("SELECT * FROM news_articles")
    sessions = seed_context.sessions_before(START, 3)
    assert [d.date().isoformat() for d in sessions] == ["2024-03-12", "2024-03-13", "2024-03-14"]
    expected = sum(len(market.news_events(t, s)) for t in get_settings().universe for s in sessions)
    assert len(news) == expected > 0
    assert news["published_at"].min() >= xnys().session_open(sessions[0])
    assert (news["published_at"] < START).all()
    assert (
        news["sentiment"].between(-1, 1).all()
        and news["sentiment_model"].str.startswith("vader").all()
    )
    macro = read_from_db(
        "SELECT series_id, min(obs_date) AS first, max(realtime_start) AS last "
        "FROM macro_observations GROUP BY series_id"
    )
    assert len(macro) == 8 and (macro["last"] <= START).all()
    assert (pd.to_datetime(macro["first"]) <= pd.Timestamp("2023-03-01")).all()  # a year back
    counts = read_from_db(COUNTS)
    assert seed_context.main(["--days", "3"]) == 0  # idempotent
    assert read_from_db(COUNTS).equals(counts)
    runs = read_from_db("SELECT job, status FROM job_runs ORDER BY id")
    assert runs.values.tolist() == [["seed_context", "ok"], ["seed_context", "ok"]]


def test_news_service_continues_after_the_seed(market: SimulatedMarket) -> None:
    assert seed_context.main(["--days", "2"]) == 0
    seeded = read_from_db("SELECT count(*) AS n FROM news_articles")["n"].iloc[0]
    later = SessionClock(pd.Timestamp("2024-03-15 20:59", tz="UTC"), speed=1.0)
    source = SimulatedNewsSource(get_settings().universe, market, later)
    written = NewsIngestor(source, VaderSentiment(8)).poll_once()
    events = sum(
        len(market.news_events(t, pd.Timestamp("2024-03-15"))) for t in get_settings().universe
    )
    assert written == events  # exactly the session after the seed, nothing twice
    total = read_from_db("SELECT count(*) AS n FROM news_articles")["n"].iloc[0]
    assert total == seeded + events


def test_cli_help_and_validation() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workers.seed_context", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--days" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "workers.seed_context", "--days", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "at least 1" in bad.stderr
