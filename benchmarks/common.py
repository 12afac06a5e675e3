"""Shared benchmark plumbing: a fresh database, timing, and the result record."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil


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
def patched_env(values: dict[str, str | None]) -> Iterator[None]:
    """Environment variables set (None: removed) for the block, the settings reloaded."""
    from config.settings import get_settings

    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@contextmanager
def bench_database(name: str = "stockpulse_bench", timescaledb: bool = True) -> Iterator[str]:
    """A freshly migrated database `name`, exported as DATABASE_URL (`timescaledb=False`: plain
    PostgreSQL tables even where the server has TimescaleDB)."""
    from config.settings import get_settings
    from db import connections, migrate
    from tests.db_support import scratch_database

    get_settings.cache_clear()
    connections.dispose_engine()
    with scratch_database(name) as url:
        flavour: dict[str, str | None] = {"TIMESCALEDB": None if timescaledb else "off"}
        with patched_env({"DATABASE_URL": url, **flavour}):
            connections.dispose_engine()
            migrate.upgrade()
            try:
                yield url
            finally:
                connections.dispose_engine()
