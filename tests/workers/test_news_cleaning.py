"""Article text made safe to store: NUL bytes, control characters, lone surrogates and huge
bodies cleaned, unusable articles dropped, each recorded in `input_flags`; one bad article never
costs the rest of its batch or holds back the watermark."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from config.settings import get_settings
from db.reads import read_from_db
from tests.workers.context_http import DATA, RecordedServer, recorded_server_fixture  # noqa: F401
from workers.news_ingestor import NewsIngestor, store_articles
from workers.news_sources import NewsApiSource, RequestBudget
from workers.news_text import TEXT_LIMITS, TickerTagger, article_key, clean_articles, clean_text
from workers.sentiment import VaderSentiment

TICKERS = get_settings().universe
NOW = pd.Timestamp("2024-05-08 12:00", tz="UTC")
HUGE_SUMMARY = "Nvidia beat estimates again. " + "x" * (5 * 1024 * 1024)


# --------------------------------------------------------------------------- the cleaning


@pytest.mark.no_db
@pytest.mark.parametrize(
    ("raw", "clean", "reasons"),
    [
        ("Apple beats", "Apple beats", set()),
        ("Apple\x00 beats", "Apple beats", {"nul_bytes"}),
        ("Apple\x07 beats\x1b", "Apple beats", {"control_chars"}),
        ("Apple\tbeats\nestimates", "Apple\tbeats\nestimates", set()),
        ("Apple\r\nbeats", "Apple\nbeats", set()),
        ("Apple \ud83d beats", "Apple \ufffd beats", {"lone_surrogates"}),
        ("Apple \udc00", "Apple \ufffd", {"lone_surrogates"}),
        ("Apple \ud83d\ude00", "Apple \U0001f600", set()),  # a pair is the character it encodes
        ("\x00\x01 \x02", None, {"nul_bytes", "control_chars"}),
        (None, None, set()),
        (42, None, set()),
    ],
)
def test_clean_text(raw: object, clean: str | None, reasons: set[str]) -> None:
    text, found = clean_text(raw, 100)
    assert text == clean and set(found) == reasons
    if text is not None:
        text.encode("utf-8")  # storable


@pytest.mark.no_db
def test_clean_text_cuts_at_the_limit() -> None:
    text, found = clean_text("y" * 5_000_000, TEXT_LIMITS["summary"])
    assert text == "y" * 20_000
    assert found == {"too_long": "5,000,000 characters cut to 20,000"}


def rows(**changes: object) -> list[dict[str, object]]:
    """An article about Apple and Microsoft (two rows), with `changes` to its fields."""
    base = {
        "article_key": "k1",
        "published_at": pd.Timestamp("2024-05-07 14:32", tz="UTC"),
        "source": "newsapi:Reuters",
        "title": "Apple and Microsoft lead tech rally",
        "url": "https://reuters.com/a",
        "summary": "Shares rose.",
    } | changes
    return [base | {"ticker": "AAPL"}, base | {"ticker": "MSFT"}]


@pytest.mark.no_db
def test_clean_articles_passes_clean_rows_through() -> None:
    assert clean_articles(rows()) == (rows(), [])


@pytest.mark.no_db
def test_clean_articles_flags_each_article_once() -> None:
    out, flags = clean_articles(rows(title="Apple\x00 rally", summary="s" * 30_000, url=None))
    assert [r["title"] for r in out] == ["Apple rally"] * 2
    assert [len(r["summary"]) for r in out] == [20_000] * 2
    assert len(flags) == 1  # one article, two ticker rows
    flag = flags[0]
    assert (flag.feed, flag.item_key, flag.action) == ("news", "k1", "cleaned")
    assert flag.reason == "nul_bytes,too_long"
    assert "newsapi:Reuters" in flag.detail and "summary: 30,000 characters cut" in flag.detail


@pytest.mark.no_db
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"title": "\x00\x00"}, "nul_bytes,no_title"),
        ({"title": " -- \ud800 "}, "lone_surrogates,no_title"),
        ({"title": None}, "no_title"),
        ({"published_at": None}, "no_published_at"),
        ({"published_at": "not a date"}, "no_published_at"),
    ],
)
def test_articles_without_title_or_time_are_dropped(
    changes: dict[str, object], reason: str
) -> None:
    out, flags = clean_articles(rows(article_key="k0") + rows(**changes))
    assert [r["article_key"] for r in out] == ["k0", "k0"]
    assert [(f.item_key, f.action, f.reason) for f in flags] == [("k1", "dropped", reason)]


@pytest.mark.no_db
def test_over_long_url_is_dropped_not_cut() -> None:
    out, flags = clean_articles(rows(url="https://example.com/" + "a" * 3_000))
    assert [r["url"] for r in out] == [None, None] and flags[0].action == "cleaned"
    assert "url: longer than 2,048 characters, dropped" in flags[0].detail


@pytest.mark.no_db
def test_any_text_has_a_key_and_huge_text_is_tagged_quickly() -> None:
    assert article_key("https://a.com/x?q=\ud800", "s", "t") == article_key(
        "https://a.com/x?q=\ufffd", "s", "t"
    )
    assert article_key(None, "s", "Apple\x00 beats") == article_key(None, "s", "Apple beats")
    assert TickerTagger(TICKERS).tags("Apple", HUGE_SUMMARY) == ["AAPL", "NVDA"]


# --------------------------------------------------------------------------- the news worker


def flags() -> pd.DataFrame:
    return read_from_db(
        "SELECT feed, item_key, action, reason, detail FROM input_flags ORDER BY id"
    )


def answer_with_bad_articles() -> bytes:
    """The recorded /everything answer with a NUL byte in one title, a lone surrogate in
    another, a 5 MB description, a title of control characters and an unparseable date."""
    body = json.loads((DATA / "news_newsapi_everything.json").read_text())
    articles = body["articles"]
    articles[1]["title"] = "Tesla shares\x00 plunge after delivery miss"
    articles[3]["title"] = "Visa earnings beat estimates \ud83d as cross-border volume grows"
    articles += [
        {
            "source": {"id": "bloomberg", "name": "Bloomberg"},
            "author": "Staff",
            "title": "Nvidia surges on record data-center revenue",
            "description": HUGE_SUMMARY,
            "url": "https://www.bloomberg.com/news/articles/2024-05-07/nvidia-surges",
            "urlToImage": None,
            "publishedAt": "2024-05-07T20:40:00Z",
            "content": None,
        },
        {
            "source": {"id": None, "name": "CNBC"},
            "author": None,
            "title": "\x00\x01\x02",
            "description": "Walmart raised its outlook.",
            "url": "https://www.cnbc.com/2024/05/07/walmart-outlook.html",
            "urlToImage": None,
            "publishedAt": "2024-05-07T16:00:00Z",
            "content": None,
        },
        {
            "source": {"id": None, "name": "CNBC"},
            "author": None,
            "title": "Disney parks revenue slows",
            "description": "Disney reported slower park growth.",
            "url": "https://www.cnbc.com/2024/05/07/disney-parks.html",
            "urlToImage": None,
            "publishedAt": "2024-05-07T25:61:00Z",
            "content": None,
        },
    ]
    return json.dumps(body).encode()  # NUL and the lone surrogate travel as \u escapes


@pytest.mark.usefixtures("clean_tables")
def test_a_batch_with_bad_articles_stores_the_rest_and_advances_the_watermark(
    recorded_server: RecordedServer, caplog: pytest.LogCaptureFixture
) -> None:
    recorded_server.add("/v2/everything", answer_with_bad_articles())
    src = NewsApiSource(TICKERS, "k", RequestBudget(10**9))
    src.base_url = recorded_server.url("/v2/everything")
    src.now = lambda: NOW  # type: ignore[method-assign]
    ingestor = NewsIngestor(src, VaderSentiment(batch_size=8))
    with caplog.at_level(logging.WARNING):
        assert ingestor.poll_once() == 5
    assert ingestor.since == NOW
    stored = read_from_db("SELECT ticker, title, summary FROM news_articles ORDER BY ticker")
    assert stored["ticker"].tolist() == ["AAPL", "MSFT", "NVDA", "TSLA", "V"]
    titles = dict(zip(stored["ticker"], stored["title"], strict=True))
    assert titles["TSLA"] == "Tesla shares plunge after delivery miss"
    assert titles["V"] == "Visa earnings beat estimates \ufffd as cross-border volume grows"
    summaries = dict(zip(stored["ticker"], stored["summary"], strict=True))
    assert len(summaries["NVDA"]) == 20_000
    recorded = flags()
    assert (recorded["feed"] == "news").all()
    by_action = recorded.groupby("action")["reason"].apply(sorted).to_dict()
    assert by_action == {
        "cleaned": ["lone_surrogates", "nul_bytes", "too_long"],
        "dropped": ["no_published_at", "nul_bytes,control_chars,no_title"],
    }
    disney = recorded[recorded["reason"] == "no_published_at"].iloc[0]
    assert disney["item_key"] == "https://www.cnbc.com/2024/05/07/disney-parks.html"
    assert "'2024-05-07T25:61:00Z'" in disney["detail"]
    tesla = recorded[recorded["reason"] == "nul_bytes"].iloc[0]
    assert "tesla-shares-plunge" in tesla["detail"] and "1 NUL byte(s)" in tesla["detail"]
    assert "news: cleaned article" in caplog.text and "tesla-shares-plunge" in caplog.text
    assert "news: dropped article https://www.cnbc.com/2024/05/07/disney-parks" in caplog.text
    # the same answer again: nothing new stored, no flag recorded twice, the watermark moves
    src.now = lambda: NOW + pd.Timedelta(minutes=5)  # type: ignore[method-assign]
    assert ingestor.poll_once() == 0
    assert ingestor.since == NOW + pd.Timedelta(minutes=5)
    assert len(flags()) == len(recorded)


@pytest.mark.usefixtures("clean_tables")
def test_a_row_the_cleaning_missed_costs_only_its_article(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch = pd.DataFrame(
        rows(article_key="k0", title="Apple beats estimates")
        + rows(article_key="k1", title="Apple\x00 misses estimates")  # not through a source
        + rows(article_key="k2", title="Microsoft raises guidance", url=None)
    )
    with caplog.at_level(logging.WARNING):
        written = store_articles(batch, VaderSentiment(batch_size=8), arrived_at=NOW)
    assert written == 4
    stored = read_from_db("SELECT DISTINCT article_key FROM news_articles ORDER BY 1")
    assert stored["article_key"].tolist() == ["k0", "k2"]
    recorded = flags()
    assert recorded[["item_key", "action", "reason"]].values.tolist() == [
        ["k1", "dropped", "store_failed"]
    ]
    assert "NUL" in recorded["detail"].iloc[0]
    assert "storing article by article" in caplog.text
