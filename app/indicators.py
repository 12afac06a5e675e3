"""Chart overlays computed from the displayed bars with pandas-ta (`pandas_ta_classic`), the
library the model's features use (`ml.features.feature_engineering`); causal: each value uses past
bars only. Standard definitions: the EMA is seeded with the SMA of its first `n` values, RSI uses
Wilder's smoothing (seeded the same way), the Bollinger bands are the SMA ± k population
standard deviations, the VWAP restarts each UTC day (each session)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pandas_ta_classic as ta

OVERLAYS = ("SMA 20", "EMA 50", "Bollinger 20/2", "VWAP")
PANELS = ("RSI 14",)


def _aligned(result: pd.Series | None, index: pd.Index) -> pd.Series:
    """A pandas-ta result as floats on `index` (pandas-ta returns None for an input shorter than
    the indicator's length: all NaN then); infinities become NaN."""
    if result is None:
        return pd.Series(np.nan, index=index, dtype=float)
    values = result.to_numpy(dtype=float)
    return pd.Series(np.where(np.isfinite(values), values, np.nan), index=index)


def _floats(close: pd.Series) -> pd.Series:
    return close.astype(float)


def sma(close: pd.Series, n: int = 20) -> pd.Series:
    """Simple moving average of the last `n` closes (NaN for the first `n - 1`)."""
    return _aligned(ta.sma(_floats(close), length=n, talib=False), close.index)


def ema(close: pd.Series, n: int = 50) -> pd.Series:
    """Exponential moving average (span `n`), seeded with the SMA of the first `n` closes."""
    return _aligned(ta.ema(_floats(close), length=n, talib=False), close.index)


def bollinger(close: pd.Series, n: int = 20, k: float = 2.0) -> tuple[pd.Series, pd.Series]:
    """Upper and lower Bollinger band: the `n`-bar SMA ± `k` population standard deviations."""
    bands = ta.bbands(_floats(close), length=n, std=k, talib=False)
    if bands is None:
        return _aligned(None, close.index), _aligned(None, close.index)
    upper = bands[next(c for c in bands.columns if c.startswith("BBU_"))]
    lower = bands[next(c for c in bands.columns if c.startswith("BBL_"))]
    return _aligned(upper, close.index), _aligned(lower, close.index)


def vwap(bars: pd.DataFrame) -> pd.Series:
    """Volume-weighted average price of the typical price, restarting each UTC day (each
    session); NaN while a day has traded no volume."""
    ts = pd.DatetimeIndex(bars["ts"])
    at = ts.tz_convert("UTC").tz_localize(None) if ts.tz is not None else ts
    columns = [
        pd.Series(bars[c].to_numpy(dtype=float), index=at)
        for c in ("high", "low", "close", "volume")
    ]
    return _aligned(ta.vwap(*columns, anchor="D"), bars.index)


def rsi(close: pd.Series, n: int = 14) -> pd.Series:
    """Wilder's relative strength index, 0-100 (NaN for the first `n` bars, and while the
    closes have not moved at all)."""
    return _aligned(ta.rsi(_floats(close), length=n, talib=False), close.index)


def overlay_lines(bars: pd.DataFrame, names: list[str]) -> dict[str, pd.Series]:
    """The chosen overlays as named series aligned with `bars`."""
    close = bars["close"]
    builders: dict[str, Callable[[], dict[str, pd.Series]]] = {
        "SMA 20": lambda: {"SMA 20": sma(close, 20)},
        "EMA 50": lambda: {"EMA 50": ema(close, 50)},
        "Bollinger 20/2": lambda: dict(
            zip(("Bollinger upper", "Bollinger lower"), bollinger(close), strict=True)
        ),
        "VWAP": lambda: {"VWAP": vwap(bars)},
    }
    out: dict[str, pd.Series] = {}
    for name in names:
        if name in builders:
            out.update(builders[name]())
    return out
