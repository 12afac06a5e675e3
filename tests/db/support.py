"""Bars to write and a count of the stored ones, for the gateway's tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from db.reads import read_from_db


def bars(n: int = 5, ticker: str = "AAPL", start: str = "2024-03-04 14:30", price: float = 100.0):
    ts = pd.date_range(start, periods=n, freq="min", tz="UTC")
    close = price + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "ticker": ticker,
            "ts": ts,
            "open": close,
            "high": close + 0.5,
            "low": close - 0.5,
            "close": close,
            "volume": np.full(n, 1000.0),
            "source": "test",
        }
    )


def count(ticker: str | None = None) -> int:
    if ticker is None:
        return int(read_from_db("SELECT count(*) AS n FROM bars_1m")["n"][0])
    df = read_from_db("SELECT count(*) AS n FROM bars_1m WHERE ticker = :t", {"t": ticker})
    return int(df["n"][0])
