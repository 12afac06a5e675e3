"""write_throughput: 1M one-minute bars for 20 tickers through write_to_db vs DataFrame.to_sql.

The limit is a raw COPY of the same rows (serialised the same fast way) into the same indexed
table: `write_copy_limit`.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import bench_database, result, timed

ROWS = 1_000_000
TICKERS = 20


def make_bars(rows: int = ROWS, tickers: int = TICKERS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    per = rows // tickers
    ts = pd.date_range("2024-01-02 14:30", periods=per, freq="min", tz="UTC")
    steps = rng.normal(0, 0.05, size=(tickers, per)).cumsum(axis=1)
    close = np.round(100 + steps, 2).ravel()
    spread = np.round(rng.uniform(0, 0.2, rows), 2)
    return pd.DataFrame(
        {
            "ticker": np.repeat([f"T{i:02d}" for i in range(tickers)], per),
            "ts": np.tile(ts, tickers),
            "open": close,
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(0, 50_000, rows).astype(float),
            "source": "bench",
        }
    )


def run() -> list[dict[str, Any]]:
    from db.connections import create_db_engine, execute
    from db.writes import _to_csv_bytes, write_to_db

    df = make_bars()
    cond = f"{len(df):,} bars, {TICKERS} tickers, empty indexed bars_1m, same PostgreSQL"
    with bench_database():
        engine = create_db_engine()
        execute("TRUNCATE bars_1m")
        fast_s, _ = timed(lambda: write_to_db(df, table="bars_1m"))
        execute("TRUNCATE bars_1m")

        def plain() -> None:
            df.to_sql("bars_1m", engine, if_exists="append", index=False, chunksize=50_000)

        plain_s, _ = timed(plain)
        execute("TRUNCATE bars_1m")

        def raw_copy() -> None:
            payload = _to_csv_bytes(df)
            conn = engine.raw_connection()
            try:
                with conn.cursor() as cur:
                    cols = ", ".join(df.columns)
                    cur.copy_expert(
                        f"COPY bars_1m ({cols}) FROM STDIN WITH (FORMAT csv)", io.BytesIO(payload)
                    )
                conn.commit()
            finally:
                conn.close()

        copy_s, _ = timed(raw_copy)
    fast, plain_rate, limit = len(df) / fast_s, len(df) / plain_s, len(df) / copy_s
    print(
        f"write_to_db {fast:,.0f} rows/s | to_sql {plain_rate:,.0f} rows/s | "
        f"raw COPY {limit:,.0f} rows/s | {fast / plain_rate:.1f}x to_sql, "
        f"{fast / limit:.0%} of COPY"
    )
    return [
        result("write_throughput", fast, "rows/s", plain_rate, cond + "; baseline: to_sql"),
        result(
            "write_copy_limit",
            limit,
            "rows/s",
            fast,
            cond + "; raw COPY, no validation or upsert; baseline: write_to_db",
        ),
    ]
