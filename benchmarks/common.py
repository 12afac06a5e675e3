"""Shared benchmark plumbing: a fresh database, timing, and the result record."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import psycopg2
from sqlalchemy.engine import make_url


def result(
    name: str,
    value: float,
    unit: str,
    baseline: float | None,
    conditions: str,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """One benchmark figure beside the naive way; ratio > 1 means better than the baseline."""
    ratio = None
    if baseline:
        ratio = value / baseline if higher_is_better else baseline / value
    return {
        "name": name,
        "value": round(value, 4),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 4),
        "ratio": None if ratio is None else round(ratio, 2),
        "conditions": f"{conditions}; {machine()}",
    }


def machine() -> str:
    return f"{psutil.cpu_count()} cores, {platform.python_version()}, {platform.machine()}"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@contextmanager
def bench_database(name: str = "stockpulse_bench", timescaledb: bool = True) -> Iterator[str]:
    """A freshly migrated database `name`, exported as DATABASE_URL (`timescaledb=False`: plain
    PostgreSQL tables even where the server has TimescaleDB)."""
    from config.settings import get_settings
    from db import database_manager, migrate

    old_flavour = os.environ.get("TIMESCALEDB")
    get_settings.cache_clear()
    database_manager.dispose_engine()
    base = make_url(database_manager.database_url())
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    old = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    if not timescaledb:
        os.environ["TIMESCALEDB"] = "off"
    get_settings.cache_clear()
    database_manager.dispose_engine()
    migrate.upgrade()
    try:
        yield url
    finally:
        database_manager.dispose_engine()
        for key, value in (("DATABASE_URL", old), ("TIMESCALEDB", old_flavour)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
