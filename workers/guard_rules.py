"""The data-quality guard's rules: each judges rows of the arranged bars
(`workers.guard_arrays.Bars`) and returns the rows it flags with a detail for a person (a
`Verdict`). Pure numpy over all tickers at once (no loop per bar), no database.

The rules, in the priority order `workers.quality_guard` applies them in (a bar gets the first
reason that applies):

- ``zero_or_negative``: a price or a volume the bar rule refuses (`db.bar_rule`: a price that
  is not a finite positive number, or a volume that is not a finite non-negative one).
- ``unit_error``: a price 50x-200x (or 1/200-1/50) the median close of the previous
  `unit_lookback_bars` bars, the 100x currency-unit slip yfinance's `repair` looks for. Closes
  10x off the ticker's level (the median of its last stored bars) stay out of that median (and
  a window with nothing else falls back on that level), so a run of 100x bars stays flagged.
- ``ohlc_inconsistent``: high below open, close or low; low above open or close.
- ``stale``: the `stale_run_bars`-th and later bar of a run of bars identical to the one before
  (same OHLC; volume 0 or the same).
- ``spike``: r_t is the log return of bar t against the previous good close of its session,
  m and s the median and MAD of the intraday returns of the `spike_lookback_bars` bars before
  t, and ``z = (r_t - m) / max(1.4826 s, min_return_scale)``. Bar t is a spike when
  |z| >= `spike_z` *and the next bar reverts*: |log(c_{t+1} / c_{t-1})| <= `revert_fraction`
  |r_t|. A real move (a news jump that holds) is as large but does not revert. The first bar
  of a session is never a close spike (its return is the overnight gap). A high (low) more than
  `wick_z` robust sigmas above (below) the bar's body is a spike too, judged on the bar alone.
- ``level_shift``: M_b and M_a are the median closes of the `shift_bars` bars before t and of
  t with the `shift_bars` - 1 after it, D = log(M_a / M_b). Bar t is the onset of a level shift
  when |D| >= log(`shift_min_ratio`), t's own jump carries at least half of D (only the onset
  is named), and the corporate-action ledger does not explain D: the ticker's actions with
  ex-date on t's session predict E (log(1 / ratio) per split, log(1 - amount / M_b) per
  dividend) and |D - E| >= log(`shift_min_ratio`). Raw bars that show a recorded action
  (D ~ E) and bars already adjusted for it (D ~ 0) both pass.

Defaults. Measured on the simulated market (25 sessions x 20 tickers, news jumps, gaps, a split,
dividends): no bar whose next bar reverts has |z| above 5 (spike_z 10), no wick is above 2.1
robust sigmas (wick_z 20), the largest one-bar move without a corporate action is 9.5% (an
overnight gap; shift_min_ratio 1.25), and the robust sigma of minute returns is 5-16 bp (1st
to 99th percentile); its floor of 5 bp keeps a quiet stock's tick-sized moves from scoring high.
Real minute data has fatter tails: a real 25% earnings gap is a level shift to confirm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd

from db.bar_rule import PRICE_FIELDS, valid_prices, valid_volumes
from workers.guard_arrays import NS_PER_DAY, Bars, row_median, window

MAD_TO_SIGMA = 1.4826
FAR_OFF = 10.0  # a close this far from the ticker's level stays out of the unit reference
Verdict = tuple[np.ndarray, list[str]]  # the flagged rows and a detail for each
Ledger: TypeAlias = pd.DataFrame | Callable[[], pd.DataFrame]  # the ledger, or its reader


@dataclass(frozen=True)
class GuardParams:
    """Thresholds of the guard; the defaults and their reasons are in the module docstring."""

    unit_ratio_min: float = 50.0  # a price 50x..200x (1/200..1/50) its reference: unit error
    unit_ratio_max: float = 200.0
    unit_lookback_bars: int = 30  # the reference: median close of this many previous bars
    spike_lookback_bars: int = 120  # returns behind the robust median and MAD
    min_scale_returns: int = 30  # fewer returns than this in the window: no spike verdict
    min_return_scale: float = 0.0005  # floor of the robust sigma of 1-minute log returns (5 bp)
    spike_z: float = 10.0  # robust z of a close spike (which must revert too)
    revert_fraction: float = 0.25  # the next close is back within this share of the jump
    wick_z: float = 20.0  # a high/low this many robust sigmas beyond the body is a spike
    stale_run_bars: int = 15  # identical bars in a row from which on they are stale
    shift_bars: int = 15  # median of this many bars before vs from the onset on
    shift_min_ratio: float = 1.25  # level moved by this factor either way: a level shift
    ohlc_tolerance: float = 1e-9  # relative slack of the OHLC ordering

    def __post_init__(self) -> None:
        if not 1.0 < self.unit_ratio_min < self.unit_ratio_max:
            raise ValueError("unit_ratio_min must be above 1 and below unit_ratio_max")
        if min(self.unit_lookback_bars, self.min_scale_returns, self.shift_bars) < 2:
            raise ValueError("unit_lookback_bars, min_scale_returns, shift_bars must be >= 2")
        if self.spike_lookback_bars < self.min_scale_returns or self.stale_run_bars < 2:
            raise ValueError("spike_lookback_bars >= min_scale_returns, stale_run_bars >= 2")
        if min(self.min_return_scale, self.spike_z, self.wick_z) <= 0:
            raise ValueError("min_return_scale, spike_z and wick_z must be positive")
        if not 0 < self.revert_fraction < 1 or self.shift_min_ratio <= 1:
            raise ValueError("revert_fraction must be in (0, 1) and shift_min_ratio above 1")

    @property
    def history_bars(self) -> int:
        """Stored bars per ticker the write path passes as `history` (enough for every rule)."""
        return max(
            self.spike_lookback_bars + 2,
            2 * self.shift_bars,
            self.unit_lookback_bars,
            self.stale_run_bars,
        )


@dataclass(frozen=True)
class Returns:
    """Log closes, the row of each bar's previous good close (-1: none) and the intraday log
    return against it (NaN across a night, and for bars flagged `hard`: not trusted at all)."""

    log_close: np.ndarray
    prev: np.ndarray
    intraday: np.ndarray
    hard: np.ndarray


def zero_or_negative(b: Bars, rows: np.ndarray) -> Verdict:
    """The bars at `rows` with a price or a volume the bar rule refuses (`db.bar_rule`)."""
    bad_price = ~valid_prices(b.price[rows])
    bad = bad_price.any(axis=1) | ~valid_volumes(b.volume[rows])
    details = []
    for i in np.flatnonzero(bad):
        k = int(np.argmax(bad_price[i]))
        details.append(
            f"{PRICE_FIELDS[k]} {b.price[rows[i], k]:g} is not a positive price"
            if bad_price[i].any()
            else f"volume {b.volume[rows[i]]:g} is negative or missing"
        )
    return rows[bad], details


def _level(b: Bars, rows: np.ndarray, p: GuardParams) -> np.ndarray:
    """The ticker's price level per row: the median close of the `unit_lookback_bars` stored
    bars before its first new bar, or of its first new bars when fewer are stored."""
    new_run = b.is_new & np.r_[True, ~b.is_new[:-1] | (b.code[1:] != b.code[:-1])]
    first_new, n = np.flatnonzero(new_run), p.unit_lookback_bars
    level, count = row_median(window(b, b.close, first_new, -n, n))
    if (count < n).any():
        level = np.where(count >= n, level, row_median(window(b, b.close, first_new, 0, n))[0])
    by_code = np.full(len(b.names), np.nan)
    by_code[b.code[first_new]] = level
    return np.asarray(by_code[b.code[rows]])


def unit_error(b: Bars, rows: np.ndarray, p: GuardParams) -> Verdict:
    level = _level(b, rows, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        off = b.price[rows] / level[:, None]
        far = ((off >= FAR_OFF) | (off <= 1 / FAR_OFF)).any(axis=1)
        rows, level = rows[far], level[far, None]
        if not len(rows):
            return rows, []
        n = p.unit_lookback_bars
        win = window(b, b.close, rows, -n, n)
        win[(win >= FAR_OFF * level) | (win <= level / FAR_OFF)] = np.nan
        ref, count = row_median(win)
        ref = np.where(count > 0, ref, level[:, 0])  # a whole window off: the level before
        ratio = b.price[rows] / ref[:, None]
        up, down = ratio, 1 / ratio
    in_band = ((up >= p.unit_ratio_min) & (up <= p.unit_ratio_max)) | (
        (down >= p.unit_ratio_min) & (down <= p.unit_ratio_max)
    )
    hit = np.flatnonzero(in_band.any(axis=1))
    details = []
    for i in hit:
        k = 3 if in_band[i, 3] else int(np.argmax(in_band[i]))  # name the close if it is off
        of = f"of the previous {count[i]} bars" if count[i] else "of the bars before this run"
        name = PRICE_FIELDS[k]
        details.append(
            f"{name} {b.price[rows[i], k]:g} is {ratio[i, k]:.3g}x the median {ref[i]:g} {of}"
        )
    return rows[hit], details


def ohlc_inconsistent(b: Bars, rows: np.ndarray, p: GuardParams) -> Verdict:
    o, h, lo, c = (b.price[rows, k] for k in range(4))
    slack = 1.0 + p.ohlc_tolerance
    bad = (h * slack < np.maximum.reduce([o, c, lo])) | (lo > np.minimum(o, c) * slack)
    details = []
    for i in np.flatnonzero(bad):
        name, value = ("close", c[i]) if not lo[i] <= c[i] <= h[i] else ("open", o[i])
        details.append(
            f"low {lo[i]:g} is above high {h[i]:g}"
            if lo[i] > h[i] * slack
            else f"{name} {value:g} is outside low {lo[i]:g} - high {h[i]:g}"
        )
    return rows[bad], details


def stale(b: Bars, rows: np.ndarray, p: GuardParams) -> Verdict:
    vol = b.volume
    same = np.r_[
        False,
        (b.code[1:] == b.code[:-1])
        & (b.price[1:] == b.price[:-1]).all(axis=1)
        & ((vol[1:] == 0) | (vol[1:] == vol[:-1])),
    ]
    if not same[rows].any():
        return rows[:0], []
    idx = np.arange(len(same))
    run_start = np.maximum.accumulate(np.where(same, 0, idx))
    run = (idx - run_start + 1)[rows]
    hit = run >= p.stale_run_bars
    details = [
        f"bar {run[i]} of a run of identical bars (close {b.close[rows[i]]:g}, volume "
        f"{vol[rows[i]]:g}) since {pd.Timestamp(b.ts[run_start[rows[i]]], tz='UTC'):%H:%M} UTC"
        for i in np.flatnonzero(hit)
    ]
    return rows[hit], details


def close_returns(b: Bars, hard: np.ndarray) -> Returns:
    with np.errstate(invalid="ignore", divide="ignore"):
        log_close = np.log(np.where(b.close > 0, b.close, np.nan))
    good = ~hard & ~np.isnan(log_close)
    idx = np.arange(len(good))
    prev = np.r_[-1, np.maximum.accumulate(np.where(good, idx, -1))[:-1]]
    prev[prev < b.start] = -1
    ret = log_close - np.where(prev >= 0, log_close[np.maximum(prev, 0)], np.nan)
    intraday = good & (prev >= 0) & (b.session[np.maximum(prev, 0)] == b.session)
    return Returns(log_close, prev, np.where(intraday, ret, np.nan), hard)


def _scale(b: Bars, r: Returns, rows: np.ndarray, p: GuardParams) -> tuple[np.ndarray, ...]:
    """Robust median and sigma of the intraday returns before each row (sigma NaN if few)."""
    n = p.spike_lookback_bars
    win = window(b, r.intraday, rows, -n, n)
    med, count = row_median(win)
    mad, _ = row_median(np.abs(win - med[:, None]))
    sigma = np.maximum(MAD_TO_SIGMA * mad, p.min_return_scale)
    return med, np.where(count >= p.min_scale_returns, sigma, np.nan)


def spike_z(
    b: Bars, r: Returns, rows: np.ndarray, p: GuardParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows among `rows` whose close moved at least spike_z robust sigmas, with the move
    and z of each. A move below half of spike_z * min_return_scale cannot reach spike_z: not
    computed."""
    with np.errstate(invalid="ignore"):
        rows = rows[np.abs(r.intraday[rows]) >= 0.5 * p.spike_z * p.min_return_scale]
        if not len(rows):
            return rows, np.empty(0), np.empty(0)
        move = r.intraday[rows]
        med, sigma = _scale(b, r, rows, p)
        z = (move - med) / sigma
        big = np.abs(z) >= p.spike_z
    return rows[big], move[big], z[big]


