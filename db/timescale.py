"""TimescaleDB when the server has it: the hypertable, compression and continuous aggregates.

`ensure(cur)` is idempotent and runs with every `python -m db.migrate up`: when the
`timescaledb` extension is available on the server (and `settings.timescaledb` is not `off`),
`bars_1m` becomes a hypertable (existing rows migrated) compressed after `COMPRESS_AFTER`
(segmented by ticker, ordered by time), with 5-minute, 1-hour and 1-day continuous aggregates
that use real-time aggregation (`materialized_only = false`: the newest, unmaterialized buckets
are computed from the raw bars at query time), refresh policies, and a first refresh that
populates existing history. Without the extension nothing changes and the plain tables serve
(the app aggregates with `date_bin`).

Every write path works on compressed history: `write_to_db` upserts into hypertables with
`INSERT .. ON CONFLICT` (TimescaleDB has no MERGE with UPDATE on compressed chunks), and
`refresh_aggregates(start, end)` re-materializes the complete buckets a write touched, never
the newest (still real-time) one. Prices are stored raw and adjusted for corporate actions when
read (`db.bars`), so nothing compressed is rewritten when a split or dividend is applied.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from config.settings import get_settings

log = logging.getLogger(__name__)

AGGREGATES = {"bars_5m": "5 minutes", "bars_1h": "1 hour", "bars_1d": "1 day"}
WIDTHS = {"bars_5m": pd.Timedelta(minutes=5), "bars_1h": pd.Timedelta(hours=1)}
WIDTHS["bars_1d"] = pd.Timedelta(days=1)
COMPRESS_AFTER = "7 days"
# a week of 1-minute bars per chunk (~39k rows for 20 tickers): daily chunks gave compressed
# batches of one session (390 rows per ticker) and a year of 250 chunks to plan over; the
# aggregates' materialized chunks are 10 weeks (TimescaleDB's default of 10x the raw chunks),
# so a year of candles spans 6 of them
CHUNK_INTERVAL = "7 days"
AGGREGATE_CHUNK_INTERVAL = "70 days"
POLICY_WINDOW = "30 days"
HYPERTABLES = ("bars_1m",)


def available(cur: Any) -> bool:
    """True when the server offers the extension and the settings allow it."""
    if get_settings().timescaledb == "off":
        return False
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", ("timescaledb",))
    return cur.fetchone() is not None


def installed(cur: Any) -> str | None:
    """The extension's version in this database, or None."""
    cur.execute("SELECT extversion FROM pg_extension WHERE extname = %s", ("timescaledb",))
    row = cur.fetchone()
    return None if row is None else str(row[0])


def _is_hypertable(cur: Any, table: str) -> bool:
    cur.execute(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s", (table,)
    )
    return cur.fetchone() is not None


def _chunk_interval(cur: Any, schema: str, table: str) -> pd.Timedelta:
    cur.execute(
        "SELECT time_interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_schema = %s AND hypertable_name = %s AND dimension_number = 1",
        (schema, table),
    )
    return pd.Timedelta(cur.fetchone()[0])


def _keep_chunk_interval(cur: Any, schema: str, table: str, interval: str) -> bool:
    """Give the hypertable `interval` chunks from now on (existing chunks stay); True when it
    had another interval."""
    if _chunk_interval(cur, schema, table) == pd.Timedelta(interval):
        return False
    cur.execute(
        "SELECT set_chunk_time_interval(format('%%I.%%I', %s, %s)::regclass, %s::interval)",
        (schema, table, interval),
    )
    return True


def _current_schema(cur: Any) -> str:
    cur.execute("SELECT current_schema()")
    return str(cur.fetchone()[0])


def _materialization(cur: Any, view: str) -> tuple[str, str]:
    """The schema and name of the hypertable holding an aggregate's materialized buckets."""
    cur.execute(
        "SELECT materialization_hypertable_schema, materialization_hypertable_name "
        "FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
        (view,),
    )
    schema, table = cur.fetchone()
    return str(schema), str(table)


def _aggregate_exists(cur: Any, view: str) -> bool:
    cur.execute(
        "SELECT 1 FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
        (view,),
    )
    return cur.fetchone() is not None


def _aggregate_sql(view: str, width: str) -> str:
    bucket = f"time_bucket(INTERVAL '{width}', ts)"
    return (
        f"CREATE MATERIALIZED VIEW {view} "  # noqa: S608 (fixed names)
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
        f"SELECT ticker, {bucket} AS ts, first(open, ts) AS open, max(high) AS high, "
        "min(low) AS low, last(close, ts) AS close, sum(volume) AS volume, "
        f"min(ts) AS first_bar FROM bars_1m GROUP BY ticker, {bucket} WITH NO DATA"
    )


