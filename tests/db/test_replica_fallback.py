"""Reads without a reachable replica: with no DATABASE_READ_URL they stay on the primary, and
a read URL that cannot be reached is named on the data health page."""

from __future__ import annotations

import pytest

from config.settings import get_settings
from db import connections
from db.connections import dispose_engine, route_reads_to_replica
from db.replication import replica_state
from tests.app.support import alerts, free_port, open_page, texts
from tests.db.replica_support import READ_PASSWORD

pytestmark = pytest.mark.xdist_group("replica")  # as the standby's tests, on one worker


def test_replica_state_is_none_without_a_read_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    get_settings.cache_clear()
    assert get_settings().database_read_url is None
    assert replica_state() is None


def test_data_health_says_when_the_replica_cannot_be_reached(monkeypatch, app_session):
    dead = f"postgresql://reader:{READ_PASSWORD}@127.0.0.1:{free_port()}/stockpulse"
    monkeypatch.setenv("DATABASE_READ_URL", dead)
    previous = connections._reads_to_replica
    route_reads_to_replica(True)
    try:
        get_settings.cache_clear()
        dispose_engine()
        at = open_page("health")
    finally:
        route_reads_to_replica(previous)
    assert not at.exception
    errors = alerts(at, "error")
    assert any("read replica (DATABASE_READ_URL) cannot be reached" in e for e in errors), errors
    assert not any(READ_PASSWORD in t for t in texts(at))


def test_data_health_says_reads_go_to_the_primary_without_a_read_url(monkeypatch, app_session):
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    get_settings.cache_clear()
    at = open_page("health")
    assert not at.exception
    assert "Reads go to the primary (no DATABASE_READ_URL is set)." in texts(at)
    assert "Read replica" not in [h.value for h in at.header]
