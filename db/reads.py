"""Parameterised reads: as a DataFrame, as the driver's rows, or as numpy columns.

Reads run on the pinned connection inside `db.connections.reads_on`, else on a pooled one (the
replica's when this process routes its reads there: `db.connections.route_reads_to_replica`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import psycopg2.extensions
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.psycopg2 import dialect as psycopg2_dialect
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import Select

from db import binary_copy
from db.connections import bound_params, read_connection


def read_from_db(
    query: str | TextClause | Select[Any], params: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Run a parameterised query and return a DataFrame (timestamps stay UTC-aware)."""
    stmt = text(query) if isinstance(query, str) else query
    values = bound_params(params)
    with read_connection() as conn:
        return pd.read_sql(stmt, conn, params=values)


def read_rows(
    query: str, params: Mapping[str, Any] | None = None
) -> tuple[list[str], Sequence[Sequence[Any]]]:
    """Run a parameterised query and return its column names and rows as the driver gives them,
    for readers that know their columns' types (`db.bars`); `read_from_db` infers them. The
    statement is compiled once per text and runs on the pooled connection's own cursor (no
    SQLAlchemy result rows)."""
    values = bound_params(params)
    sql = _driver_sql(query)
    with _driver_cursor(sql, values) as cursor:
        cursor.execute(sql, values)
        return [c[0] for c in cursor.description], cursor.fetchall()


@contextmanager
def _driver_cursor(sql: str, values: Mapping[str, Any]) -> Iterator[Any]:
    """A psycopg2 cursor on a pooled connection; its errors are raised as SQLAlchemy raises
    them for every other query, and a connection the error shows dead leaves the pool. On the
    replica when this process routes its reads there, on the pinned one inside `reads_on`."""
    with read_connection() as conn:
        cursor = conn.connection.cursor()
        try:
            yield cursor
        except KeyError as exc:  # a placeholder without a value
            raise InvalidRequestError(f"no value for the query's parameter {exc}") from exc
        except psycopg2.Error as exc:
            dead = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
            if dead:
                conn.invalidate(exc)
            raise DBAPIError.instance(
                sql, values, exc, psycopg2.Error, connection_invalidated=dead
            ) from exc
        finally:
            if not cursor.closed:
                cursor.close()


def read_columns(
    query: str, params: Mapping[str, Any] | None, columns: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Run a parameterised query whose columns are, in order, `columns` (name -> timestamptz,
    float8 or int8, none of them NULL) and return each as a numpy array: timestamptz as UTC
    datetime64[us], float8 as float64, int8 as int64. The rows travel in PostgreSQL's binary
    COPY format and are decoded as one array (`db.binary_copy`), with no Python object per
    value: for the chart's year of hourly candles the driver's text rows cost more than the
    database's own work. Values are interpolated by the driver exactly as for any query
    (psycopg2 binds client-side). The column types are the caller's promise: the format carries
    lengths, not types, so only NULLs, other widths and infinite timestamps are detected."""
    values = bound_params(params)
    sql = _driver_sql(query.rstrip().removesuffix(";"))
    record = binary_copy.record_dtype(columns)
    buffer = io.BytesIO()
    with _driver_cursor(sql, values) as cursor:
        encoding = psycopg2.extensions.encodings[cursor.connection.encoding]
        select = cursor.mogrify(sql, values).decode(encoding)
        cursor.copy_expert(f"COPY ({select}) TO STDOUT (FORMAT binary)", buffer)
    return binary_copy.decode(buffer.getbuffer(), record, columns)


_PSYCOPG2 = psycopg2_dialect()  # type: ignore[no-untyped-call]


@lru_cache(maxsize=256)
def _driver_sql(query: str) -> str:
    """`:name` placeholders in the driver's own style (`%(name)s`, literal % doubled), as
    SQLAlchemy compiles them."""
    return str(text(query).compile(dialect=_PSYCOPG2))


def ping() -> bool:
    """True when the database answers (raises like any read when it does not)."""
    return bool(read_from_db("SELECT 1 AS ok")["ok"].iloc[0] == 1)