def spike(b: Bars, r: Returns, rows: np.ndarray, p: GuardParams) -> Verdict:
    """Close spikes at `rows` (each has a next bar of its ticker), decided by that next bar."""
    rows, move, z = spike_z(b, r, rows[b.session[rows + 1] == b.session[rows]], p)
    back = r.log_close[rows + 1] - r.log_close[r.prev[rows]]
    hit = np.abs(back) <= p.revert_fraction * np.abs(move)
    details = [
        f"close {b.close[rows[i]]:g} moved {np.expm1(move[i]):+.2%} (robust z {z[i]:.0f}) and "
        f"the next close {b.close[rows[i] + 1]:g} is back at {np.expm1(back[i]):+.2%}"
        for i in np.flatnonzero(hit)
    ]
    return rows[hit], details


def wick(b: Bars, r: Returns, rows: np.ndarray, p: GuardParams) -> Verdict:
    """A high or low far outside the bar's body (open to close), in robust sigmas."""
    o, h, lo, c = (b.price[rows, k] for k in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        wick = np.log(np.c_[h / np.maximum(o, c), np.minimum(o, c) / lo])
        big = wick.max(axis=1) >= p.wick_z * p.min_return_scale
        rows, wick = rows[big], wick[big]
        if not len(rows):
            return rows, []
        z = wick / _scale(b, r, rows, p)[1][:, None]
        hit = (z >= p.wick_z).any(axis=1)
    details = []
    for i in np.flatnonzero(hit):
        k = int(np.argmax(z[i]))
        name, side, value = ("high", "above", h[big][i]) if k == 0 else ("low", "below", lo[big][i])
        details.append(
            f"{name} {value:g} is {np.expm1(wick[i, k]):.1%} {side} the bar's body (robust z "
            f"{z[i, k]:.0f}; open {o[big][i]:g}, close {c[big][i]:g})"
        )
    return rows[hit], details


def _explained(
    b: Bars, rows: np.ndarray, close_before: np.ndarray, actions: pd.DataFrame
) -> np.ndarray:
    """The log price move the ledger predicts on each row's session (0 without an action)."""
    out = np.zeros(len(rows))
    if actions.empty or not len(rows):
        return out
    ex_day = pd.to_datetime(actions["ex_date"]).to_numpy("datetime64[D]").astype(np.int64)
    ticker, kind = actions["ticker"].to_numpy(object), actions["action_type"].to_numpy(object)
    value = actions["value"].to_numpy(np.float64)
    for i, row in enumerate(rows):  # one per onset candidate: rare
        mine = (ticker == b.names[b.code[row]]) & (ex_day == b.session[row])
        for k, v in zip(kind[mine], value[mine], strict=True):
            if k == "split" and v > 0:
                out[i] -= math.log(v)
            elif k == "dividend" and 0 < v < close_before[i]:
                out[i] += math.log(1.0 - v / close_before[i])
    return out


def level_shift(b: Bars, r: Returns, rows: np.ndarray, actions: Ledger, p: GuardParams) -> Verdict:
    """Level-shift onsets at `rows` (each has shift_bars - 1 bars after it)."""
    limit, k = math.log(p.shift_min_ratio), p.shift_bars
    prev = r.prev[rows]
    jump = np.where(prev >= 0, r.log_close[rows] - r.log_close[np.maximum(prev, 0)], 0.0)
    keep = ~r.hard[rows] & (np.abs(np.nan_to_num(jump)) >= 0.5 * limit)
    rows, jump = rows[keep], jump[keep]
    if not len(rows):
        return rows, []
    clean = np.where(r.hard, np.nan, r.log_close)
    before, n_before = row_median(window(b, clean, rows, -k, k))
    after, n_after = row_median(window(b, clean, rows, 0, k))
    shift = after - before
    ledger = actions() if callable(actions) else actions  # read only for a candidate onset
    expected = _explained(b, rows, np.exp(before), ledger)
    with np.errstate(invalid="ignore"):
        hit = (np.minimum(n_before, n_after) > k // 2) & (np.abs(shift) >= limit)
        hit &= (np.abs(shift - expected) >= limit) & (jump * shift >= 0.5 * shift**2)
    details = []
    for i in np.flatnonzero(hit):
        day = pd.Timestamp(b.session[rows[i]] * NS_PER_DAY).date()
        ledger = f"explains {math.exp(expected[i]):.3g}x only" if expected[i] else "has nothing"
        details.append(
            f"the close level moved {math.exp(shift[i]):.3g}x (median {math.exp(before[i]):g} "
            f"of the {k} bars before -> {math.exp(after[i]):g} from here on); the "
            f"corporate-action ledger {ledger} for {b.names[b.code[rows[i]]]} on {day}"
        )
    return rows[hit], details
