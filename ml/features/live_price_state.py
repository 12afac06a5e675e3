"""Running price-indicator state of several tickers, advanced by blocks of bars.

`PriceState.update` takes the next T bars of m tickers ([T, m] arrays: T = 1 as the scorer
advances minute by minute, a whole session when the backtest advances through a range) and
returns their rows of `PRICE_FEATURES`. The arithmetic is the same whatever T is, so a ticker's
rows do not depend on how its bars were grouped into calls (a test holds them bitwise equal):

- seed sums and the session VWAP sums are sequential cumulative sums (`np.cumsum`, one addition
  per bar in bar order);
- the EMA and Wilder recursions y = c x + (1 - c) y run as a first-order linear filter
  (`scipy.signal.lfilter`, the same two products and one addition per bar);
- rolling windows (Bollinger bands, volume z-score, realised volatility) are contiguous
  [T, m, n] blocks reduced along their last axis, as one window [m, n] would be.

The seeds and recursions are pandas-ta's own (see `ml.features.live_features`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

from ml.features.feature_engineering import PRICE_FEATURES

RING = 31  # closes kept: the current one and 30 before it (the longest return, ret_30)
RSI_N, ATR_N, BB_N, Z_N, VOL_N = 14, 14, 20, 30, 30
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
EPS = float(np.finfo(float).eps)  # pandas-ta's non_zero_range replaces an exact 0 with it


def _ema_k(n: int) -> float:
    return 2.0 / (n + 1)


def _recursion(
    before: np.ndarray, x: np.ndarray, k: np.ndarray, seed: tuple[int, int, int], c: float
) -> np.ndarray:
    """Values after each bar [T, m] of: y += x for start <= k <= seed_at, y /= n at seed_at,
    then y = c x + (1 - c) y (`seed` = start, seed_at, n; `before` [m]: y before the block,
    `k` [T, m]: each bar's index in its ticker's sequence)."""
    start, seed_at, n = seed
    seeding = (k >= start) & (k <= seed_at)
    summed = np.cumsum(np.concatenate([before[None, :], np.where(seeding, x, 0.0)]), axis=0)[1:]
    out = np.where(k == seed_at, summed / n, summed)
    first_run = np.clip(seed_at + 1 - k[0], 0, len(k))  # the first bar of the recursion
    for r0 in np.unique(first_run[first_run < len(k)]).tolist():
        cols = np.flatnonzero(first_run == r0)
        prior = before[cols] if r0 == 0 else out[r0 - 1, cols]
        out[r0:, cols], _ = lfilter(
            [c, 0.0], [1.0, -(1 - c)], x[r0:, cols], axis=0, zi=((1 - c) * prior)[None, :]
        )
    return out


def _windows(values: np.ndarray, n: int, bars: int) -> np.ndarray:
    """The last `n` values (oldest first) at each of the newest `bars` rows of `values`
    [L + bars, m] (L >= n - 1): a contiguous [bars, m, n] block."""
    return np.ascontiguousarray(sliding_window_view(values, n, axis=0)[-bars:])


def _segment_sums(before: np.ndarray, x: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Running sums of `x` [T, m] down each column, restarted where `new` (else continuing
    `before` [m]), added in bar order: each segment is one row of a zero-padded matrix."""
    T, m = x.shape
    first = np.where(new[0], 0.0, before) + x[0]
    flat = np.concatenate([first[None, :], x[1:]]).T.ravel()  # column by column
    starts = np.concatenate([np.ones((1, m), dtype=bool), new[1:]]).T.ravel()
    segment = np.cumsum(starts) - 1
    offset = np.arange(len(flat)) - np.flatnonzero(starts)[segment]
    padded = np.zeros((int(segment[-1]) + 1, int(offset.max()) + 1))
    padded[segment, offset] = flat
    sums = np.cumsum(padded, axis=1)[segment, offset]
    return np.asarray(sums.reshape(m, T).T)


