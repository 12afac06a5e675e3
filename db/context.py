"""Reads and bookkeeping of the context tables: news with sentiment, macro releases.

Features join context *as of* when StockPulse could have known it, one rule for training,
validation and live scoring (`ml.features.feature_engineering`): an article counts for a bar when
it was available (`available_at`: the later of its publication and its arrival for articles
collected live; publication plus `settings.news_seed_delay_min` for seeded history) strictly before
the bar's close; a macro value when it was released (`realtime_start`, never its observation date)
strictly before the bar's close.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from core.timeutil import utc
from db.reads import read_from_db, read_rows

MACRO_HISTORY = pd.Timedelta(days=400)  # the last release of a monthly series lies within this


def news_for_features(tickers: Sequence[str], start: Any, end: Any) -> pd.DataFrame:
    """Articles of `tickers` available in [start, end): ticker, available_at, sentiment,
    sentiment_model; oldest first."""
    names, rows = read_rows(
        "SELECT ticker, available_at, sentiment, sentiment_model FROM news_articles "
        "WHERE ticker = ANY(:tickers) AND available_at >= :start AND available_at < :end "
        "ORDER BY available_at, ticker, article_key",
        {"tickers": list(tickers), "start": utc(start), "end": utc(end)},
    )
    ticker, available, sentiment, model = _columns(names, rows)
    return pd.DataFrame(
        {
            "ticker": pd.array(list(ticker), dtype=object),
            "available_at": pd.to_datetime(list(available), utc=True),
            "sentiment": _floats(sentiment),
            "sentiment_model": pd.array(list(model), dtype=object),
        }
    )


def macro_for_features(series: Sequence[str], start: Any, end: Any) -> pd.DataFrame:
    """Macro releases of `series` in [start - MACRO_HISTORY, end): series_id, obs_date,
    realtime_start (the release time), value; revisions are rows of their own."""
    names, rows = read_rows(
        "SELECT series_id, obs_date, realtime_start, value FROM macro_observations "
        "WHERE series_id = ANY(:series) AND realtime_start >= :start AND realtime_start < :end "
        "ORDER BY realtime_start, series_id, obs_date",
        {"series": list(series), "start": utc(start) - MACRO_HISTORY, "end": utc(end)},
    )
    series_id, obs_date, released, value = _columns(names, rows)
    return pd.DataFrame(
        {
            "series_id": pd.array(list(series_id), dtype=object),
            "obs_date": pd.array(list(obs_date), dtype=object),
            "realtime_start": pd.to_datetime(list(released), utc=True),
            "value": _floats(value),
        }
    )


def _columns(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """The driver's rows as one sequence per column (empty ones when there are no rows)."""
    return list(zip(*rows, strict=True)) if rows else [()] * len(names)


