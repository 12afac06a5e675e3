"""TimescaleDB against plain PostgreSQL, on one year of 1-minute bars for 20 tickers (~2M rows).

- `tsdb_detail_query`: the stock detail page's 1-hour and 1-day candles of one ticker over the
  year, through the function the page uses (`db.bars.interval_bars`): TimescaleDB's continuous
  aggregates vs `date_bin` over the bars on plain PostgreSQL (same server, same rows). The two
  databases are queried in alternating rounds on warm pooled connections, so both see the
  machine in the same state.
- `tsdb_storage_mb`: the year's `bars_1m` compressed vs uncompressed (hypertable size).
- `tsdb_backfill_compressed`: rows/s of a backfill (`workers.bar_store.write_bars`, the path the
  backfill and seeding use) into compressed history vs into uncompressed history.

Needs TimescaleDB in the server (`make timescaledb`); without it the module says so and
records nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import bench_database, patched_env, result, timed

TICKERS = [f"T{i:02d}" for i in range(20)]
YEAR = ("2025-01-02", "2025-12-31")
ROUNDS = 7  # alternating plain / TimescaleDB rounds
PER_ROUND = 3  # timed queries per interval in a round, after one untimed


def year_of_bars(seed: int = 0) -> pd.DataFrame:
    """Random-walk bars for every regular-session minute of the year, 20 tickers."""
    from config.market_calendar import xnys

    cal = xnys()
    minutes = cal.sessions_minutes(*YEAR)
    rng = np.random.default_rng(seed)
    n = len(minutes)
    frames = []
    for ticker in TICKERS:
        close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.0008, n))), 2)
        spread = np.round(rng.uniform(0, 0.1, n), 2)
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "ts": minutes,
                    "open": close,
                    "high": close + spread,
                    "low": close - spread,
                    "close": close,
                    "volume": rng.integers(100, 50_000, n).astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _query_times(interval: str) -> list[float]:
    """PER_ROUND timings of the detail page's query, after one untimed run on the connection."""
    from db.bars import interval_bars

    start, end = pd.Timestamp(YEAR[0], tz="UTC"), pd.Timestamp("2026-01-01", tz="UTC")
    interval_bars("T07", interval, start, end)
    return [timed(lambda: interval_bars("T07", interval, start, end))[0] for _ in range(PER_ROUND)]


@contextmanager
def _using(url: str, timescaledb: bool) -> Iterator[None]:
    """Queries go to database `url` (plain tables when `timescaledb` is False) for the block."""
    from db.connections import dispose_engine

    with patched_env({"DATABASE_URL": url, "TIMESCALEDB": None if timescaledb else "off"}):
        dispose_engine()
        try:
            yield
        finally:
            dispose_engine()


def _alternating_medians(plain_url: str, tsdb_url: str) -> dict[str, dict[str, float]]:
    """Median query time per flavour and interval over ROUNDS alternating rounds."""
    times: dict[str, dict[str, list[float]]] = {
        f: {iv: [] for iv in ("1h", "1d")} for f in ("plain", "tsdb")
    }
    for _ in range(ROUNDS):
        for flavour, url in (("plain", plain_url), ("tsdb", tsdb_url)):
            with _using(url, timescaledb=flavour == "tsdb"):
                for iv in ("1h", "1d"):
                    times[flavour][iv] += _query_times(iv)
    return {f: {iv: statistics.median(t) for iv, t in by.items()} for f, by in times.items()}


def _load(bars: pd.DataFrame) -> None:
    from db.writes import write_to_db

    for _, part in bars.groupby(bars["ts"].dt.month):
        write_to_db(part.assign(source="bench"), table="bars_1m")


def _size_mb() -> float:
    from db.reads import read_from_db

    return (
        float(read_from_db("SELECT hypertable_size(:t) AS b", {"t": "bars_1m"})["b"].iloc[0])
        / 2**20
    )


def _compress_all() -> None:
    from db.connections import execute

    execute(
        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks(:t) AS c",
        {"t": "bars_1m"},
    )


def _backfill_rows_per_s(bars: pd.DataFrame, day: str) -> float:
    """Delete one day of bars, then write it back the way the backfill does; rows/s."""
    from db.connections import execute
    from workers.bar_store import write_bars

    lo = pd.Timestamp(day, tz="UTC")
    hi = lo + pd.Timedelta(days=1)
    part = bars[(bars["ts"] >= lo) & (bars["ts"] < hi)]
    execute("DELETE FROM bars_1m WHERE ts >= :lo AND ts < :hi", {"lo": lo, "hi": hi})
    took, written = timed(lambda: write_bars(part, source="bench", on_conflict="nothing"))
    assert written == len(part)
    return len(part) / took


def run() -> list[dict[str, Any]]:
    from db.flavour import has_aggregates

    bars = year_of_bars()
    rows = f"{len(bars):,} bars (20 tickers x {bars['ts'].nunique():,} session minutes of 2025)"
    with bench_database("stockpulse_bench_plain", timescaledb=False) as plain_url:
        _load(bars)
        with bench_database("stockpulse_bench_tsdb") as tsdb_url:
            if not has_aggregates():
                print("    TimescaleDB is not installed in the server (make timescaledb): skipped")
                return []
            _load(bars)
            from db.flavour import refresh_aggregates

            refresh_aggregates(bars["ts"].min(), bars["ts"].max() + pd.Timedelta(minutes=1))
            uncompressed_mb = _size_mb()
            backfill_plain_rows = _backfill_rows_per_s(bars, "2025-12-30")
            _compress_all()
            compressed_mb = _size_mb()
            backfill_compressed_rows = _backfill_rows_per_s(bars, "2025-06-10")
            medians = _alternating_medians(plain_url, tsdb_url)
    plain, tsdb = medians["plain"], medians["tsdb"]
    out = []
    for iv in ("1h", "1d"):
        out.append(
            result(
                f"tsdb_detail_query_{iv}",
                tsdb[iv] * 1000,
                "ms",
                plain[iv] * 1000,
                f"{iv} candles of one ticker over a year, db.bars.interval_bars: TimescaleDB "
                f"continuous aggregate (compressed history) vs date_bin on plain PostgreSQL; "
                f"median of {ROUNDS * PER_ROUND} warm queries each, in {ROUNDS} alternating "
                f"rounds; {rows}",
                higher_is_better=False,
            )
        )
    out.append(
        result(
            "tsdb_storage_mb",
            compressed_mb,
            "MB",
            uncompressed_mb,
            f"hypertable_size(bars_1m) compressed (segmentby ticker, orderby ts) vs "
            f"uncompressed; {rows}",
            higher_is_better=False,
        )
    )
    out.append(
        result(
            "tsdb_backfill_compressed",
            backfill_compressed_rows,
            "rows/s",
            backfill_plain_rows,
            "one day of 20 tickers written back with workers.bar_store.write_bars (INSERT .. ON "
            "CONFLICT, aggregates refreshed) into a compressed chunk vs an uncompressed one",
        )
    )
    return out
