"""Reads of the context tables for the ML side: news and macro, stamped with when they became known.

Join them *as of* `published_at` (news) and `realtime_start` (macro releases), never by
observation date: a figure may be used only at or after its release.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from db.database_manager import read_from_db

NEWS_COLUMNS = [
    "ticker",
    "published_at",
    "article_key",
    "source",
    "title",
    "sentiment",
    "sentiment_model",
]
MACRO_COLUMNS = ["series_id", "obs_date", "realtime_start", "value", "source"]


def _utc(ts: datetime | str | pd.Timestamp) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _typed(frame: pd.DataFrame, columns: list[str], time_col: str) -> pd.DataFrame:
    frame = frame.reindex(columns=columns)
    frame[time_col] = pd.to_datetime(frame[time_col], utc=True)
    return frame.reset_index(drop=True)


def load_news(
    tickers: Sequence[str], start: datetime | str | pd.Timestamp, end: datetime | str | pd.Timestamp
) -> pd.DataFrame:
    """Scored articles of `tickers` published in [start, end), oldest first.

    Returns
    -------
    DataFrame with NEWS_COLUMNS, one row per (article, ticker); `published_at` is UTC and is
    the earliest time the row may be used.
    """
    frame = read_from_db(
        "SELECT ticker, published_at, article_key, source, title, sentiment, sentiment_model "
        "FROM news_articles WHERE ticker = ANY(:tickers) "
        "AND published_at >= :start AND published_at < :end "
        "ORDER BY published_at, ticker, article_key",
        {"tickers": list(tickers), "start": _utc(start), "end": _utc(end)},
    )
    frame = _typed(frame, NEWS_COLUMNS, "published_at")
    frame["sentiment"] = pd.to_numeric(frame["sentiment"], errors="coerce").astype("float64")
    return frame


def load_macro(
    series: Sequence[str], start: datetime | str | pd.Timestamp, end: datetime | str | pd.Timestamp
) -> pd.DataFrame:
    """Macro values released in [start, end), plus per series the value current at `start`.

    Returns
    -------
    DataFrame with MACRO_COLUMNS sorted by release time (`realtime_start`, UTC). Revisions are
    separate rows with their own release time. The extra row per series (the newest
    observation released before `start`, in its latest revision before `start`) lets an as-of
    join give a value from the first bar on.
    """
    frame = read_from_db(
        "SELECT series_id, obs_date, realtime_start, value, source FROM macro_observations "
        "WHERE series_id = ANY(:series) AND realtime_start >= :start AND realtime_start < :end "
        "UNION ALL "
        "SELECT * FROM (SELECT DISTINCT ON (series_id) series_id, obs_date, realtime_start, "
        "value, source FROM macro_observations "
        "WHERE series_id = ANY(:series) AND realtime_start < :start "
        "ORDER BY series_id, obs_date DESC, realtime_start DESC) AS current_at_start "
        "ORDER BY realtime_start, series_id, obs_date",
        {"series": list(series), "start": _utc(start), "end": _utc(end)},
    )
    frame = _typed(frame, MACRO_COLUMNS, "realtime_start")
    frame["obs_date"] = pd.to_datetime(frame["obs_date"]).dt.date
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    return frame


def macro_as_of(macro: pd.DataFrame, at: Sequence[pd.Timestamp] | pd.DatetimeIndex) -> pd.DataFrame:
    """The value of each series as known at each time in `at`: its newest observation released
    by then, in the newest revision released by then (NaN before the first release).

    Parameters
    ----------
    macro : rows as returned by `load_macro`.
    at : UTC times (e.g. bar timestamps), any order.

    Returns
    -------
    DataFrame indexed by `at` (in the given order), one column per series.
    """
    times = pd.DatetimeIndex(pd.to_datetime(list(at), utc=True))
    out = pd.DataFrame(index=times)
    order = pd.DataFrame({"t": times, "pos": range(len(times))}).sort_values("t")
    for series_id, rows in macro.groupby("series_id", sort=True):
        rows = rows.assign(obs=pd.to_datetime(rows["obs_date"]))
        rows = rows.sort_values(["realtime_start", "obs"], kind="stable")
        # a row changes the current value when it is the newest observation so far (a new
        # figure or a revision of the newest one); revisions of older figures do not
        current = rows[rows["obs"] >= rows["obs"].cummax()]
        joined = pd.merge_asof(
            order,
            current[["realtime_start", "value"]].rename(columns={"realtime_start": "t"}),
            on="t",
            direction="backward",
        )
        values = joined.sort_values("pos")["value"].to_numpy()
        out[str(series_id)] = values
    return out
