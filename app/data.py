"""The foundation of the workbench's data layer: how the app reads the database.

Every read of the app goes through `from_db`, which turns a database failure into
`DataUnavailable` carrying a message a user can act on, never a traceback; `cached_data` is the
bounded `st.cache_data` the readers share, keyed on what makes a result change (the newest bar,
the serving model version), so a warm rerun of a page costs one cheap stamp query (`live_stamp`).
The readers of each page live beside this module: `app.live_data` (signals and their
explanation), `app.chart_data` (bars, markers and news of a chart), `app.macro_data`,
`app.lab_data`, `app.health_data`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg2
import streamlit as st
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from app.text import escape_markdown
from config.settings import Settings, SettingsError, get_settings
from core import logs
from db import context as db_context
from db import replication as db_replication
from db import signals as db_signals
from db.connections import route_reads_to_replica
from db.reads import ping
from db.replication import ReplicaState
from db.signals import LiveStamp as LiveStamp  # re-exported for the pages

# the app's reads go to DATABASE_READ_URL's replica when one is set (workers never opt in)
route_reads_to_replica()


def _secret_values() -> list[str]:
    try:
        return get_settings().secret_values()
    except SettingsError:  # the page says so (`ui.setup`); credential shapes are still masked
        return []


# what the app's process logs is redacted as every worker's is (`config.cli.setup_logging`);
# the secrets are read per record, so they follow the settings
logs.install_redaction(_secret_values)

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class DataUnavailable(RuntimeError):
    """The database cannot answer; `str(exc)` is safe to show to a user."""


def cached_data(*, ttl: float, max_entries: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`st.cache_data` with bounds, shared by every session of the server."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        cached: Callable[P, R] = st.cache_data(
            ttl=ttl, max_entries=max_entries, show_spinner=False
        )(fn)
        return cached

    return decorate


def redact(message: str, settings: Settings | None = None) -> str:
    """`message` with every secret of the settings masked (`Settings.redact`)."""
    return (settings or get_settings()).redact(message)


def describe_db_error(exc: BaseException) -> str:
    """A plain, secret-free sentence for a database failure."""
    if isinstance(exc, ProgrammingError) and "does not exist" in str(exc):
        return (
            "The database schema is missing or out of date: run `python -m db.migrate up`. "
            "This page retries by itself."
        )
    first_line = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
    # the driver's text may quote stored or typed values: escaped, as the pages show it
    detail = escape_markdown(first_line[0], max_chars=200) if first_line else type(exc).__name__
    return (
        f"The database is not reachable ({detail}). Showing what is known; "
        "this page retries by itself."
    )


def from_db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call one of `db`'s query functions, with failures turned into `DataUnavailable`."""
    try:
        return fn(*args, **kwargs)
    except (SQLAlchemyError, psycopg2.Error, OSError, RuntimeError) as exc:
        log.warning("query failed: %s", redact(str(exc)).splitlines()[0] if str(exc) else exc)
        raise DataUnavailable(describe_db_error(exc)) from None


def database_ok() -> bool:
    """True when the database answers a trivial query (uncached; used to recover)."""
    try:
        from_db(ping)
    except DataUnavailable:
        return False
    return True


def replica_state() -> ReplicaState | None:
    """The read replica's recovery state and lag (uncached: lag is live); None without
    `DATABASE_READ_URL`."""
    return from_db(db_replication.replica_state)


def live_stamp(version: str | None) -> LiveStamp:
    """The newest bar, the newest signals of `version` and the last adjustment (uncached)."""
    return from_db(db_signals.live_stamp, version)


@cached_data(ttl=60, max_entries=1)
def sentiment_model() -> str | None:
    """The sentiment model behind the newest stored article (what the news worker runs now)."""
    return from_db(db_context.latest_sentiment_model)
