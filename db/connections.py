"""The one place that opens database connections: the pooled engines and what borrows from them.

Workers, jobs and the app write with `db.writes.write_to_db`, read with `db.reads`, run a
statement with `execute`, or borrow a connection with `connect()`. A process that opts in
(`route_reads_to_replica()`: the app, never a worker) sends the read helpers to a streaming
replica at `DATABASE_READ_URL`; writes always go to the primary.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg2
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from config.settings import Settings, get_settings
from db.embedded import ensure_running
from db.errors import UnsafeQueryError

_engine: Engine | None = None
_read_engine: Engine | None = None  # the replica's (DATABASE_READ_URL), when reads go there
_engine_lock = threading.Lock()
_generation = 0  # counts dispose_engine() calls: what was cached about the schema is stale
_reads_to_replica = False  # process-wide opt-in: route_reads_to_replica()
_primary_reads_only: ContextVar[bool] = ContextVar("primary_reads_only", default=False)
_pinned_reads: ContextVar[Connection | None] = ContextVar("pinned_reads", default=None)

# PostgreSQL advisory lock keys, one per purpose (every key StockPulse uses is here)
ADVISORY_LOCKS = {"migrate": 7_301_204, "scoring": 7_301_205}

# what a lost or refused database connection raises, for callers that carry on without it
DB_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, psycopg2.Error)


def database_url(settings: Settings | None = None) -> str:
    """The URL in use: `DATABASE_URL`, or the embedded server (started on demand)."""
    settings = settings or get_settings()
    if settings.database_url is not None:
        return _psycopg2_url(settings.database_url.get_secret_value())
    return ensure_running(settings)


def _psycopg2_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _pooled_engine(url: str, settings: Settings, application_name: str) -> Engine:
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": application_name},
    )


def create_db_engine(settings: Settings | None = None) -> Engine:
    """The process-wide pooled engine (psycopg2, pre-ping), created on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            settings = settings or get_settings()
            _engine = _pooled_engine(database_url(settings), settings, "stockpulse")
        return _engine


def route_reads_to_replica(enabled: bool = True) -> None:
    """Send this process's reads (`read_from_db`, `read_rows`, `read_columns`) to the streaming
    replica at `DATABASE_READ_URL` when one is set. Process-wide and off by default: the app opts
    in; workers never do, since they must read what they have just written. Writes, `connect()`,
    `execute()` and the cursors always use the primary."""
    global _reads_to_replica
    _reads_to_replica = enabled


def read_replica_url(settings: Settings | None = None) -> str | None:
    """`DATABASE_READ_URL`, or None when it is unset or empty (compose passes it empty)."""
    url = (settings or get_settings()).database_read_url
    return _psycopg2_url(url.get_secret_value()) if url and url.get_secret_value() else None


def reads_go_to_replica(settings: Settings | None = None) -> bool:
    """True when this process's reads, in this thread or task, go to the replica."""
    return (
        _reads_to_replica
        and not _primary_reads_only.get()
        and read_replica_url(settings) is not None
    )


@contextmanager
def primary_reads() -> Iterator[None]:
    """Within the block, this thread's (or task's) reads go to the primary even in a process
    that routes reads to the replica (code that must read its own writes)."""
    token = _primary_reads_only.set(True)
    try:
        yield
    finally:
        _primary_reads_only.reset(token)


def _reads_engine() -> Engine:
    """The engine the read helpers use: the replica's when routed there, else the primary's."""
    global _read_engine
    settings = get_settings()
    url = read_replica_url(settings)
    if url is None or not reads_go_to_replica(settings):
        return create_db_engine(settings)
    with _engine_lock:
        if _read_engine is None:
            _read_engine = _pooled_engine(url, settings, "stockpulse-reads")
        return _read_engine


def dispose_engine() -> None:
    """Close every pooled connection, the replica's too (tests, shutdown, after a fork); what
    was cached about the schema (`engine_generation`) is read again."""
    global _engine, _read_engine, _generation
    with _engine_lock:
        for engine in (_engine, _read_engine):
            if engine is not None:
                engine.dispose()
        _engine = _read_engine = None
        _generation += 1


def engine_generation() -> int:
    """A number that changes whenever the engines are disposed (`dispose_engine`): facts about
    the schema cached under an older number are stale (`db.flavour.hypertables`)."""
    return _generation


@contextmanager
def autocommit_cursor() -> Iterator[Any]:
    """A DB-API cursor outside any transaction (for statements PostgreSQL or TimescaleDB refuse
    to run inside one). The pooled connection is put back in transaction mode afterwards."""
    raw = create_db_engine().raw_connection()
    dbapi: Any = raw.dbapi_connection
    try:
        dbapi.autocommit = True
        with dbapi.cursor() as cur:
            yield cur
    finally:
        dbapi.autocommit = False
        raw.close()


@contextmanager
def dedicated_connection() -> Iterator[Any]:
    """A DB-API connection of its own, in autocommit mode and outside the pool, closed on exit
    (a listener's `LISTEN` lives as long as its session, so it never goes back to the pool)."""
    raw = create_db_engine().raw_connection()
    raw.detach()
    dbapi: Any = raw.dbapi_connection
    dbapi.autocommit = True
    try:
        yield dbapi
    finally:
        raw.close()


@contextmanager
def connect() -> Iterator[Connection]:
    """A connection in a transaction, committed on success, rolled back on error."""
    with create_db_engine().begin() as conn:
        yield conn


def execute(sql: str, params: Mapping[str, Any] | None = None) -> int:
    """Run one parameterised statement in its own transaction; returns the row count."""
    with connect() as conn:
        return conn.execute(text(sql), bound_params(params)).rowcount


def bound_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Values travel as bound parameters (`:name` placeholders), never inside the SQL text:
    every statement is a fixed string in `db/` (ruff's S608 flags any SQL built from strings)."""
    if params is not None and not isinstance(params, Mapping):
        raise UnsafeQueryError("params must be a mapping of placeholder name to value")
    return dict(params or {})


@contextmanager
def reads_on(conn: Connection) -> Iterator[None]:
    """Within the block, this thread's (or task's) reads run on `conn`, inside its transaction:
    a pass of many small reads pays no pool checkout and pre-ping per read, and reads what the
    transaction has written (the scoring pass, under its advisory lock)."""
    token = _pinned_reads.set(conn)
    try:
        yield
    finally:
        _pinned_reads.reset(token)


@contextmanager
def read_connection() -> Iterator[Connection]:
    """The connection a read runs on: the pinned one (`reads_on`), else one from the pool (the
    replica's when this process routes its reads there)."""
    pinned = _pinned_reads.get()
    if pinned is not None:
        yield pinned
        return
    with _reads_engine().connect() as conn:
        yield conn
