from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from db.database_manager import (
    DataValidationError,
    UnsafeQueryError,
    create_db_engine,
    read_columns,
    read_from_db,
    read_rows,
    write_to_db,
)


def bars(n: int = 5, ticker: str = "AAPL", start: str = "2024-03-04 14:30", price: float = 100.0):
    ts = pd.date_range(start, periods=n, freq="min", tz="UTC")
    close = price + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "ticker": ticker,
            "ts": ts,
            "open": close,
            "high": close + 0.5,
            "low": close - 0.5,
            "close": close,
            "volume": np.full(n, 1000.0),
            "source": "test",
        }
    )


def count(ticker: str | None = None) -> int:
    if ticker is None:
        return int(read_from_db("SELECT count(*) AS n FROM bars_1m")["n"][0])
    df = read_from_db("SELECT count(*) AS n FROM bars_1m WHERE ticker = :t", {"t": ticker})
    return int(df["n"][0])


def test_engine_is_created_once_per_process():
    assert create_db_engine() is create_db_engine()
    assert create_db_engine().pool._pre_ping  # type: ignore[attr-defined]


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
    from db.database_manager import connect

    with pytest.raises(DataValidationError), connect() as conn:
        write_to_db(bars(3), table="bars_1m", conn=conn)
        write_to_db(bars(3, ticker="MSFT").assign(volume=-1.0), table="bars_1m", conn=conn)
    assert count() == 0


def test_reads_are_parameterised(clean_tables):
    write_to_db(pd.concat([bars(3), bars(4, ticker="MSFT")]), table="bars_1m")
    assert count("MSFT") == 4
    with pytest.raises(UnsafeQueryError, match="mapping"):
        read_from_db("SELECT * FROM bars_1m WHERE ticker = :t", ["MSFT"])  # type: ignore[arg-type]
    # A hostile value stays a value.
    assert count("MSFT' OR '1'='1") == 0


def test_column_reads_equal_the_driver_s_rows(clean_tables):
    """read_columns (binary COPY into arrays) returns what read_rows returns, value for value;
    values stay bound parameters; NULLs and columns of other types are refused, not misread."""
    stored = pd.concat([bars(7), bars(4, ticker="MSFT", start="2024-07-01 13:30")])
    stored["close"] += 1e-9 / 3  # full float precision, not text-rounded
    write_to_db(stored, table="bars_1m")
    query = (
        "SELECT ts, close, CAST(volume AS bigint) AS volume FROM bars_1m "
        "WHERE ticker = ANY(:t) AND ts >= :lo ORDER BY ticker, ts"
    )
    params = {"t": ["AAPL", "MSFT"], "lo": pd.Timestamp("2024-03-04 14:31", tz="UTC")}
    types = {"ts": "timestamptz", "close": "float8", "volume": "int8"}
    got = read_columns(query, params, types)
    names, rows = read_rows(query, params)
    assert names == ["ts", "close", "volume"] and len(rows) == 10
    assert list(pd.DatetimeIndex(got["ts"], tz="UTC")) == [r[0] for r in rows]
    assert got["close"].tolist() == [r[1] for r in rows]
    assert got["volume"].dtype == np.int64 and got["volume"].tolist() == [1000] * 10
    hostile = read_columns(query, {**params, "t": ["AAPL' OR '1'='1"]}, types)
    assert len(hostile["ts"]) == 0
    with pytest.raises(DataValidationError, match="NULL"):
        read_columns(
            "SELECT CAST(NULL AS float8) AS x, 1.5::float8 AS y",
            None,
            {"x": "float8", "y": "float8"},
        )
    with pytest.raises(DataValidationError, match="NULL"):
        read_columns("SELECT 1::int4 AS x", None, {"x": "int8"})
    with pytest.raises(DataValidationError, match="infinite"):
        read_columns("SELECT CAST('infinity' AS timestamptz) AS t", None, {"t": "timestamptz"})
    # before PostgreSQL's epoch (2000) and far after it; a trailing semicolon is fine
    old = read_columns(
        "SELECT CAST(:a AS timestamptz) AS t UNION ALL SELECT CAST(:b AS timestamptz);",
        {"a": "1969-07-20 20:17:40.5+00", "b": "2262-04-11 23:47:16+00"},
        {"t": "timestamptz"},
    )
    assert list(old["t"]) == [
        np.datetime64("1969-07-20T20:17:40.500000"),
        np.datetime64("2262-04-11T23:47:16"),
    ]


def test_a_connection_dropped_mid_query_leaves_the_pool_and_reads_go_on():
    """The server ends the backend while read_rows waits: the error is SQLAlchemy's, says the
    connection was invalidated, and the next read gets a live connection."""
    import threading

    from sqlalchemy.exc import OperationalError

    def kill_the_sleeper() -> None:  # its own text does not match: the pattern is split
        for _ in range(300):
            ended = read_from_db(
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state = 'active' AND query LIKE '%' || :fn || '(30)%'",
                {"fn": "pg_sleep"},
            )["n"][0]
            if ended:
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_sleeper)
    killer.start()
    with pytest.raises(OperationalError) as caught:
        read_rows("SELECT pg_sleep(30) AS s")
    killer.join()
    assert caught.value.connection_invalidated
    assert read_rows("SELECT 1 AS one")[1][0][0] == 1


def test_driver_reads_say_what_is_wrong_in_sqlalchemy_s_terms():
    from sqlalchemy.exc import InvalidRequestError, ProgrammingError

    with pytest.raises(InvalidRequestError, match="'t'"):
        read_rows("SELECT :t AS t", {})
    with pytest.raises(ProgrammingError, match="nope"):
        read_rows("SELECT * FROM nope")
    assert read_rows("SELECT 2 AS two")[1] == [(2,)]  # the pooled connection is usable


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
