"""quality_guard_20 / quality_guard_500: the data-quality guard's added time per live poll.

A poll writes one new bar of each of N tickers through `workers.bar_store.write_bars`, the one
write path, with the `GuardTail` the price ingestor keeps, as the ingestor does; its transaction
runs the guard (`bar_store._guard`: one statement for the write's number and the tickers' open
quarantine rows, the stored bars from the tail, `workers.quality_guard.judge_arranged`) before
the upsert. The first poll reads the stored bars (61,000 for 500 tickers) and builds the tail.
The guard's share is timed inside those same calls (the
function is wrapped with a timer); the baseline is the rest of the call, the write without the
guard (validation, upsert, notification, the aggregates' refresh check, the commit). Median over
CYCLES polls after WARMUP, on 150 stored bars per ticker (the guard reads its last 122).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pandas as pd

from benchmarks.common import bench_database, result

CYCLES = 40
WARMUP = 10
SESSION = pd.Timestamp("2024-06-10")
STORED = 150  # bars per ticker before the first measured poll


def _bars(tickers: list[str]) -> pd.DataFrame:
    from workers.sources.simulated import SimulatedMarket

    market = SimulatedMarket(seed=3)
    frames = [market.session_bars(t, SESSION) for t in tickers]
    return pd.concat(frames, ignore_index=True).sort_values(["ts", "ticker"], ignore_index=True)


def _measure(n: int) -> tuple[float, float, int]:
    """Median ms per poll: the guard's part and the rest of write_bars; flags raised."""
    import workers.bar_store as bar_store
    from workers.guard_tail import GuardTail

    tickers = [f"Q{i:03d}" for i in range(n)]
    bars = _bars(tickers)
    minutes = sorted(bars["ts"].unique())
    bar_store.write_bars(bars[bars["ts"] < minutes[STORED]], source="simulated")
    tail = GuardTail()  # as the price ingestor keeps it
    guard_s: list[float] = []
    real_guard = bar_store._guard

    def timed_guard(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_guard(*args, **kwargs)
        finally:
            guard_s.append(time.perf_counter() - start)

    bar_store._guard = timed_guard  # type: ignore[assignment]
    guard_ms, rest_ms = [], []
    try:
        for i, ts in enumerate(minutes[STORED : STORED + WARMUP + CYCLES]):
            poll = bars[bars["ts"] == ts]
            start = time.perf_counter()
            bar_store.write_bars(poll, source="simulated", tail=tail)
            total = time.perf_counter() - start
            if i >= WARMUP:
                guard_ms.append(guard_s[-1] * 1000)
                rest_ms.append((total - guard_s[-1]) * 1000)
    finally:
        bar_store._guard = real_guard  # type: ignore[assignment]
    from db.reads import read_from_db

    flags = int(read_from_db("SELECT count(*) AS n FROM quarantined_bars")["n"][0])
    return statistics.median(guard_ms), statistics.median(rest_ms), flags


def run() -> list[dict[str, Any]]:
    from db.connections import execute
    from db.flavour import database_flavour

    out = []
    with bench_database():
        flavour = database_flavour()
        for n in (20, 500):
            execute("TRUNCATE bars_1m, backfill_queue, quarantined_bars, ticker_holds")
            guard, rest, flags = _measure(n)
            print(f"quality_guard_{n}: guard {guard:.2f} ms per poll | write without it {rest:.2f}")
            cond = (
                f"{n} tickers x 1 new bar per poll through workers.bar_store.write_bars, median of "
                f"{CYCLES} polls after {WARMUP}, {STORED} stored bars per ticker; value: the "
                "guard's part of each call (the write's number and open quarantine rows, 122 "
                "stored bars per ticker from the ingestor's GuardTail, judge_arranged); "
                "baseline: the "
                f"rest of the same call, the write without the guard; {flags} bars flagged; "
                f"{flavour}"
            )
            out.append(
                result(f"quality_guard_{n}", guard, "ms", rest, cond, higher_is_better=False)
            )
    return out
