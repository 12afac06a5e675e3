"""Point-in-time reads of news and macro: nothing is visible before it was published/released."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from db.context_queries import load_macro, load_news, macro_as_of
from db.database_manager import write_to_db

pytestmark = pytest.mark.usefixtures("clean_tables")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def put_macro(rows: list[tuple[str, str, str, float]]) -> None:
    frame = pd.DataFrame(rows, columns=["series_id", "obs_date", "realtime_start", "value"])
    frame["obs_date"] = pd.to_datetime(frame["obs_date"]).dt.date
    frame["realtime_start"] = pd.to_datetime(frame["realtime_start"], utc=True)
    write_to_db(frame.assign(source="test"), table="macro_observations")


CPI = [
    ("CPIAUCSL", "2024-01-01", "2024-02-13 13:30", 308.417),
    ("CPIAUCSL", "2024-02-01", "2024-03-12 12:30", 310.326),
    ("CPIAUCSL", "2024-02-01", "2024-03-20 12:30", 310.100),  # revision of the newest figure
    ("CPIAUCSL", "2024-01-01", "2024-03-25 12:30", 308.000),  # revision of an older figure
    ("CPIAUCSL", "2024-03-01", "2024-04-10 12:30", 312.332),
    ("UNRATE", "2024-02-01", "2024-03-08 13:30", 3.9),
]


def test_macro_as_of_sees_a_figure_only_from_its_release() -> None:
    put_macro(CPI)
    macro = load_macro(["CPIAUCSL", "UNRATE"], ts("2024-01-01"), ts("2024-12-31"))
    assert str(macro["realtime_start"].dt.tz) == "UTC"
    at = [
        ts("2024-02-13 13:29"),  # one minute before the first release
        ts("2024-02-13 13:30"),  # at the release
        ts("2024-03-12 12:29:59"),
        ts("2024-03-12 12:30"),
        ts("2024-03-21"),  # after the revision of February
        ts("2024-03-26"),  # after a revision of January: the current figure is still February
        ts("2024-04-11"),
    ]
    got = macro_as_of(macro, at)
    assert list(got.index) == at
    cpi = got["CPIAUCSL"].tolist()
    assert np.isnan(cpi[0])
    assert cpi[1:] == [308.417, 308.417, 310.326, 310.100, 310.100, 312.332]
    unrate = got["UNRATE"]
    assert unrate.isna().tolist() == [True, True, False, False, False, False, False]  # 03-08
    assert unrate.iloc[-1] == 3.9


def test_load_macro_carries_the_value_current_at_start() -> None:
    put_macro(CPI)
    window = load_macro(["CPIAUCSL"], ts("2024-03-22"), ts("2024-04-30"))
    # the newest figure known at the start (February, revised) plus what was released inside
    assert list(zip(window["obs_date"], window["value"], strict=True)) == [
        (date(2024, 2, 1), 310.100),
        (date(2024, 1, 1), 308.000),
        (date(2024, 3, 1), 312.332),
    ]
    first = macro_as_of(window, [ts("2024-03-22"), ts("2024-04-11")])["CPIAUCSL"]
    assert first.tolist() == [310.100, 312.332]
    assert load_macro(["NOPE"], ts("2024-01-01"), ts("2025-01-01")).empty


def test_load_news_filters_by_ticker_and_publication_time() -> None:
    rows = pd.DataFrame(
        {
            "article_key": ["a", "a", "b", "c"],
            "ticker": ["AAPL", "MSFT", "AAPL", "AAPL"],
            "published_at": [
                ts("2024-05-07 14:32"),
                ts("2024-05-07 14:32"),
                ts("2024-05-08 09:00"),
                ts("2024-05-09 09:00"),
            ],
            "source": "test",
            "title": ["rally", "rally", "probe", "later"],
            "sentiment": [0.6, 0.6, -0.5, 0.1],
            "sentiment_model": "vader",
        }
    )
    write_to_db(rows, table="news_articles")
    news = load_news(["AAPL"], "2024-05-07", ts("2024-05-09 09:00"))
    assert news["title"].tolist() == ["rally", "probe"]
    assert str(news["published_at"].dt.tz) == "UTC"
    assert news["sentiment"].dtype == "float64"
    assert load_news(["MSFT", "AAPL"], "2024-05-07", "2024-05-08")["ticker"].tolist() == [
        "AAPL",
        "MSFT",
    ]
    empty = load_news(["XOM"], "2024-01-01", "2025-01-01")
    assert empty.empty and str(empty["published_at"].dt.tz) == "UTC"
