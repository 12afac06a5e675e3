"""ingest_poll_20 / ingest_poll_500: one poll-to-committed cycle of the price ingestor.

A cycle: ask the simulated market for the new final bars of N tickers (one new minute each),
keep those newer than the last bar seen, check them for gaps on the exchange calendar, and
write them through `workers.bar_store.write_bars` (validation, an upsert, gap rows, the
aggregates' refresh check) in one committed transaction. On TimescaleDB when the server has it.
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
    from config.market_clock import SessionClock
    from workers.sources.simulated import SimulatedMarket

    real = _ManualTime()
    market = SimulatedMarket(seed=3, clock=SessionClock(START, speed=60.0, time_fn=real))
    market.latest_bars(tickers, START + pd.Timedelta(hours=5))  # generate the session up front
    return market, real


class _Plain:
    """The plain way: same poll and new-bar filter, written with DataFrame.to_sql (append)."""

    def __init__(self, tickers: list[str]) -> None:
        from db.connections import create_db_engine

        self.engine = create_db_engine()
        self.tickers = tickers
        self.market, self.real = _market(tickers)
        self.last: dict[str, pd.Timestamp] = {}

    def cycle(self) -> None:
        now = self.market.now()
        since = min(self.last.values()) if len(self.last) == len(self.tickers) else None
        bars = self.market.latest_bars(self.tickers, now, since=since)
        if self.last:
            known = bars["ticker"].map(self.last)
            bars = bars[known.isna() | (bars["ts"] > known)]
        bars.assign(source="simulated").to_sql(
            "bars_1m", self.engine, if_exists="append", index=False
        )
        self.last.update(bars.groupby("ticker")["ts"].max().to_dict())


def _measure(n: int) -> tuple[float, float]:
    """Median ms per cycle (ours, plain), the two interleaved so load changes hit both."""
    from workers.price_ingestor import PriceIngestor

    ours_tickers = [f"A{i:03d}" for i in range(n)]
    market, real = _market(ours_tickers)
    ingestor = PriceIngestor(market, ours_tickers, sleep=real.sleep, drain_backfill=False)
    ingestor.load_state()
    plain = _Plain([f"B{i:03d}" for i in range(n)])
    ours_ms, plain_ms = [], []
    for i in range(WARMUP + CYCLES):
        real.sleep(1.0)  # one bar later on both clocks
        plain.real.sleep(1.0)
        start = time.perf_counter()
        ingestor.poll(market.now())
        if not ingestor.flush():
            raise RuntimeError("the write failed: was stockpulse_bench dropped by another run?")
        middle = time.perf_counter()
        plain.cycle()
        end = time.perf_counter()
        if i >= WARMUP:
            ours_ms.append((middle - start) * 1000)
            plain_ms.append((end - middle) * 1000)
    return statistics.median(ours_ms), statistics.median(plain_ms)


def run() -> list[dict[str, Any]]:
    from db.connections import execute
    from db.flavour import database_flavour

    out = []
    with bench_database():
        flavour = database_flavour()
        for n in (20, 500):
            execute("TRUNCATE bars_1m, backfill_queue")
            ours, plain = _measure(n)
            print(f"ingest_poll_{n}: {ours:.1f} ms per cycle | to_sql {plain:.1f} ms")
            cond = (
                f"{n} tickers x 1 new bar, simulated source, median of {CYCLES} cycles after "
                f"{WARMUP} warm-up, interleaved with the baseline; ours: poll + gap check + "
                "write_bars (validation, upsert, aggregates' refresh check, one transaction); "
                f"baseline: same poll + DataFrame.to_sql append; {flavour}"
            )
            out.append(result(f"ingest_poll_{n}", ours, "ms", plain, cond, higher_is_better=False))
    return out
