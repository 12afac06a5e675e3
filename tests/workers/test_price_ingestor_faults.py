"""Fault injection: a misbehaving source plus a database restart, and still exactly the bars.

The source raises errors, returns empty and partial answers, rate-limits, times out and sends
still-forming bars; in the middle the database goes away (a proxy in front of PostgreSQL severs
every connection and refuses new ones, as a restarting server does) and comes back. The run
ends with bars_1m equal to what the source produced, none lost, none twice, and every queued
gap resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pandas as pd
import pytest

from tests.workers.price_support import (
    DbProxy,
    FaultySource,
    assert_same_bars,
    database_through,
    queue,
    simulated,
    source_truth,
    stored_bars,
)
from workers.backfill import drain_queue
from workers.price_ingestor import PriceIngestor

TICKERS = ["AAPL", "MSFT", "KO", "XOM", "NVDA", "JPM"]
FAULTS = [
    "exception",
    "empty",
    "rate_limit",
    "timeout",
    "partial_last_bar",
    "partial_tickers",
    "hole",
]
DB_DOWN_AT, DB_UP_AT = 24, 36  # polls


def plan(poll: int) -> str | None:
    """Roughly every other poll misbehaves, cycling through every kind of fault."""
    if poll % 2 == 0 or poll == 1:
        return None
    return FAULTS[(poll // 2) % len(FAULTS)]


@pytest.fixture
def proxy(test_database: str) -> Iterator[DbProxy]:
    proxy = DbProxy(test_database)
    with database_through(proxy.proxied_url):
        yield proxy
    proxy.down()


def test_faulty_source_and_database_restart_end_with_exactly_the_source_bars(
    clean_tables: None, proxy: DbProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.price_ingestor")
    market, real = simulated("2024-06-10 19:00", speed=60.0, missing_rate=0.02)
    source = FaultySource(market, plan)
    ingestor = PriceIngestor(source, TICKERS, sleep=real.sleep, poll_interval_s=120.0)
    buffered_while_down: list[int] = []

    def restart_database(poll: int) -> None:
        if poll == DB_DOWN_AT:
            proxy.down()
        elif DB_DOWN_AT < poll < DB_UP_AT:
            buffered_while_down.append(ingestor.buffered)
        elif poll == DB_UP_AT:
            proxy.up()

    source.on_poll = restart_database
    ingestor.run(max_polls=60)  # Monday 19:00 -> the close -> well into Tuesday
    end = market.now().floor("min")
    assert end > pd.Timestamp("2024-06-11 14:00", tz="UTC")

    assert set(source.faults) == set(FAULTS)
    assert ingestor.stats.errors > 0 and ingestor.stats.rate_limited > 0
    assert max(buffered_while_down) > 0  # bars kept in memory while the database was away
    assert "database unavailable" in caplog.text and "database back after" in caplog.text
    assert ingestor.buffered == 0

    report = drain_queue(source)  # Tuesday's post-market backfill, run now
    assert report.failed == 0 and report.retry == 0
    stored = stored_bars()
    first = stored["ts"].min()
    assert first == pd.Timestamp("2024-06-10 13:30", tz="UTC")  # the first poll: Monday so far
    assert_same_bars(stored, source_truth(market, TICKERS, first, end))
    q = queue()
    assert set(q["status"]) <= {"filled", "empty"}
    for row in q[q["status"] == "empty"].itertuples(index=False):
        assert market.history(
            [row.ticker], row.gap_start, row.gap_end + pd.Timedelta(minutes=1)
        ).empty
