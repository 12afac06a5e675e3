"""Writes: validated batches, idempotent upserts on both write paths, refused batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from db.errors import DataValidationError
from db.reads import read_from_db
from db.writes import write_to_db
from tests.db.support import bars, count


def test_same_bars_twice_leave_one_copy(clean_tables):
    df = bars(10)
    assert write_to_db(df, table="bars_1m") == 10
    write_to_db(df, table="bars_1m")
    assert count() == 10


def test_correction_replaces_the_stored_bar(clean_tables):
    write_to_db(bars(3), table="bars_1m")
    fixed = bars(3).iloc[[1]].assign(close=123.25, high=130.0)
    write_to_db(fixed, table="bars_1m")
    out = read_from_db("SELECT ts, close FROM bars_1m ORDER BY ts")
    assert out["close"].tolist() == [100.0, 123.25, 102.0]
    assert str(out["ts"].dt.tz) == "UTC"


def test_on_conflict_nothing_keeps_the_stored_row(clean_tables):
    write_to_db(bars(2), table="bars_1m")
    write_to_db(bars(2).assign(close=1.0, low=0.5), table="bars_1m", on_conflict="nothing")
    assert read_from_db("SELECT close FROM bars_1m ORDER BY ts")["close"].tolist() == [100, 101]


def test_duplicates_inside_one_batch_keep_the_last(clean_tables):
    df = pd.concat([bars(2), bars(2).assign(close=[150.0, 151.0], high=200.0)])
    write_to_db(df, table="bars_1m")
    assert read_from_db("SELECT close FROM bars_1m ORDER BY ts")["close"].tolist() == [150, 151]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns=["ts"]), "key column"),
        (lambda d: d.assign(close=[1.0, np.nan, 2.0, 3.0, 4.0]), "NaN/inf"),
        (lambda d: d.assign(open=[1.0, np.inf, 2.0, 3.0, 4.0]), "NaN/inf"),
        (lambda d: d.assign(volume=[1.0, -5.0, 2.0, 3.0, 4.0]), "negative 'volume'"),
        (lambda d: d.assign(ticker=["AAPL", None, "AAPL", "AAPL", "AAPL"]), "empty keys"),
        (lambda d: d.assign(surprise=1), "unknown column"),
        (lambda d: d.assign(high=d["low"] - 1), "high < low"),
    ],
)
def test_bad_batches_are_rejected_and_nothing_is_written(clean_tables, mutate, message):
    with pytest.raises(DataValidationError, match=message):
        write_to_db(mutate(bars(5)), table="bars_1m")
    assert count() == 0


def test_unknown_table_is_rejected():
    with pytest.raises(DataValidationError, match="unknown table"):
        write_to_db(bars(1), table="nope")


def test_a_failing_batch_inside_a_transaction_writes_nothing(clean_tables):
    from db.connections import connect

    with pytest.raises(DataValidationError), connect() as conn:
        write_to_db(bars(3), table="bars_1m", conn=conn)
        write_to_db(bars(3, ticker="MSFT").assign(volume=-1.0), table="bars_1m", conn=conn)
    assert count() == 0


def test_other_tables_round_trip(clean_tables):
    news = pd.DataFrame(
        {
            "article_key": ["k1", "k1"],
            "ticker": ["AAPL", "MSFT"],
            "published_at": pd.to_datetime(["2024-03-04 15:00"] * 2, utc=True),
            "available_at": pd.to_datetime(["2024-03-04 15:01"] * 2, utc=True),
            "source": "test",
            "title": ['Apple, "quoted" headline\nwith newline', "x"],
            "sentiment": [0.5, -0.2],
            "sentiment_model": "vader",
        }
    )
    assert write_to_db(news, table="news_articles") == 2
    got = read_from_db("SELECT title FROM news_articles WHERE ticker = :t", {"t": "AAPL"})
    assert got["title"][0] == 'Apple, "quoted" headline\nwith newline'
    with pytest.raises(DataValidationError, match="outside"):
        write_to_db(news.assign(sentiment=2.0), table="news_articles")


@pytest.mark.parametrize("n", [3, 2000])  # the multi-row VALUES path and the COPY + MERGE path
def test_both_write_paths_are_idempotent_and_apply_corrections(clean_tables, n):
    df = bars(n)
    assert write_to_db(df, table="bars_1m") == n
    write_to_db(df, table="bars_1m")
    fixed = df.assign(close=df["close"] + 0.25, high=df["high"] + 0.25)
    write_to_db(fixed, table="bars_1m")
    out = read_from_db("SELECT close FROM bars_1m ORDER BY ts")
    assert len(out) == n
    assert out["close"].tolist() == pytest.approx(fixed["close"].tolist())


def test_missing_values_are_stored_as_null(clean_tables):
    news = pd.DataFrame(
        {
            "article_key": ["k"],
            "ticker": ["AAPL"],
            "published_at": pd.to_datetime(["2024-03-04 15:00"], utc=True),
            "available_at": pd.to_datetime(["2024-03-04 15:01"], utc=True),
            "source": "test",
            "title": "t",
            "url": [None],
            "summary": [np.nan],
            "sentiment": [0.1],
            "sentiment_model": "vader",
        }
    )
    write_to_db(news, table="news_articles")
    got = read_from_db("SELECT url IS NULL AS u, summary IS NULL AS s FROM news_articles")
    assert bool(got["u"][0]) and bool(got["s"][0])


@pytest.mark.parametrize("n", [2, 600])  # the direct upsert and the COPY path
def test_nullable_integers_and_missing_times_are_stored_as_null(clean_tables, n):
    ts = pd.date_range("2026-11-04 15:00", periods=n, freq="min", tz="UTC")
    outcomes = pd.DataFrame(
        {
            "ticker": "AAPL",
            "bar_ts": ts,
            "label_key": "tb",
            "label": pd.array([1] + [None] * (n - 1), dtype="Int64"),
            "fwd_return": [0.01] + [np.nan] * (n - 1),
            "exit_ts": [ts[0]] + [pd.NaT] * (n - 1),
            "computed_at": ts[-1],
        }
    )
    assert write_to_db(outcomes, table="outcomes") == n
    got = read_from_db(
        "SELECT count(*) FILTER (WHERE label IS NULL) AS nl, "
        "count(*) FILTER (WHERE exit_ts IS NULL) AS ne, max(label) AS top FROM outcomes"
    )
    assert (int(got["nl"][0]), int(got["ne"][0]), int(got["top"][0])) == (n - 1, n - 1, 1)


@pytest.mark.parametrize(
    "naive",
    [
        lambda d: d.assign(ts=d["ts"].dt.tz_localize(None)),  # a datetime64 column
        lambda d: d.assign(ts=[t.replace(tzinfo=None) for t in d["ts"]]).astype({"ts": object}),
        lambda d: d.assign(ts=d["ts"].dt.strftime("%Y-%m-%d %H:%M")),  # text without an offset
    ],
)
@pytest.mark.parametrize("n", [5, 600])  # the direct upsert and the COPY path
def test_naive_timestamps_are_refused_naming_the_column(clean_tables, naive, n):
    with pytest.raises(DataValidationError, match=r"timezone-naive timestamps in bars_1m\.ts "):
        write_to_db(naive(bars(n)), table="bars_1m")
    assert count() == 0
    aware_text = bars(n).assign(ts=bars(n)["ts"].dt.strftime("%Y-%m-%d %H:%M+00:00"))
    assert write_to_db(aware_text, table="bars_1m") == n  # an offset in the text names the instant


def test_naive_times_in_other_columns_are_refused_too(clean_tables):
    with pytest.raises(DataValidationError, match=r"bars_1m\.ingested_at \(e\.g\. 2024-03-04"):
        write_to_db(bars(2).assign(ingested_at=pd.Timestamp("2024-03-04 15:00")), table="bars_1m")
    beat = pd.DataFrame({"worker": ["w"], "last_beat": [pd.Timestamp("2024-03-04 15:00")]})
    with pytest.raises(DataValidationError, match=r"worker_heartbeats\.last_beat"):
        write_to_db(beat, table="worker_heartbeats")
    gap = pd.DataFrame(
        {"ticker": ["AAPL"], "gap_start": [pd.Timestamp("2024-03-04 15:00", tz="UTC")]}
    ).assign(gap_end=[pd.NaT])  # missing times (NULL) carry no timezone and need none
    assert write_to_db(gap.assign(gap_end=gap["gap_start"]), table="backfill_queue") == 1


def test_every_timestamptz_column_is_declared_in_its_table_spec():
    from db.tables import TABLES

    df = read_from_db(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND data_type = :t",
        {"t": "timestamp with time zone"},
    )
    for name, spec in TABLES.items():
        want = set(df.loc[df["table_name"] == name, "column_name"])
        assert set(spec.timestamps) == want, name