class PriceState:
    """Running indicator state of several tickers (arrays indexed by ticker position)."""

    def __init__(self, n: int) -> None:
        self.k = np.zeros(n, dtype=np.int64)  # bars seen; the next bar has this index
        self.closes = np.full((n, RING), np.nan)  # the last closes, oldest first
        self.rets = np.full((n, VOL_N), np.nan)  # the last 30 one-bar log returns
        self.logvol = np.full((n, Z_N), np.nan)  # the last 30 log1p(volume)
        self.rsi_pos, self.rsi_neg = np.zeros(n), np.zeros(n)  # seed sums, then the averages
        self.fast, self.slow = np.zeros(n), np.zeros(n)  # seed sums, then the EMAs
        self.signal = np.zeros(n)  # MACD signal: seed sum, then the EMA
        self.atr = np.zeros(n)  # true-range seed sum, then the Wilder average
        self.day = np.full(n, -1, dtype=np.int64)  # New York date of the VWAP sums
        self.cum_pv, self.cum_v = np.zeros(n), np.zeros(n)
        self.started = np.zeros(n, dtype=bool)  # all price features defined once
        self.last = np.full((n, len(PRICE_FEATURES)), np.nan)  # last valid values

    def update(
        self,
        idx: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        day: np.ndarray,
    ) -> np.ndarray:
        """Advance tickers `idx` [m] (distinct) by the next T bars of each ([T, m] arrays,
        oldest first; `day`: each bar's New York date); returns their price feature rows
        [T, m, len(PRICE_FEATURES)] in `PRICE_FEATURES` order."""
        k = self.k[idx][None, :] + np.arange(len(close))[:, None]
        closes = np.concatenate([self.closes[idx].T, close])
        prev = closes[RING - 1 : -1]
        cols = self._returns(idx, k, closes)
        cols["rsi_14"] = self._rsi(idx, k, close - prev)
        cols["macd_norm"], cols["macd_hist_norm"] = self._macd(idx, k, close)
        cols["bb_pos"], cols["bb_width"] = self._bbands(k, closes)
        cols["atr_norm"] = self._atr(idx, k, high, low, prev) / close
        cols["range_norm"] = (high - low) / close
        cols["volume_z"] = self._volume_z(idx, k, volume)
        cols["vwap_dist"] = self._vwap_dist(idx, high, low, close, volume, day)
        self.closes[idx] = closes[-RING:].T
        self.k[idx] = k[-1] + 1
        rows = np.stack([cols[name] for name in PRICE_FEATURES], axis=-1)
        return self._carry(idx, rows)

    def _returns(self, idx: np.ndarray, k: np.ndarray, closes: np.ndarray) -> dict[str, np.ndarray]:
        close, out = closes[RING:], {}
        for n in (1, 5, 15, 30):
            back = closes[RING - n : len(closes) - n]
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"ret_{n}"] = np.where(k >= n, np.log(close / back), np.nan)
        out["realised_vol_30"] = self._realised_vol(idx, k, out["ret_1"])
        return out

    def _rsi(self, idx: np.ndarray, k: np.ndarray, diff: np.ndarray) -> np.ndarray:
        """pandas-ta rsi: Wilder averages of gains and losses, seeded with the mean of the first
        14 differences (the first one at index 1)."""
        pos = np.where(k >= 1, np.maximum(diff, 0.0), 0.0)
        neg = np.where(k >= 1, np.minimum(diff, 0.0), 0.0)
        seed, a = (0, RSI_N, RSI_N), 1.0 / RSI_N
        p = _recursion(self.rsi_pos[idx], pos, k, seed, a)
        n = _recursion(self.rsi_neg[idx], neg, k, seed, a)
        self.rsi_pos[idx], self.rsi_neg[idx] = p[-1], n[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            rsi = 100.0 * p / (p + np.abs(n))
        return np.where(k >= RSI_N, rsi, np.nan) / 100.0

    @staticmethod
    def _ema(before: np.ndarray, x: np.ndarray, k: np.ndarray, n: int, first: int) -> np.ndarray:
        """pandas-ta `_ema_aligned`: sum the `n` inputs ending at index `first + n - 1`, seed
        with their mean there, then y = c x + (1 - c) y."""
        return _recursion(before, x, k, (first, first + n - 1, n), _ema_k(n))

    def _macd(
        self, idx: np.ndarray, k: np.ndarray, close: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        fast = self._ema(self.fast[idx], close, k, MACD_FAST, 0)
        slow = self._ema(self.slow[idx], close, k, MACD_SLOW, 0)
        self.fast[idx], self.slow[idx] = fast[-1], slow[-1]
        macd = np.where(k >= MACD_SLOW - 1, fast - slow, np.nan)
        first = MACD_SLOW - 1
        signal = self._ema(self.signal[idx], np.nan_to_num(macd), k, MACD_SIGNAL, first)
        self.signal[idx] = signal[-1]
        hist = np.where(k >= first + MACD_SIGNAL - 1, macd - signal, np.nan)
        return macd / close, hist / close

    @staticmethod
    def _bbands(k: np.ndarray, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pandas-ta bbands(20, 2): SMA middle band, population standard deviation."""
        window = _windows(closes, BB_N, len(k))
        close = closes[RING:]
        ready = k >= BB_N - 1
        mid = window.mean(axis=-1)
        std = np.sqrt(window.var(axis=-1, ddof=0))
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
        tr = np.max(np.abs(np.stack([hl, high - prev, prev - low])), axis=0)
        tr = np.where(k >= 1, tr, 0.0)
        value = _recursion(self.atr[idx], tr, k, (0, ATR_N, ATR_N), 1.0 / ATR_N)
        self.atr[idx] = value[-1]
        return np.where(k >= ATR_N, value, np.nan)

    def _volume_z(self, idx: np.ndarray, k: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """pandas-ta zscore(log1p(volume), 30): sample standard deviation."""
        logvol = np.concatenate([self.logvol[idx].T, np.log1p(volume)])
        self.logvol[idx] = logvol[-Z_N:].T
        window = _windows(logvol, Z_N, len(k))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (window[..., -1] - window.mean(axis=-1)) / window.std(axis=-1, ddof=1)
        return np.where(k >= Z_N - 1, z, np.nan)

    def _realised_vol(self, idx: np.ndarray, k: np.ndarray, ret_1: np.ndarray) -> np.ndarray:
        """pandas-ta stdev(ret_1, 30, ddof=1) (the first return is at index 1)."""
        rets = np.concatenate([self.rets[idx].T, ret_1])
        self.rets[idx] = rets[-VOL_N:].T
        window = _windows(rets, VOL_N, len(k))
        with np.errstate(invalid="ignore"):
            vol = np.sqrt(window.var(axis=-1, ddof=1))
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
        new_day = day != np.concatenate([self.day[idx][None, :], day[:-1]])
        pv = _segment_sums(self.cum_pv[idx], (high + low + close) / 3.0 * volume, new_day)
        v = _segment_sums(self.cum_v[idx], volume, new_day)
        self.day[idx], self.cum_pv[idx], self.cum_v[idx] = day[-1], pv[-1], v[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.log(close / (pv / v)))

    def _carry(self, idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """As the batch does: infinities are missing values, and once every price feature has
        been defined, a missing value keeps the last defined one."""
        rows = np.where(np.isfinite(rows), rows, np.nan)
        defined = ~np.isnan(rows).any(axis=-1)
        started = np.logical_or.accumulate(
            np.concatenate([self.started[idx][None, :], defined]), axis=0
        )[1:]
        known = np.concatenate([self.last[idx][None], rows])  # the state's last values first
        valid = ~np.isnan(known)
        valid[0] = True
        steps = np.arange(len(known))[:, None, None]
        latest = np.take_along_axis(
            known, np.maximum.accumulate(np.where(valid, steps, 0), axis=0), axis=0
        )  # the last defined value at or before each bar
        self.last[idx], self.started[idx] = latest[-1], started[-1]
        return np.where(started[..., None] & np.isnan(rows), latest[:-1], rows)