def _floats(values: Sequence[Any]) -> np.ndarray:
    """Numbers as float64, NULL as NaN."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype="float64")


def sentiment_models(tickers: Sequence[str], start: Any, end: Any) -> list[str]:
    """The sentiment models that scored the articles available in [start, end)."""
    frame = read_from_db(
        "SELECT DISTINCT sentiment_model FROM news_articles WHERE ticker = ANY(:tickers) "
        "AND available_at >= :start AND available_at < :end AND sentiment_model IS NOT NULL",
        {"tickers": list(tickers), "start": utc(start), "end": utc(end)},
    )
    return sorted(str(m) for m in frame["sentiment_model"])


def latest_sentiment_model() -> str | None:
    """The model that scored the newest stored article (what the news worker runs now)."""
    frame = read_from_db(
        "SELECT sentiment_model FROM news_articles WHERE sentiment_model IS NOT NULL "
        "ORDER BY ingested_at DESC LIMIT 1"
    )
    return None if frame.empty else str(frame["sentiment_model"].iloc[0])


# --------------------------------------------------------------------------- the pages


def headlines(ticker: str, start: Any, end: Any, limit: int = 200) -> pd.DataFrame:
    """Headlines about `ticker` published in [start, end), oldest first (at most `limit`)."""
    return read_from_db(
        "SELECT published_at, title, source, sentiment, url FROM news_articles "
        "WHERE ticker = :t AND published_at >= :start AND published_at < :end "
        "ORDER BY published_at DESC LIMIT :n",
        {"t": ticker, "start": utc(start), "end": utc(end), "n": limit},
    ).iloc[::-1]


MACRO_SNAPSHOT_REACH = pd.Timedelta(days=800)  # two years: a year-on-year change and its last


def macro_snapshot(as_of: Any) -> pd.DataFrame:
    """Per macro series, the newest observation released by `as_of` (in its newest revision
    released by then) with the value before it and the values a year before both: series_id,
    obs_date, value, released (its release time), previous, previous_obs_date, year_ago (the
    observation dated exactly one year before obs_date), previous_year_ago (one year before
    the previous observation); NaN / None where that observation is not stored.

    Observations dated more than `MACRO_SNAPSHOT_REACH` before `as_of` are not read."""
    frame = read_from_db(
        "SELECT series_id, obs_date, value, realtime_start FROM ("
        " SELECT DISTINCT ON (series_id, obs_date) series_id, obs_date, value, realtime_start"
        " FROM macro_observations WHERE realtime_start <= :as_of AND obs_date >= :reach"
        " ORDER BY series_id, obs_date DESC, realtime_start DESC) v "
        "ORDER BY series_id, obs_date DESC",
        {"as_of": utc(as_of), "reach": (utc(as_of) - MACRO_SNAPSHOT_REACH).date()},
    )
    columns = [
        "series_id",
        "obs_date",
        "value",
        "released",
        "previous",
        "previous_obs_date",
        "year_ago",
        "previous_year_ago",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["obs_date"] = pd.to_datetime(frame["obs_date"]).dt.date
    by_series = frame.groupby("series_id")
    frame["previous"] = by_series["value"].shift(-1)
    frame["previous_obs_date"] = by_series["obs_date"].shift(-1)
    values = frame.set_index(["series_id", "obs_date"])["value"]

    def year_before(series: pd.Series, dates: pd.Series) -> list[float]:
        return [
            float(values.get((s, (pd.Timestamp(d) - pd.DateOffset(years=1)).date()), np.nan))
            if d is not None and not pd.isna(d)
            else np.nan
            for s, d in zip(series, dates, strict=True)
        ]

    latest = by_series.head(1).copy()
    latest["year_ago"] = year_before(latest["series_id"], latest["obs_date"])
    latest["previous_year_ago"] = year_before(latest["series_id"], latest["previous_obs_date"])
    latest = latest.rename(columns={"realtime_start": "released"})
    return latest[columns].sort_values("series_id").reset_index(drop=True)


# --------------------------------------------------------------------------- the workers


def stored_article_pairs(keys: Sequence[str]) -> set[tuple[str, str]]:
    """The (article_key, ticker) pairs of `keys` already stored."""
    if not keys:
        return set()
    found = read_from_db(
        "SELECT article_key, ticker FROM news_articles WHERE article_key = ANY(:keys)",
        {"keys": list(keys)},
    )
    return set(zip(found["article_key"], found["ticker"], strict=True))


def newest_article_time(feed: str) -> pd.Timestamp | None:
    """The newest publication time stored from `feed` (its name, or `feed:<publisher>`)."""
    last = read_from_db(
        "SELECT max(published_at) AS last FROM news_articles "
        "WHERE source = :name OR source LIKE :prefix",
        {"name": feed, "prefix": f"{feed}:%"},
    )["last"].iloc[0]
    return None if last is None or pd.isna(last) else utc(last)


def newest_macro_values(series_id: str, start: date) -> pd.DataFrame:
    """The newest stored value per observation date of a series (obs_date >= start)."""
    return read_from_db(
        "SELECT DISTINCT ON (obs_date) obs_date, value FROM macro_observations "
        "WHERE series_id = :s AND obs_date >= :start ORDER BY obs_date, realtime_start DESC",
        {"s": series_id, "start": start},
    )


def newest_macro_observation(series_id: str) -> date | None:
    """The newest observation date stored for a series."""
    last = read_from_db(
        "SELECT max(obs_date) AS last FROM macro_observations WHERE series_id = :s",
        {"s": series_id},
    )["last"].iloc[0]
    return None if last is None or pd.isna(last) else pd.Timestamp(last).date()
