"""Reads: the pooled engine, parameterised queries, the driver's rows and binary COPY columns."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from db.connections import create_db_engine
from db.errors import DataValidationError, UnsafeQueryError
from db.reads import read_columns, read_from_db, read_rows
from db.writes import write_to_db
from tests.db.support import bars, count


def test_engine_is_created_once_per_process():
    assert create_db_engine() is create_db_engine()
    assert create_db_engine().pool._pre_ping  # type: ignore[attr-defined]


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
