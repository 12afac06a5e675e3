"""Scratch databases for the test sessions and the benchmarks (not product code: neither
directory ships)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from sqlalchemy.engine import make_url

from db.connections import database_url


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A new, empty database `name` (dropped first if it exists) on the server the settings
    point at; yields its URL and drops it afterwards (the test sessions' and benchmarks'
    databases)."""
    base = make_url(database_url())
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