def ensure(cur: Any) -> list[str]:
    """Make the schema use TimescaleDB when available (idempotent; needs autocommit, since
    continuous aggregates cannot be created or refreshed inside a transaction). Returns what
    it did."""
    if not available(cur):
        return []
    done = []
    if installed(cur) is None:
        cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        done.append("extension")
    if not _is_hypertable(cur, "bars_1m"):
        cur.execute(
            "SELECT create_hypertable('bars_1m', 'ts', "
            f"chunk_time_interval => INTERVAL '{CHUNK_INTERVAL}', migrate_data => true)"
        )
        cur.execute(
            "ALTER TABLE bars_1m SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'ticker', timescaledb.compress_orderby = 'ts')"
        )
        cur.execute(
            f"SELECT add_compression_policy('bars_1m', INTERVAL '{COMPRESS_AFTER}', "
            "if_not_exists => true)"
        )
        done.append("hypertable")
    elif _keep_chunk_interval(cur, _current_schema(cur), "bars_1m", CHUNK_INTERVAL):
        done.append("chunk interval")  # a schema made with daily chunks
    for view, width in AGGREGATES.items():
        if _aggregate_exists(cur, view):
            if _keep_chunk_interval(cur, *_materialization(cur, view), AGGREGATE_CHUNK_INTERVAL):
                done.append(f"{view} chunk interval")
            continue
        cur.execute(_aggregate_sql(view, width))
        cur.execute(
            f"SELECT add_continuous_aggregate_policy('{view}', "
            f"start_offset => INTERVAL '{POLICY_WINDOW}', end_offset => INTERVAL '{width}', "
            f"schedule_interval => INTERVAL '{width}', if_not_exists => true)"
        )
        _refresh(cur, view, None, _newest_complete(cur, view))  # existing history
        done.append(view)
    if done:
        log.info("TimescaleDB: %s", ", ".join(done))
    return done


def drop(cur: Any) -> None:
    """Undo `ensure`: the aggregates, then `bars_1m` back to a plain table (data kept)."""
    if installed(cur) is None:
        return
    for view in AGGREGATES:
        cur.execute(f"DROP MATERIALIZED VIEW IF EXISTS {view}")
    if not _is_hypertable(cur, "bars_1m"):
        return
    cur.execute("SELECT remove_compression_policy('bars_1m', if_exists => true)")
    cur.execute("SELECT decompress_chunk(c, true) FROM show_chunks('bars_1m') c")
    # a hypertable cannot be turned back into a plain table in place: copy it
    cur.execute("CREATE TABLE bars_1m_plain (LIKE bars_1m INCLUDING ALL)")
    cur.execute("INSERT INTO bars_1m_plain SELECT * FROM bars_1m")
    cur.execute("DROP TABLE bars_1m")
    cur.execute("ALTER TABLE bars_1m_plain RENAME TO bars_1m")


def _newest_bar(cur: Any) -> pd.Timestamp | None:
    cur.execute("SELECT max(ts) FROM bars_1m")
    row = cur.fetchone()
    return None if row is None or row[0] is None else pd.Timestamp(row[0]).tz_convert("UTC")


def _newest_complete(cur: Any, view: str) -> pd.Timestamp | None:
    """The start of the bucket holding the newest bar: buckets before it are complete."""
    newest = _newest_bar(cur)
    return None if newest is None else newest.floor(WIDTHS[view])


def watermark(cur: Any, view: str) -> pd.Timestamp | None:
    """Where the aggregate's materialized part ends (None: nothing materialized yet). Buckets
    from there on are computed from the raw bars at query time (real-time aggregation)."""
    cur.execute(
        "SELECT _timescaledb_functions.cagg_watermark(mat_hypertable_id) "
        "FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = %s",
        (view,),
    )
    row = cur.fetchone()
    if row is None or row[0] is None or int(row[0]) <= 0:
        return None
    return pd.Timestamp(int(row[0]), unit="us", tz="UTC")


def _refresh(cur: Any, view: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> None:
    if end is None or (start is not None and start >= end):
        return
    cur.execute(
        "CALL refresh_continuous_aggregate(%s, %s, %s)",
        (view, None if start is None else start.to_pydatetime(), end.to_pydatetime()),
    )


def refresh(cur: Any, start: pd.Timestamp, end: pd.Timestamp) -> None:
    """Materialize the buckets of every aggregate that overlap [start, end) and are complete:
    those before the bucket holding the newest stored bar (and any below the watermark, which
    could be stale). History written after the migration (seeding, a backfill) is materialized
    here, not left to be aggregated from the raw bars at every query; the bucket holding the
    newest bar, and later ones, stay real-time, so the watermark never passes bars still to
    come. Needs autocommit."""
    newest = _newest_bar(cur)
    if newest is None:
        return
    for view, width in WIDTHS.items():
        mark = watermark(cur, view)
        complete = newest.floor(width)
        lo = pd.Timestamp(start).tz_convert("UTC").floor(width)
        hi = min(
            pd.Timestamp(end).tz_convert("UTC").ceil(width),
            complete if mark is None else max(mark, complete),
        )
        _refresh(cur, view, lo, hi)
