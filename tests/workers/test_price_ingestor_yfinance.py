"""The price ingestor on the real yfinance adapter, Yahoo answering from recorded payloads."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from tests.workers.fake_yahoo import FakeYahoo, install, session_bars
from tests.workers.price_support import queue, stored_bars
from workers.price_ingestor import PriceIngestor
from workers.sources.yfinance_source import YFinanceSource

TICKERS = ["AAPL", "MSFT", "NVDA"]


@pytest.fixture
def yahoo(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeYahoo]:
    from yfinance.data import YfData

    yield install(
        monkeypatch,
        tmp_path_factory.getbasetemp() / "yf-cache",
        pd.Timestamp("2024-06-10 15:00:30", tz="UTC"),
    )
    YfData.cache_get.cache_clear()


def test_a_session_from_yahoo_ends_stored_with_its_no_trade_minutes_confirmed(
    clean_tables: None, yahoo: FakeYahoo
) -> None:
    source = YFinanceSource(min_request_interval_s=0.0, attempts=1, max_wait_s=0.0)
    ingestor = PriceIngestor(source, TICKERS)
    wait = ingestor.step()  # 11:00:30 New York: the session so far, the forming minute left out
    assert 0 < wait <= 60.0 + source.settle_s
    stored = stored_bars()
    assert stored["ts"].max() == pd.Timestamp("2024-06-10 14:59", tz="UTC")
    pending = queue()
    assert set(pending["status"]) == {"pending"}
    assert {(r.ticker, r.gap_start.strftime("%H:%M")) for r in pending.itertuples()} == {
        ("AAPL", "14:17"),  # Yahoo sent nulls for these minutes: no trades
        ("NVDA", "14:05"),
    }
    yahoo.now = pd.Timestamp("2024-06-10 20:00:20", tz="UTC")  # just after the close
    ingestor.step()  # the rest of the session; the close triggers the backfill
    want = pd.concat([session_bars(t) for t in TICKERS]).sort_values(["ticker", "ts"])
    stored = stored_bars()
    assert len(stored) == len(want) and stored["ts"].max() == pd.Timestamp(
        "2024-06-10 19:59", tz="UTC"
    )
    assert (stored["close"].to_numpy() == want["close"].to_numpy()).all()
    assert set(queue()["status"]) == {"empty"}  # refetched: still nothing, so not gaps
    history_requests = [r for r in yahoo.requests if "period1" in r]
    assert {r["symbol"] for r in history_requests} == {"AAPL", "NVDA"}
