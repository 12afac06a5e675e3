"""ingest_poll_20 / ingest_poll_500: one poll-to-committed cycle of the price ingestor.

A cycle: ask the simulated market for the new final bars of N tickers (one new minute each),
keep those newer than the last bar seen, check them for gaps on the exchange calendar, and
write them (adjusted-scale lookup, COPY + MERGE, gap rows) in one committed transaction.
Baseline: the plain way, the same poll and filter written with `DataFrame.to_sql` (append).
Median over CYCLES cycles after a warm-up, same database, same minutes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pandas as pd

from benchmarks.common import bench_database, result

CYCLES = 40
WARMUP = 20
START = pd.Timestamp("2024-06-10 14:00", tz="UTC")


class _ManualTime:
    """Real time that moves only when told to: the cycles measure work, not waiting."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> bool:
        self.t += seconds
        return False


def _market(tickers: list[str]) -> tuple[Any, _ManualTime]:
    from workers.sources.simulated import SessionClock, SimulatedMarket

    real = _ManualTime()
    market = SimulatedMarket(seed=3, clock=SessionClock(START, speed=60.0, time_fn=real))
    market.latest_bars(tickers, START + pd.Timedelta(hours=5))  # generate the session up front
    return market, real


def _ours(tickers: list[str]) -> list[float]:
    from workers.price_ingestor import PriceIngestor

    market, real = _market(tickers)
    ingestor = PriceIngestor(market, tickers, sleep=real.sleep, drain_backfill=False)
    ingestor.load_state()
    times = []
    for i in range(WARMUP + CYCLES):
        real.sleep(1.0)  # one bar later
        now = market.now()
        start = time.perf_counter()
        ingestor.poll(now)
        assert ingestor.flush()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return times


def _plain(tickers: list[str]) -> list[float]:
    from db.database_manager import create_db_engine

    engine = create_db_engine()
    market, real = _market(tickers)
    last: dict[str, pd.Timestamp] = {}
    times = []
    for i in range(WARMUP + CYCLES):
        real.sleep(1.0)
        now = market.now()
        start = time.perf_counter()
        since = min(last.values()) if len(last) == len(tickers) else None
        bars = market.latest_bars(tickers, now, since=since)
        if last:
            known = bars["ticker"].map(last)
            bars = bars[known.isna() | (bars["ts"] > known)]
        bars = bars.assign(source="simulated")
        bars.to_sql("bars_1m", engine, if_exists="append", index=False)
        last.update(bars.groupby("ticker")["ts"].max().to_dict())
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return times


def run() -> list[dict[str, Any]]:
    from db.database_manager import execute

    out = []
    with bench_database():
        for n in (20, 500):
            tickers = [f"T{i:03d}" for i in range(n)]
            execute("TRUNCATE bars_1m, backfill_queue")
            ours = statistics.median(_ours(tickers)) * 1000
            execute("TRUNCATE bars_1m, backfill_queue")
            plain = statistics.median(_plain(tickers)) * 1000
            print(f"ingest_poll_{n}: {ours:.1f} ms per cycle | to_sql {plain:.1f} ms")
            cond = (
                f"{n} tickers x 1 new bar, simulated source, median of {CYCLES} cycles after "
                f"{WARMUP} warm-up; ours: poll + gap check + write_bars (one transaction); "
                "baseline: same poll + DataFrame.to_sql append"
            )
            out.append(result(f"ingest_poll_{n}", ours, "ms", plain, cond, higher_is_better=False))
    return out
