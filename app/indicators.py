"""Chart overlays computed from the displayed bars (causal: each value uses past bars only)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

OVERLAYS = ("SMA 20", "EMA 50", "Bollinger 20/2", "VWAP")
PANELS = ("RSI 14",)


def sma(close: pd.Series, n: int = 20) -> pd.Series:
    return close.rolling(n, min_periods=n).mean()


def ema(close: pd.Series, n: int = 50) -> pd.Series:
    return close.ewm(span=n, adjust=False, min_periods=n).mean()


def bollinger(close: pd.Series, n: int = 20, k: float = 2.0) -> tuple[pd.Series, pd.Series]:
    mid, sd = sma(close, n), close.rolling(n, min_periods=n).std()
    return mid + k * sd, mid - k * sd


def vwap(bars: pd.DataFrame) -> pd.Series:
    """Volume-weighted average price, restarting each UTC day (each session)."""
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    day = bars["ts"].dt.floor("D")
    pv = (typical * bars["volume"]).groupby(day).cumsum()
    vol = bars["volume"].groupby(day).cumsum()
    return pv / vol.replace(0, np.nan)


def rsi(close: pd.Series, n: int = 14) -> pd.Series:
    """Wilder's relative strength index, 0-100."""
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    rs = gain / loss.replace(0, np.nan)
    return (100 - 100 / (1 + rs)).where(loss > 0, 100.0).where(gain.notna())


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
