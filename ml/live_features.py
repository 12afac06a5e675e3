"""The live feature path: each new bar's feature row from state carried forward, not recomputed.

`LiveFeatures` keeps, per ticker, the running state of every price indicator (the EMA and
Wilder averages of RSI, MACD and ATR with their SMA seeds, the rolling windows of Bollinger
bands, volume z-score and realised volatility, the session VWAP sums) and the last feature rows.
A new bar updates the state in O(1) per ticker, vectorised across tickers, and yields the same
row that `ml.feature_engineering.create_features` (pandas-ta) computes in batch over the same
bar sequence: the seeds and recursions are pandas-ta's own, so the two agree to float rounding
(a property test holds them within 1e-9 at random cut points). Time, news and macro columns use
the batch functions on the new bars only. Windows for any model version are the last
`window_length` rows, scaled with that version's saved scaler, built by the one window builder
(`ml.windows.gather_windows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.feature_engineering import (
    BAR,
    FEATURE_COLUMNS,
    NEW_YORK,
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
from ml.windows import FeatureScaler, gather_windows

RING = 31  # closes kept: the current one and 30 before it (the longest return, ret_30)
RSI_N, ATR_N, BB_N, Z_N, VOL_N = 14, 14, 20, 30, 30
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
EPS = float(np.finfo(float).eps)  # pandas-ta's non_zero_range replaces an exact 0 with it


def _ema_k(n: int) -> float:
    return 2.0 / (n + 1)


class PriceState:
    """Running indicator state of several tickers (arrays indexed by ticker position)."""

    def __init__(self, n: int) -> None:
        nan = np.full(n, np.nan)
        self.k = np.zeros(n, dtype=np.int64)  # bars seen; the next bar has this index
        self.closes = np.full((n, RING), np.nan)
        self.rets = np.full((n, VOL_N), np.nan)  # the last 30 one-bar log returns
        self.logvol = np.full((n, Z_N), np.nan)  # the last 30 log1p(volume)
        self.rsi_pos, self.rsi_neg = np.zeros(n), np.zeros(n)  # seed sums, then the averages
        self.fast, self.slow = np.zeros(n), np.zeros(n)  # seed sums, then the EMAs
        self.signal = np.zeros(n)  # MACD signal: seed sum, then the EMA
        self.atr = np.zeros(n)  # true-range seed sum, then the Wilder average
        self.day = np.full(n, -1, dtype=np.int64)  # New York date of the VWAP sums
        self.cum_pv, self.cum_v = np.zeros(n), np.zeros(n)
        self.started = np.zeros(n, dtype=bool)  # all price features defined once
        self.last = np.tile(nan[:, None], (1, len(PRICE_FEATURES)))  # last valid values

    def update(
        self,
        idx: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        day: np.ndarray,
    ) -> np.ndarray:
        """Advance tickers `idx` (distinct) by one bar each; returns their price feature rows
        [len(idx), len(PRICE_FEATURES)] in `PRICE_FEATURES` order."""
        k = self.k[idx]
        prev = self.closes[idx, (k - 1) % RING]
        self.closes[idx, k % RING] = close
        cols = self._returns(idx, k, close)
        cols["rsi_14"] = self._rsi(idx, k, close - prev)
        cols["macd_norm"], cols["macd_hist_norm"] = self._macd(idx, k, close)
        cols["bb_pos"], cols["bb_width"] = self._bbands(idx, k, close)
        cols["atr_norm"] = self._atr(idx, k, high, low, prev) / close
        cols["range_norm"] = (high - low) / close
        cols["volume_z"] = self._volume_z(idx, k, volume)
        cols["realised_vol_30"] = self._realised_vol(idx, k, cols["ret_1"])
        cols["vwap_dist"] = self._vwap_dist(idx, high, low, close, volume, day)
        self.k[idx] = k + 1
        rows = np.column_stack([cols[name] for name in PRICE_FEATURES])
        return self._carry(idx, rows)

    def _returns(self, idx: np.ndarray, k: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for n in (1, 5, 15, 30):
            back = self.closes[idx, (k - n) % RING]
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"ret_{n}"] = np.where(k >= n, np.log(close / back), np.nan)
        return out

    def _rsi(self, idx: np.ndarray, k: np.ndarray, diff: np.ndarray) -> np.ndarray:
        """pandas-ta rsi: Wilder averages of gains and losses, seeded with the mean of the first
        14 differences (the first one at index 1)."""
        pos, neg = np.where(k >= 1, np.maximum(diff, 0.0), 0.0), np.minimum(diff, 0.0)
        neg = np.where(k >= 1, neg, 0.0)
        a = 1.0 / RSI_N
        seeding, seeded, running = k <= RSI_N, k == RSI_N, k > RSI_N
        p, n = self.rsi_pos[idx], self.rsi_neg[idx]
        p = np.where(seeding, p + pos, p)
        n = np.where(seeding, n + neg, n)
        p = np.where(seeded, p / RSI_N, p)
        n = np.where(seeded, n / RSI_N, n)
        p = np.where(running, (1 - a) * p + a * pos, p)
        n = np.where(running, (1 - a) * n + a * neg, n)
        self.rsi_pos[idx], self.rsi_neg[idx] = p, n
        with np.errstate(divide="ignore", invalid="ignore"):
            rsi = 100.0 * p / (p + np.abs(n))
        return np.where(k >= RSI_N, rsi, np.nan) / 100.0

    @staticmethod
    def _ema(value: np.ndarray, x: np.ndarray, k: np.ndarray, n: int, first: int) -> np.ndarray:
        """pandas-ta `_ema_aligned`: sum the `n` inputs ending at index `first + n - 1`, seed
        with their mean there, then y = c x + (1 - c) y."""
        seed_at = first + n - 1
        c = _ema_k(n)
        value = np.where((k >= first) & (k <= seed_at), value + x, value)
        value = np.where(k == seed_at, value / n, value)
        return np.where(k > seed_at, c * x + (1 - c) * value, value)

    def _macd(
        self, idx: np.ndarray, k: np.ndarray, close: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        fast = self._ema(self.fast[idx], close, k, MACD_FAST, 0)
        slow = self._ema(self.slow[idx], close, k, MACD_SLOW, 0)
        self.fast[idx], self.slow[idx] = fast, slow
        macd = np.where(k >= MACD_SLOW - 1, fast - slow, np.nan)
        first = MACD_SLOW - 1
        signal = self._ema(self.signal[idx], np.nan_to_num(macd), k, MACD_SIGNAL, first)
        self.signal[idx] = signal
        hist = np.where(k >= first + MACD_SIGNAL - 1, macd - signal, np.nan)
        return macd / close, hist / close

    def _window(self, idx: np.ndarray, k: np.ndarray, n: int) -> np.ndarray:
        """The last `n` closes (oldest first) of each ticker: [len(idx), n]."""
        pos = (k[:, None] - np.arange(n - 1, -1, -1)[None, :]) % RING
        return np.asarray(self.closes[idx[:, None], pos])

    def _bbands(self, idx: np.ndarray, k: np.ndarray, close: np.ndarray) -> tuple[np.ndarray, ...]:
        """pandas-ta bbands(20, 2): SMA middle band, population standard deviation."""
        window = self._window(idx, k, BB_N)
        ready = k >= BB_N - 1
        mid = window.mean(axis=1)
        std = np.sqrt(window.var(axis=1, ddof=0))
        lower, upper = mid - 2.0 * std, mid + 2.0 * std
        ulr = upper - lower
        ulr = np.where(ulr != 0, ulr, EPS)
        above = close - lower
        above = np.where(above != 0, above, EPS)
        with np.errstate(divide="ignore", invalid="ignore"):
            width, pos = 100.0 * ulr / mid, above / ulr
        return np.where(ready, pos, np.nan), np.where(ready, width, np.nan)

    def _atr(
        self, idx: np.ndarray, k: np.ndarray, high: np.ndarray, low: np.ndarray, prev: np.ndarray
    ) -> np.ndarray:
        """pandas-ta atr(14): Wilder average of the true range (defined from the second bar)."""
        hl = high - low
        hl = np.where(hl != 0, hl, EPS)
        tr = np.max(np.abs(np.column_stack([hl, high - prev, prev - low])), axis=1)
        tr = np.where(k >= 1, tr, 0.0)
        a = 1.0 / ATR_N
        value = self.atr[idx]
        value = np.where(k <= ATR_N, value + tr, value)
        value = np.where(k == ATR_N, value / ATR_N, value)
        value = np.where(k > ATR_N, (1 - a) * value + a * tr, value)
        self.atr[idx] = value
        return np.where(k >= ATR_N, value, np.nan)

    def _volume_z(self, idx: np.ndarray, k: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """pandas-ta zscore(log1p(volume), 30): sample standard deviation."""
        self.logvol[idx] = np.roll(self.logvol[idx], -1, axis=1)
        self.logvol[idx, -1] = np.log1p(volume)
        window = self.logvol[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (window[:, -1] - window.mean(axis=1)) / window.std(axis=1, ddof=1)
        return np.where(k >= Z_N - 1, z, np.nan)

    def _realised_vol(self, idx: np.ndarray, k: np.ndarray, ret_1: np.ndarray) -> np.ndarray:
        """pandas-ta stdev(ret_1, 30, ddof=1) (the first return is at index 1)."""
        self.rets[idx] = np.roll(self.rets[idx], -1, axis=1)
        self.rets[idx, -1] = ret_1
        window = self.rets[idx]
        with np.errstate(invalid="ignore"):
            vol = np.sqrt(window.var(axis=1, ddof=1))
        return np.where(k >= VOL_N, vol, np.nan)

    def _vwap_dist(
        self,
        idx: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        day: np.ndarray,
    ) -> np.ndarray:
        """log(close / VWAP), the VWAP summed from each New York day's first bar."""
        new_day = self.day[idx] != day
        pv = np.where(new_day, 0.0, self.cum_pv[idx]) + (high + low + close) / 3.0 * volume
        v = np.where(new_day, 0.0, self.cum_v[idx]) + volume
        self.day[idx], self.cum_pv[idx], self.cum_v[idx] = day, pv, v
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.log(close / (pv / v)))

    def _carry(self, idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """As the batch does: infinities are missing values, and once every price feature has
        been defined, a missing value keeps the last defined one."""
        rows = np.where(np.isfinite(rows), rows, np.nan)
        started = self.started[idx] | ~np.isnan(rows).any(axis=1)
        last = self.last[idx]
        rows = np.where(started[:, None] & np.isnan(rows), last, rows)
        self.last[idx] = np.where(np.isnan(rows), last, rows)
        self.started[idx] = started
        return rows


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
        known = bars["ticker"].isin(self.position).to_numpy()
        pos = bars["ticker"].to_numpy()[known]
        pos = np.fromiter((self.position[t] for t in pos), dtype=np.int64, count=len(pos))
        ts_ns = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8[known]
        values = bars[["high", "low", "close", "volume"]].to_numpy(dtype=float)[known]
        order = np.lexsort((pos, ts_ns))
        pos, ts_ns, values = pos[order], ts_ns[order], values[order]
        fresh = ts_ns > self.last_ns[pos]
        pos, ts_ns, values = pos[fresh], ts_ns[fresh], values[fresh]
        out = np.full((len(pos), len(FEATURE_COLUMNS)), np.nan)
        if not len(pos):
            return FeatureBatch(np.array([], dtype=object), ts_ns, out)
        days, weekday, opens, closes = self._calendar(ts_ns)
        n_price = len(PRICE_FEATURES)
        for lo, hi in _runs(ts_ns):  # one vectorised step per minute
            h, low, c, v = values[lo:hi].T
            out[lo:hi, :n_price] = self.state.update(pos[lo:hi], h, low, c, v, days[lo:hi])
        n_time = n_price + len(TIME_FEATURES)
        out[:, n_price:n_time] = time_feature_values(ts_ns, opens, closes, weekday)
        close_ns = ts_ns + BAR.value
        n_news = n_time + len(NEWS_FEATURES)
        for p in np.unique(pos):
            mine = pos == p
            out[mine, n_time:n_news] = news_feature_values(
                close_ns[mine], self._news[p], self.params
            )
        out[:, n_news:] = macro_feature_values(close_ns, self._macro)
        for p in np.unique(pos):
            mine = pos == p
            self.history[p].add(ts_ns[mine], values[mine, 2], out[mine])
            self.last_ns[p] = ts_ns[mine][-1]
        tickers = np.asarray(self.tickers, dtype=object)[pos]
        return FeatureBatch(tickers, ts_ns, out)

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


def _runs(stamps: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) index ranges of equal consecutive values in sorted `stamps`."""
    if len(stamps) == 0:
        return []
    cuts = np.flatnonzero(np.diff(stamps)) + 1
    edges = np.concatenate([[0], cuts, [len(stamps)]])
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
