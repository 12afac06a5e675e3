"""Rebuild the Yahoo chart payloads in this folder (v8 `/finance/chart/{symbol}` JSON).

The files follow the structure of Yahoo's chart API as yfinance consumes it (meta with
trading periods and timezone, `timestamp`, `indicators.quote`, `events` for actions); the
prices are synthetic. `fake_yahoo.py` serves them to the real yfinance code in the tests.

    python tests/workers/data/build_yahoo_payloads.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SESSION = "2024-06-10"
OPEN_UTC = pd.Timestamp(f"{SESSION} 13:30", tz="UTC")
CLOSE_UTC = pd.Timestamp(f"{SESSION} 20:00", tz="UTC")
BASE = {"AAPL": 193.0, "MSFT": 426.0, "NVDA": 120.0}
NO_TRADE_MINUTES = {"AAPL": ["10:17"], "MSFT": [], "NVDA": ["10:05", "10:06"]}  # New York


def _period(start: pd.Timestamp, end: pd.Timestamp) -> dict[str, object]:
    return {
        "timezone": "EDT",
        "start": int(start.timestamp()),
        "end": int(end.timestamp()),
        "gmtoffset": -14400,
    }


def _meta(symbol: str, granularity: str, rng: str, price: float) -> dict[str, object]:
    day = pd.Timestamp(SESSION, tz="UTC")
    return {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "NMS",
        "fullExchangeName": "NasdaqGS",
        "instrumentType": "EQUITY",
        "firstTradeDate": 345479400,
        "regularMarketTime": int(CLOSE_UTC.timestamp()),
        "hasPrePostMarketData": True,
        "gmtoffset": -14400,
        "timezone": "EDT",
        "exchangeTimezoneName": "America/New_York",
        "regularMarketPrice": price,
        "chartPreviousClose": round(price * 0.99, 2),
        "previousClose": round(price * 0.99, 2),
        "scale": 3,
        "priceHint": 2,
        "currentTradingPeriod": {
            "pre": _period(day + pd.Timedelta(hours=8), OPEN_UTC),
            "regular": _period(OPEN_UTC, CLOSE_UTC),
            "post": _period(CLOSE_UTC, day + pd.Timedelta(hours=24)),
        },
        "tradingPeriods": [[_period(OPEN_UTC, CLOSE_UTC)]],
        "dataGranularity": granularity,
        "range": rng,
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }


def minute_chart(symbol: str, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    minutes = pd.date_range(OPEN_UTC, CLOSE_UTC, freq="min", inclusive="left")
    close = np.round(BASE[symbol] * np.exp(np.cumsum(rng.normal(0, 4e-4, len(minutes)))), 4)
    open_ = np.round(np.concatenate([[BASE[symbol]], close[:-1]]), 4)
    high = np.round(np.maximum(open_, close) + rng.uniform(0, 0.05, len(minutes)), 4)
    low = np.round(np.minimum(open_, close) - rng.uniform(0, 0.05, len(minutes)), 4)
    volume = rng.integers(20_000, 400_000, len(minutes))
    quote = {
        "open": open_.tolist(),
        "high": high.tolist(),
        "low": low.tolist(),
        "close": close.tolist(),
        "volume": [int(v) for v in volume],
    }
    for hhmm in NO_TRADE_MINUTES[symbol]:  # Yahoo sends the timestamp with null values
        i = minutes.get_loc(pd.Timestamp(f"{SESSION} {hhmm}", tz="America/New_York"))
        for key in quote:
            quote[key][i] = None
    return {
        "chart": {
            "result": [
                {
                    "meta": _meta(symbol, "1m", "1d", float(close[-1])),
                    "timestamp": [int(t.timestamp()) for t in minutes],
                    "indicators": {"quote": [quote]},
                }
            ],
            "error": None,
        }
    }


def daily_chart(symbol: str, events: dict[str, object], seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-03-11", SESSION)
    stamps = [
        int((d + pd.Timedelta(hours=13, minutes=30)).tz_localize("UTC").timestamp()) for d in days
    ]
    close = np.round(BASE[symbol] * np.exp(np.cumsum(rng.normal(0, 0.01, len(days)))), 4)
    quote = {
        "open": close.tolist(),
        "high": (close * 1.01).round(4).tolist(),
        "low": (close * 0.99).round(4).tolist(),
        "close": close.tolist(),
        "volume": [int(v) for v in rng.integers(1e7, 9e7, len(days))],
    }
    return {
        "chart": {
            "result": [
                {
                    "meta": _meta(symbol, "1d", "3mo", float(close[-1])),
                    "timestamp": stamps,
                    "events": events,
                    "indicators": {"quote": [quote], "adjclose": [{"adjclose": close.tolist()}]},
                }
            ],
            "error": None,
        }
    }


def _event_ts(day: str) -> str:
    return str(int(pd.Timestamp(f"{day} 13:30", tz="UTC").timestamp()))


def main() -> None:
    for i, symbol in enumerate(BASE):
        path = HERE / f"yahoo_chart_1m_{symbol}_{SESSION}.json"
        path.write_text(json.dumps(minute_chart(symbol, seed=i)) + "\n")
    nvda_events = {
        "dividends": {
            _event_ts("2024-03-05"): {"amount": 0.04, "date": int(_event_ts("2024-03-05"))}
        },
        "splits": {
            _event_ts(SESSION): {
                "date": int(_event_ts(SESSION)),
                "numerator": 10.0,
                "denominator": 1.0,
                "splitRatio": "10:1",
            }
        },
    }
    aapl_events = {
        "dividends": {
            _event_ts("2024-05-10"): {"amount": 0.25, "date": int(_event_ts("2024-05-10"))}
        },
    }
    for symbol, events in (("NVDA", nvda_events), ("AAPL", aapl_events), ("MSFT", {})):
        path = HERE / f"yahoo_chart_1d_{symbol}_3mo.json"
        path.write_text(json.dumps(daily_chart(symbol, events, seed=7)) + "\n")


if __name__ == "__main__":
    main()
