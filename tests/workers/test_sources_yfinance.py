"""The yfinance adapter against Yahoo chart payloads served at yfinance's transport boundary.

The real yfinance code runs (download fan-out, column layouts, timezone handling); only its
HTTP request function is replaced by `FakeYahoo`. No network.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pandas as pd
import pytest

from db.bar_rule import BAR_COLUMNS
from tests.workers.fake_yahoo import FakeYahoo, install, session_bars
from workers.sources.base import HistoryOutOfReachError, RateLimitError, SourceError
from workers.sources.yfinance_source import YFinanceSource, normalise_download

pytestmark = pytest.mark.no_db

NOW = pd.Timestamp("2024-06-10 15:00:30", tz="UTC")  # 11:00:30 in New York
TICKERS = ["AAPL", "MSFT", "NVDA"]


@pytest.fixture
def fake(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeYahoo]:
    from yfinance.data import YfData

    yield install(monkeypatch, tmp_path_factory.getbasetemp() / "yf-cache", NOW)
    YfData.cache_get.cache_clear()


def source() -> YFinanceSource:
    return YFinanceSource(min_request_interval_s=0.0, attempts=3, max_wait_s=0.0)


def expected(tickers: list[str], before: pd.Timestamp) -> pd.DataFrame:
    bars = pd.concat([session_bars(t) for t in tickers], ignore_index=True)
    bars = bars[bars["ts"] < before].sort_values(["ticker", "ts"], ignore_index=True)
    bars["ts"] = bars["ts"].dt.as_unit("ns")
    return bars.astype({"volume": "float64"})


def test_latest_bars_are_final_utc_and_skip_minutes_without_trades(fake: FakeYahoo) -> None:
    bars = source().latest_bars(TICKERS, NOW)
    assert list(bars.columns) == BAR_COLUMNS
    assert str(bars["ts"].dt.tz) == "UTC"
    # 13:30..14:59 UTC are closed; the 15:00 minute is still forming and is left out
    assert bars["ts"].max() == pd.Timestamp("2024-06-10 14:59", tz="UTC")
    pd.testing.assert_frame_equal(
        bars, expected(TICKERS, pd.Timestamp("2024-06-10 15:00", tz="UTC"))
    )
    aapl = bars[bars["ticker"] == "AAPL"]
    assert pd.Timestamp("2024-06-10 14:17", tz="UTC") not in set(aapl["ts"])  # Yahoo sent nulls
    assert len(aapl) == 89


def test_latest_bars_since_leaves_out_older_bars(fake: FakeYahoo) -> None:
    since = pd.Timestamp("2024-06-10 14:50", tz="UTC")
    bars = source().latest_bars(TICKERS, NOW, since=since)
    assert bars["ts"].min() == since + pd.Timedelta(minutes=1)
    assert len(bars) == 3 * 9


def test_both_column_layouts_normalise_to_the_same_bars(fake: FakeYahoo) -> None:
    import yfinance as yf

    kwargs = {"period": "1d", "interval": "1m", "auto_adjust": False, "progress": False}
    by_column = yf.download(TICKERS, group_by="column", **kwargs)
    by_ticker = yf.download(TICKERS, group_by="ticker", **kwargs)
    assert by_column.columns.names == ["Price", "Ticker"]
    assert by_ticker.columns.names == ["Ticker", "Price"]
    a = normalise_download(by_column, TICKERS)
    b = normalise_download(by_ticker, TICKERS)
    pd.testing.assert_frame_equal(a, b)
    single = yf.download("MSFT", multi_level_index=False, **kwargs)
    assert not isinstance(single.columns, pd.MultiIndex)
    one = normalise_download(single, ["MSFT"])
    pd.testing.assert_frame_equal(one, a[a["ticker"] == "MSFT"].reset_index(drop=True))


def test_naive_index_is_exchange_time_and_minutes_without_trades_are_dropped() -> None:
    index = pd.DatetimeIndex(["2024-06-10 09:30", "2024-06-10 09:31", "2024-06-10 09:32"])
    cols = pd.MultiIndex.from_product([["Open", "High", "Low", "Close", "Volume"], ["KO"]])
    frame = pd.DataFrame(
        [[60.0, 60.2, 59.9, 60.1, 100], [60.1, 59.0, 60.5, 60.0, 50], [None] * 5],
        index=index,
        columns=cols,
    )
    bars = normalise_download(frame, ["KO"])
    # the row of NaN is a minute without trades; high < low is a bad print the write path's
    # guard quarantines by reason
    assert list(bars["ts"]) == [
        pd.Timestamp("2024-06-10 13:30", tz="UTC"),
        pd.Timestamp("2024-06-10 13:31", tz="UTC"),
    ]


def test_empty_frame_gives_empty_bars() -> None:
    assert normalise_download(pd.DataFrame(), TICKERS).empty
    assert normalise_download(None, TICKERS).empty


def test_unknown_ticker_is_a_partial_answer(
    fake: FakeYahoo, caplog: pytest.LogCaptureFixture
) -> None:
    fake.unknown = {"NVDA"}
    bars = source().latest_bars(TICKERS, NOW)
    assert set(bars["ticker"]) == {"AAPL", "MSFT"}
    assert "partial answer" in caplog.text


def test_nothing_at_all_is_a_source_error(fake: FakeYahoo) -> None:
    fake.unknown = set(TICKERS)
    with pytest.raises(SourceError, match="returned nothing"):
        source().latest_bars(TICKERS, NOW)


def test_rate_limit_waves_are_retried_then_raised(
    fake: FakeYahoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yfinance as yf
    from yfinance.exceptions import YFRateLimitError

    calls = []
    real = yf.download
    monkeypatch.setattr(yf, "download", lambda *a, **k: calls.append(1) or real(*a, **k))
    fake.failures = [YFRateLimitError() for _ in range(200)]
    with pytest.raises(RateLimitError):
        source().latest_bars(TICKERS, NOW)
    assert len(calls) == 3  # every attempt of the retry policy, then it gives up

    calls.clear()
    fake.failures = [YFRateLimitError() for _ in range(3)]  # one wave, then Yahoo answers
    bars = source().latest_bars(TICKERS, NOW)
    assert len(calls) == 2 and len(bars) == len(expected(TICKERS, NOW.floor("min")))


def test_network_timeouts_become_source_errors(fake: FakeYahoo) -> None:
    from curl_cffi.requests.exceptions import Timeout

    fake.failures = [Timeout("Operation timed out after 20001 milliseconds") for _ in range(200)]
    with pytest.raises(SourceError) as info:
        source().latest_bars(TICKERS, NOW)
    assert not isinstance(info.value, RateLimitError)


def test_history_returns_final_bars_in_range(fake: FakeYahoo) -> None:
    fake.now = pd.Timestamp("2024-06-10 20:30", tz="UTC")
    start = pd.Timestamp("2024-06-10 14:00", tz="UTC")
    end = pd.Timestamp("2024-06-10 14:30", tz="UTC")
    bars = source().history(["NVDA", "MSFT"], start, end)
    want = expected(["MSFT", "NVDA"], end)
    want = want[want["ts"] >= start].reset_index(drop=True)
    pd.testing.assert_frame_equal(bars, want)
    assert {r["symbol"] for r in fake.requests if "period1" in r} == {"NVDA", "MSFT"}


def test_history_is_requested_in_windows_of_at_most_seven_days(fake: FakeYahoo) -> None:
    fake.now = pd.Timestamp("2024-06-25 20:30", tz="UTC")
    source().history(
        ["AAPL"], pd.Timestamp("2024-06-05", tz="UTC"), pd.Timestamp("2024-06-21", tz="UTC")
    )
    windows = [(r["period1"], r["period2"]) for r in fake.requests if "period1" in r]
    assert len(windows) == 3
    assert all(b - a <= 7 * 86400 for a, b in windows)


def test_history_older_than_the_reach_is_refused(fake: FakeYahoo) -> None:
    fake.now = pd.Timestamp("2024-08-01 15:00", tz="UTC")
    with pytest.raises(HistoryOutOfReachError, match="30 days"):
        source().history(
            ["AAPL"], pd.Timestamp("2024-06-10", tz="UTC"), pd.Timestamp("2024-06-11", tz="UTC")
        )


def test_corporate_actions_from_ticker_splits_and_dividends(fake: FakeYahoo) -> None:
    actions = source().corporate_actions(
        ["NVDA", "AAPL", "MSFT"], date(2024, 3, 1), date(2024, 6, 30)
    )
    got = sorted(map(tuple, actions.itertuples(index=False)))
    assert got == [
        ("AAPL", date(2024, 5, 10), "dividend", 0.25),
        ("NVDA", date(2024, 3, 5), "dividend", 0.04),
        ("NVDA", date(2024, 6, 10), "split", 10.0),
    ]
