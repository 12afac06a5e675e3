"""The data-health page's data: freshness and gaps per ticker, backfill, heartbeats, jobs.

Cached for all sessions, keyed on a cheap stamp of what each view shows (`db.health.ops_stamp`,
the market clock's minute, the newest bar), so a change shows on the next rerun.
"""

from __future__ import annotations

import pandas as pd

from app.data import cached_data, from_db, redact
from config.market_calendar import session_minutes, xnys
from db import health, quality, queue
from db import input_flags as db_input_flags
from db import reconciliation as db_reconciliation
from db.flavour import database_flavour
from db.health import OpsStamp

__all__ = ["OpsStamp", "ops_stamp"]


def ops_stamp() -> OpsStamp:
    return from_db(health.ops_stamp)


def latest_session(now: pd.Timestamp) -> tuple[pd.Timestamp, pd.DatetimeIndex]:
    """The session that is open at `now`, or the last one before it, and its minutes so far."""
    session = xnys().minute_to_session(now.floor("min"), direction="previous")
    minutes = session_minutes(session)
    return session, minutes[minutes < now]


@cached_data(ttl=600, max_entries=8)
def ticker_health(
    tickers: tuple[str, ...], now: pd.Timestamp, stamp: OpsStamp, newest_bar: pd.Timestamp | None
) -> pd.DataFrame:
    """Per ticker: latest bar, its age, bars and missing minutes in the session, gap counts.

    `now` is the market clock's minute; the cache is keyed on it, on `stamp` (the gap counts)
    and on the newest stored bar."""
    del stamp, newest_bar  # cache keys
    session, minutes = latest_session(now)
    if len(minutes):
        start, end = minutes[0], minutes[-1] + pd.Timedelta(minutes=1)
    else:
        start = end = pd.Timestamp(session).tz_localize("UTC")
    frame = from_db(health.bars_and_gaps, tickers, start, end)
    frame["age_min"] = (now - frame["latest_bar"]).dt.total_seconds() / 60.0
    frame["missing_in_session"] = (len(minutes) - frame["bars_in_session"]).clip(lower=0)
    frame.attrs["session"] = str(pd.Timestamp(session).date())
    frame.attrs["expected"] = len(minutes)
    return frame


@cached_data(ttl=600, max_entries=4)
def backfill_queue(stamp: OpsStamp, limit: int = 200) -> pd.DataFrame:
    """Backfill entries not filled yet (pending and failed), newest first (keyed on `stamp`)."""
    del stamp  # the cache key
    return from_db(queue.unresolved_gaps, limit)


@cached_data(ttl=10, max_entries=4)
def heartbeats(now: pd.Timestamp) -> pd.DataFrame:
    """Every worker's last heartbeat with its age in seconds."""
    frame = from_db(health.heartbeats)
    frame["age_s"] = (now - frame["last_beat"]).dt.total_seconds()
    frame["details"] = frame["details"].map(_short_details)
    return frame


def _short_details(details: object) -> str:
    if isinstance(details, dict):
        return ", ".join(f"{k}={v}" for k, v in list(details.items())[:6])
    return "" if details is None else str(details)[:120]


@cached_data(ttl=600, max_entries=4)
def job_runs(stamp: OpsStamp, since: pd.Timestamp) -> pd.DataFrame:
    """The last run of every job, with its outcome and the runs and failures since `since`
    (keyed on `stamp`)."""
    del stamp  # the cache key
    return from_db(health.job_summary, since)


@cached_data(ttl=600, max_entries=1)
def flavour() -> str:
    """The serving database: PostgreSQL's version and TimescaleDB's, or that it has none."""
    return str(from_db(database_flavour))


# ------------------------------------------------------------------ the data-quality guard
QUALITY_TTL_S = 5.0  # the guard's records are small; a decision clears them (`forget_quality`)


@cached_data(ttl=QUALITY_TTL_S, max_entries=1)
def held() -> pd.DataFrame:
    """Tickers held by the data-quality guard (open holds)."""
    return from_db(quality.held_tickers)


@cached_data(ttl=QUALITY_TTL_S, max_entries=1)
def hold_history() -> pd.DataFrame:
    return from_db(quality.hold_history)


@cached_data(ttl=QUALITY_TTL_S, max_entries=1)
def quarantine_counts() -> pd.DataFrame:
    return from_db(quality.quarantine_counts)


@cached_data(ttl=QUALITY_TTL_S, max_entries=1)
def quarantined_open() -> pd.DataFrame:
    """Quarantined bars still open (quarantined or pending), newest first."""
    return from_db(quality.quarantined)


@cached_data(ttl=QUALITY_TTL_S, max_entries=1)
def input_flags() -> pd.DataFrame:
    """News and macro inputs cleaned, dropped or flagged, their keys (an article's link) and
    details (a provider's error, which may quote a request URL) redacted."""
    flags = from_db(db_input_flags.input_flags)
    for column in ("item_key", "detail"):
        flags[column] = [None if v is None else redact(str(v)) for v in flags[column]]
    return flags


@cached_data(ttl=QUALITY_TTL_S, max_entries=1)
def reconciliation() -> pd.DataFrame:
    """The latest reconciliation rows (problems first)."""
    return from_db(db_reconciliation.reconciliation_results)


def forget_quality() -> None:
    """Drop the cached records after a decision, so the next run shows it."""
    for fn in (held, hold_history, quarantine_counts, quarantined_open):
        fn.clear()  # type: ignore[attr-defined]
