"""TimescaleDB when present: bars become a compressed hypertable with 5m/1h/1d aggregates.

Without the `timescaledb` extension this migration changes nothing, and the plain tables of
0001 serve (the app aggregates with `date_bin` instead of the continuous aggregates).
"""

from __future__ import annotations

from typing import Any

NAME = "timescaledb hypertable, compression, continuous aggregates (when available)"
NEEDS_AUTOCOMMIT = True  # continuous aggregates cannot be created inside a transaction

AGGREGATES = {"bars_5m": "5 minutes", "bars_1h": "1 hour", "bars_1d": "1 day"}


def timescale_available(cur: Any) -> bool:
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return cur.fetchone() is not None


def up(cur: Any) -> None:
    if not timescale_available(cur):
        return
    cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    cur.execute(
        "SELECT create_hypertable('bars_1m', 'ts', chunk_time_interval => interval '1 day', "
        "migrate_data => true, if_not_exists => true)"
    )
    cur.execute(
        "ALTER TABLE bars_1m SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'ticker', timescaledb.compress_orderby = 'ts')"
    )
    cur.execute(
        "SELECT add_compression_policy('bars_1m', interval '7 days', if_not_exists => true)"
    )
    for view, width in AGGREGATES.items():
        cur.execute(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} WITH (timescaledb.continuous) AS "
            f"SELECT ticker, time_bucket(interval '{width}', ts) AS ts, "
            "first(open, ts) AS open, max(high) AS high, min(low) AS low, "
            "last(close, ts) AS close, sum(volume) AS volume "
            "FROM bars_1m GROUP BY ticker, time_bucket(interval "
            f"'{width}', ts) WITH NO DATA"
        )
        cur.execute(
            f"SELECT add_continuous_aggregate_policy('{view}', start_offset => interval '30 days', "
            f"end_offset => interval '{width}', schedule_interval => interval '{width}', "
            "if_not_exists => true)"
        )


def down(cur: Any) -> None:
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if cur.fetchone() is None:
        return
    for view in AGGREGATES:
        cur.execute(f"DROP MATERIALIZED VIEW IF EXISTS {view}")
    cur.execute("SELECT remove_compression_policy('bars_1m', if_exists => true)")
    cur.execute("SELECT decompress_chunk(c, true) FROM show_chunks('bars_1m') c")
    # A hypertable cannot be turned back into a plain table in place: copy it.
    cur.execute("CREATE TABLE bars_1m_plain (LIKE bars_1m INCLUDING ALL)")
    cur.execute("INSERT INTO bars_1m_plain SELECT * FROM bars_1m")
    cur.execute("DROP TABLE bars_1m")
    cur.execute("ALTER TABLE bars_1m_plain RENAME TO bars_1m")
