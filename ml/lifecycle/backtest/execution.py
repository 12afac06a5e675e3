"""The execution rule of the backtest (see `ml.lifecycle.backtest`): costs and slippage, each
ticker's bars, the trades a signal sequence makes, and the per-bar returns of the account following
them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.features.labels import session_codes

SLIPPAGE_MODELS = ("none", "fixed", "range")
TRADE_COLUMNS = ["signal_ts", "direction", "entry_ts", "entry_price", "exit_ts", "exit_price"]
TRADE_COLUMNS += ["exit_reason", "bars", "gross_return", "net_return", "turnover"]


class BacktestRefused(ValueError):
    """The backtest cannot run honestly, or has nothing to run on; the message says why."""


@dataclass(frozen=True)
class Costs:
    """Fees per side in bps of the traded value, and the slippage model of each fill."""

    cost_bps: float = 1.0
    slippage: str = "none"
    slippage_bps: float = 0.0
    range_share: float = 0.0

    def __post_init__(self) -> None:
        if self.slippage not in SLIPPAGE_MODELS:
            raise BacktestRefused(
                f"slippage model {self.slippage!r} is not one of {SLIPPAGE_MODELS}"
            )
        if min(self.cost_bps, self.slippage_bps, self.range_share) < 0:
            raise BacktestRefused("costs and slippage cannot be negative")

    def slip(self, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
        """Adverse price move (a fraction) of a fill whose last complete bar is each bar."""
        if self.slippage == "fixed":
            return np.full(len(close), self.slippage_bps / 1e4)
        if self.slippage == "range":
            return np.asarray(self.range_share * (high - low) / close)
        return np.zeros(len(close))


@dataclass(frozen=True)
class TickerBars:
    """One ticker's bars in the range (time order); `last`: index of each bar's session's last
    bar in the range."""

    ts: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, bars: pd.DataFrame) -> TickerBars:
        ts = pd.DatetimeIndex(bars["ts"])
        codes = session_codes(ts)
        last = np.searchsorted(codes, codes, side="right") - 1
        cols = {c: bars[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close")}
        return cls(ts=ts, last=last, **cols)


def plan_trades(action: np.ndarray, horizon: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The trades of the execution rule (`ml.lifecycle.backtest`), [k, 5] ints: signal bar, entry
    bar, exit bar, direction, 1 when it exits at the open; `action` +1/-1/0 and `horizon` (bars)
    per signal bar, `last` the index of each bar's session's last bar."""
    buys, sells = np.flatnonzero(action > 0), np.flatnonzero(action < 0)
    trades: list[tuple[int, int, int, int, int]] = []
    free = 0  # the first bar whose signal may open a position
    for i in np.flatnonzero(action != 0).tolist():
        if i < free or i + 1 > last[i]:
            continue
        d = int(action[i])
        limit = min(i + int(horizon[i]), int(last[i]))
        opposite = sells if d > 0 else buys
        k = int(np.searchsorted(opposite, i + 1))
        if k < len(opposite) and opposite[k] < limit:
            free = int(opposite[k]) + 1
            trades.append((i, i + 1, free, d, 1))
        else:
            trades.append((i, i + 1, limit, d, 0))
            free = limit
    return np.asarray(trades, dtype=np.int64).reshape(-1, 5)


def run_account(
    px: TickerBars, trades: np.ndarray, horizon: np.ndarray, costs: Costs
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Per-bar returns of a ticker's account following `trades` (`plan_trades`), whether each
    bar was held, and the trades with their fills, gross and net returns (of the capital at
    entry), vectorised over the trades (which never overlap)."""
    n = len(px.close)
    growth, held = np.ones(n), np.zeros(n, dtype=bool)
    if not len(trades):
        return growth - 1.0, held, pd.DataFrame(columns=TRADE_COLUMNS)
    sig, e, x, d, exits_at_open = trades.T
    at_open = exits_at_open.astype(bool)
    fee, slip = costs.cost_bps / 1e4, costs.slip(px.high, px.low, px.close)
    ref_in, ref_out = px.open[e], np.where(at_open, px.open[x], px.close[x])
    p_in = ref_in * (1 + d * slip[np.maximum(e - 1, 0)])
    p_out = ref_out * (1 - d * slip[np.where(at_open, x - 1, x)])
    net = 1 - fee + d * (p_out / p_in - 1) - fee * p_out / p_in
    length = x - e + 1
    first = np.cumsum(length) - length  # each trade's first row among the marked bars
    k = np.repeat(np.arange(len(e)), length)
    bar = e[k] + np.arange(len(k)) - first[k]
    value = 1 - fee + d[k] * (px.close[bar] / p_in[k] - 1)  # the trade's capital, 1 before
    value[first + length - 1] = net  # the exit fill
    before = np.r_[1.0, value[:-1]]
    before[first] = 1.0
    growth[bar] = value / before
    held[bar] = True
    held[x[at_open]] = False  # left at the open
    reason = np.where(at_open, "opposite", np.where(x == sig + horizon[sig], "horizon", "close"))
    trades_frame = pd.DataFrame(
        {
            "signal_ts": px.ts[np.maximum(sig, 0)].where(sig >= 0),
            "direction": d,
            "entry_ts": px.ts[e],
            "entry_price": p_in,
            "exit_ts": px.ts[x],
            "exit_price": p_out,
            "exit_reason": np.where(sig < 0, "end", reason),  # buy-and-hold has no signal
            "bars": length - at_open,
            "gross_return": d * (ref_out / ref_in - 1),
            "net_return": net - 1,
            "turnover": 1 + p_out / p_in,
        }
    )
    return growth - 1.0, held, trades_frame
