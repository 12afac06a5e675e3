"""The live feature path: each new bar's feature row from state carried forward, not recomputed.

`LiveFeatures` keeps, per ticker, the running state of every price indicator
(`ml.features.live_price_state.PriceState`: the EMA and Wilder averages of RSI, MACD and ATR with
their SMA seeds, the rolling windows of Bollinger bands, volume z-score and realised volatility, the
session VWAP sums) and the last feature rows. New bars update the state in O(1) per bar,
vectorised across tickers and across each ticker's new bars (one bar a minute as the scorer
runs, a session at a time as the backtest runs: the rows are the same either way), and yield
the same rows that `ml.features.feature_engineering.create_features` (pandas-ta) computes in batch
over the same bar sequence: the seeds and recursions are pandas-ta's own, so the two agree to float
rounding (a property test holds them within 1e-9 at random cut points). Time, news and macro
columns use the batch functions on the new bars only. Windows for any model version are the last
`window_length` rows, scaled with that version's saved scaler, built by the one window builder
(`ml.features.windows.gather_windows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.timeutil import NEW_YORK
from ml.features.feature_engineering import (
    BAR,
    FEATURE_COLUMNS,
    NEWS_FEATURES,
    PRICE_FEATURES,
    TIME_FEATURES,
    FeatureParams,
    MacroTables,
    NewsTimeline,
    macro_feature_values,
    macro_tables,
    news_feature_values,
    session_bounds,
    time_feature_values,
)
from ml.features.live_price_state import PriceState
from ml.features.windows import FeatureScaler, gather_windows


class FeatureRows:
    """The newest feature rows of one ticker (oldest first) in arrays, capped at `capacity`."""

    def __init__(self, n_features: int, capacity: int) -> None:
        self.capacity = capacity
        self.values = np.full((2 * capacity, n_features), np.nan)
        self.ts_ns = np.zeros(2 * capacity, dtype=np.int64)
        self.close = np.full(2 * capacity, np.nan)
        self.n = 0

    def add(self, ts_ns: np.ndarray, close: np.ndarray, rows: np.ndarray) -> None:
        k = len(ts_ns)
        if self.n + k > len(self.ts_ns):  # keep the newest `capacity` rows, then append
            keep = max(0, min(self.n, self.capacity - k))
            lo = self.n - keep
            self.values[:keep] = self.values[lo : self.n]
            self.ts_ns[:keep] = self.ts_ns[lo : self.n]
            self.close[:keep] = self.close[lo : self.n]
            self.n = keep
            if k > len(self.ts_ns):
                ts_ns, close, rows = (
                    ts_ns[-self.capacity :],
                    close[-self.capacity :],
                    rows[-self.capacity :],
                )
                k = len(ts_ns)
        self.values[self.n : self.n + k] = rows
        self.ts_ns[self.n : self.n + k] = ts_ns
        self.close[self.n : self.n + k] = close
        self.n += k


@dataclass(frozen=True)
class FeatureBatch:
    """Feature rows of new bars: ticker, bar time (ns), values [n, len(FEATURE_COLUMNS)]."""

    ticker: np.ndarray
    ts_ns: np.ndarray
    values: np.ndarray

    def frame(self) -> pd.DataFrame:
        out = pd.DataFrame(self.values, columns=list(FEATURE_COLUMNS))
        out.insert(0, "ts", pd.to_datetime(self.ts_ns, utc=True))
        out.insert(0, "ticker", self.ticker)
        return out


class LiveFeatures:
    """Feature rows of a ticker universe, advanced bar by bar (see the module docstring)."""

    def __init__(self, tickers: Sequence[str], params: FeatureParams, capacity: int = 512) -> None:
        self.tickers = list(tickers)
        self.position = {t: i for i, t in enumerate(self.tickers)}
        self.params = params
        self.capacity = capacity
        self.state = PriceState(len(self.tickers))
        self.history = [FeatureRows(len(FEATURE_COLUMNS), capacity) for _ in self.tickers]
        self.last_ns = np.full(len(self.tickers), np.iinfo(np.int64).min, dtype=np.int64)
        self._news: list[NewsTimeline] = [NewsTimeline.of(None)] * len(self.tickers)
        self._macro: MacroTables = {}
        self._sessions: dict[int, tuple[int, int]] = {}

    def set_context(self, news: pd.DataFrame | None, macro: pd.DataFrame | None) -> None:
        """The articles (ticker, available_at, sentiment) and macro releases new bars join."""
        by_ticker = dict(tuple(news.groupby("ticker"))) if news is not None and len(news) else {}
        self._news = [NewsTimeline.of(by_ticker.get(t)) for t in self.tickers]
        self._macro = macro_tables(macro)

    def last_ts(self, ticker: str) -> pd.Timestamp | None:
        ns = self.last_ns[self.position[ticker]]
        return None if ns == np.iinfo(np.int64).min else pd.Timestamp(int(ns), tz="UTC")

    def update(self, bars: pd.DataFrame) -> FeatureBatch:
        """Advance by `bars` (ticker, ts, open, high, low, close, volume), each newer than its
        ticker's last bar; returns their feature rows in time order."""
        where = pd.Index(self.tickers).get_indexer(bars["ticker"])
        known = where >= 0
        pos = where[known].astype(np.int64)
        ts_ns = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8[known]
        values = bars[["high", "low", "close", "volume"]].to_numpy(dtype=float)[known]
        order = np.lexsort((ts_ns, pos))  # each ticker's bars together, in time order
        pos, ts_ns, values = pos[order], ts_ns[order], values[order]
        fresh = ts_ns > self.last_ns[pos]
        pos, ts_ns, values = pos[fresh], ts_ns[fresh], values[fresh]
        out = np.full((len(pos), len(FEATURE_COLUMNS)), np.nan)
        if not len(pos):
            return FeatureBatch(np.array([], dtype=object), ts_ns, out)
        present, first, counts = np.unique(pos, return_index=True, return_counts=True)
        spans = list(zip(present.tolist(), first.tolist(), (first + counts).tolist(), strict=True))
        days, weekday, opens, closes = self._calendar(ts_ns)
        n_price = len(PRICE_FEATURES)
        out[:, :n_price] = self._price_rows(present, first, counts, values, days)
        n_time = n_price + len(TIME_FEATURES)
        out[:, n_price:n_time] = time_feature_values(ts_ns, opens, closes, weekday)
        close_ns = ts_ns + BAR.value
        n_news = n_time + len(NEWS_FEATURES)
        for p, lo, hi in spans:
            out[lo:hi, n_time:n_news] = news_feature_values(
                close_ns[lo:hi], self._news[p], self.params
            )
        out[:, n_news:] = macro_feature_values(close_ns, self._macro)
        for p, lo, hi in spans:
            self.history[p].add(ts_ns[lo:hi], values[lo:hi, 2], out[lo:hi])
            self.last_ns[p] = ts_ns[hi - 1]
        in_time = np.lexsort((pos, ts_ns))
        tickers = np.asarray(self.tickers, dtype=object)[pos[in_time]]
        return FeatureBatch(tickers, ts_ns[in_time], out[in_time])

    def _price_rows(
        self,
        present: np.ndarray,
        first: np.ndarray,
        counts: np.ndarray,
        values: np.ndarray,
        days: np.ndarray,
    ) -> np.ndarray:
        """Price feature rows of bars grouped by ticker (tickers `present`, each with `counts`
        bars from row `first`, in time order; high, low, close, volume `values`, New York
        `days`): each ticker's bars in one block, the tickers with as many advanced together."""
        out = np.empty((len(values), len(PRICE_FEATURES)))
        for count in np.unique(counts).tolist():
            same = counts == count
            rows = first[same][None, :] + np.arange(count)[:, None]  # [count, tickers]
            h, low, c, v = (values[rows, j] for j in range(4))
            out[rows] = self.state.update(present[same], h, low, c, v, days[rows])
        return out

    def _calendar(self, ts_ns: np.ndarray) -> tuple[np.ndarray, ...]:
        """New York date (yyyymmdd), weekday, session open and close (ns) of each bar time."""
        local = pd.DatetimeIndex(ts_ns, tz="UTC").tz_convert(NEW_YORK)
        days = np.asarray(local.year * 10_000 + local.month * 100 + local.day, dtype=np.int64)
        weekday = np.asarray(local.dayofweek)
        missing = [d for d in np.unique(days) if int(d) not in self._sessions]
        if missing:
            stamps = np.array(
                [
                    np.datetime64(f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}")
                    for d in missing
                ],
                dtype="datetime64[ns]",
            )
            opens, closes = session_bounds(stamps)
            for d, o, c in zip(missing, opens, closes, strict=True):
                self._sessions[int(d)] = (int(o), int(c))
        bounds = np.array([self._sessions[int(d)] for d in days], dtype=np.int64)
        return days, weekday, bounds[:, 0], bounds[:, 1]

    def windows(
        self,
        targets: Mapping[str, Sequence[pd.Timestamp] | np.ndarray],
        features: Sequence[str],
        window: int,
        scaler: FeatureScaler,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Scaled windows ending at each target bar (ticker -> bar times, as timestamps or UTC
        nanoseconds) that has `window` rows of history: (ticker, ts, close) of the windows
        built, and X [n, window, F]. The rows the windows cover are scaled in one call, then
        gathered (the scaler works row by row, so this equals scaling each window, and a row
        shared by many windows is scaled once)."""
        order = np.asarray([FEATURE_COLUMNS.index(f) for f in features], dtype=np.int64)
        blocks, block_ends, tickers, stamps_ns, closes = [], [], [], [], []
        covered = 0  # rows in the blocks so far
        for ticker, stamps in targets.items():
            p = self.position.get(ticker)
            if p is None or not len(stamps):
                continue
            rows = self.history[p]
            want = _as_ns(stamps)
            at = np.searchsorted(rows.ts_ns[: rows.n], want)
            found = (at < rows.n) & (rows.ts_ns[np.minimum(at, rows.n - 1)] == want)
            ends = at[found & (at >= window - 1)]
            if not len(ends):
                continue
            first = int(ends.min()) - window + 1  # only the rows the windows cover
            blocks.append(rows.values[first : int(ends.max()) + 1][:, order])
            block_ends.append(ends - first + covered)  # a window never leaves its block
            covered += len(blocks[-1])
            tickers.append(np.full(len(ends), ticker, dtype=object))
            stamps_ns.append(rows.ts_ns[ends])
            closes.append(rows.close[ends])
        if not blocks:
            empty = np.zeros((0, window, len(features)), dtype=np.float32)
            return pd.DataFrame({"ticker": [], "ts": [], "close": []}), empty
        keys = pd.DataFrame(
            {
                "ticker": np.concatenate(tickers),
                "ts": pd.DatetimeIndex(np.concatenate(stamps_ns), tz="UTC"),
                "close": np.concatenate(closes).astype(float),
            }
        )
        scaled = scaler.transform(np.concatenate(blocks))
        return keys, gather_windows(scaled, np.concatenate(block_ends), window)


def _as_ns(stamps: Sequence[pd.Timestamp] | np.ndarray) -> np.ndarray:
    """Bar times as UTC nanoseconds (int64)."""
    if isinstance(stamps, np.ndarray) and stamps.dtype == np.int64:
        return stamps
    return np.asarray(pd.DatetimeIndex(stamps).as_unit("ns").asi8)
