"""Shared fixtures: a real PostgreSQL database for the whole test session.

With DATABASE_URL unset the embedded server is started (TimescaleDB when it is installed and
TIMESCALEDB is not `off`); with it set, that server is used. Each test session migrates a fresh
database of its own (`stockpulse_test_<pid>`), exported through DATABASE_URL so subprocesses
(workers under supervisord, the app) use the same one.

Tests marked `no_db` never touch the database (enforced: opening a connection fails them);
`make test-plain` runs every other test again on plain PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from config.settings import get_settings


@pytest.fixture(scope="session", autouse=True)
def test_database() -> Iterator[str]:
    get_settings.cache_clear()
    from db import connections, migrate
    from tests.db_support import scratch_database

    with scratch_database(f"stockpulse_test_{os.getpid()}") as url:
        os.environ["DATABASE_URL"] = url
        get_settings.cache_clear()
        connections.dispose_engine()
        migrate.upgrade()
        yield url
        connections.dispose_engine()


@pytest.fixture(autouse=True)
def _settings_follow_the_environment() -> Iterator[None]:
    """After every test (and after monkeypatch has restored the environment): settings are
    read again and the engine reconnects, so a test that pointed this process elsewhere (a
    database that is down, another universe) cannot leave the next test pointing there."""
    yield
    from db import connections

    get_settings.cache_clear()
    connections.dispose_engine()


@pytest.fixture
def clean_tables() -> Iterator[None]:
    """Empty every data table before a test."""
    from db.connections import execute
    from db.tables import TABLES

    names = ", ".join(list(TABLES) + ["model_events", "model_evaluations", "job_runs"])
    execute(f"TRUNCATE {names}")
    yield


@pytest.fixture(autouse=True)
def _no_db_tests_stay_off_the_database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A test marked `no_db` that opens a database connection fails: the marker decides which
    tests the plain-PostgreSQL run may leave out, so it must be true."""
    if request.node.get_closest_marker("no_db") is not None:
        from db import connections

        def refuse(*_: object, **__: object) -> None:
            raise AssertionError(f"{request.node.nodeid} is marked no_db but opened a connection")

        monkeypatch.setattr(connections, "create_db_engine", refuse)
    yield
