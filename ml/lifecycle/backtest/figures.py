"""The backtest's figures: every strategy and buy-and-hold traded on the same bars (the rule of
`ml.lifecycle.backtest.execution`), each ticker an account of equal capital, and per ticker and in
total the figures of per-bar returns (empyrical-reloaded, annualised with `BARS_PER_YEAR`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import empyrical
import numpy as np
import pandas as pd
from empyrical.stats import drawdown_series

from ml.lifecycle.backtest.execution import Costs, TickerBars, plan_trades, run_account

BARS_PER_YEAR = 252 * 390  # one-minute bars of a year of regular sessions
TOTAL = "ALL"
BUY_AND_HOLD = "buy and hold"
Signals = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]  # actions, horizons per ticker


@dataclass
class BacktestResult:
    """Figures per strategy and ticker (`TOTAL`: all tickers), the total's equity and drawdown
    per bar (one column per strategy), every trade, and what served when (as-served)."""

    summary: pd.DataFrame
    equity: pd.DataFrame
    drawdown: pd.DataFrame
    trades: pd.DataFrame
    first_bar: pd.Timestamp
    last_bar: pd.Timestamp
    served: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)


def performance(returns: np.ndarray) -> dict[str, float]:
    """Total return, annualised Sharpe and Sortino, maximum drawdown and its duration (bars,
    peak to recovery or to the end) of per-bar returns, with empyrical-reloaded."""
    r = np.asarray(returns, dtype=float)
    if len(r) == 0:
        return dict.fromkeys(("total_return", "max_drawdown", "drawdown_bars"), 0.0) | {
            "sharpe": np.nan,
            "sortino": np.nan,
        }
    drawdown = np.asarray(drawdown_series(r))
    trough = int(np.argmin(drawdown))
    at_peak = np.flatnonzero(drawdown[: trough + 1] >= 0)
    peak = int(at_peak[-1]) if len(at_peak) else -1  # -1: the start
    back = np.flatnonzero(drawdown[trough:] >= 0)
    end = trough + int(back[0]) if len(back) else len(r) - 1
    return {
        "total_return": float(empyrical.cum_returns_final(r)),
        "sharpe": float(empyrical.sharpe_ratio(r, annualization=BARS_PER_YEAR)),
        "sortino": float(empyrical.sortino_ratio(r, annualization=BARS_PER_YEAR)),
        "max_drawdown": float(empyrical.max_drawdown(r)),
        "drawdown_bars": float(end - peak if drawdown[trough] < 0 else 0),
    }


def _figures(returns: np.ndarray, held: np.ndarray, trades: pd.DataFrame) -> dict[str, float]:
    net = trades["net_return"].to_numpy(dtype=float)
    return performance(returns) | {
        "turnover": float(trades["turnover"].sum()),
        "hit_rate": float((net > 0).mean()) if len(net) else np.nan,
        "exposure": float(held.mean()) if len(held) else 0.0,
        "costs": float((trades["gross_return"] - trades["net_return"]).sum()),
        "trades": float(len(trades)),
        "bars": float(len(returns)),
    }


@dataclass
class Account:
    """One ticker's account: per-bar returns, whether each bar was held, its trades."""

    returns: np.ndarray
    held: np.ndarray
    trades: pd.DataFrame


def _strategy(
    name: str, accounts: dict[str, Account], paths: dict[str, TickerBars]
) -> tuple[list[dict[str, object]], pd.Series, pd.Series]:
    """A strategy's figures per ticker and in total; the total's equity and drawdown per bar."""
    rows: list[dict[str, object]] = []
    equities = []
    for ticker, acc in accounts.items():
        figures = _figures(acc.returns, acc.held, acc.trades)
        rows.append({"strategy": name, "ticker": ticker, **figures})
        equities.append(pd.Series(np.cumprod(1 + acc.returns), index=paths[ticker].ts))
    equity = pd.concat(equities, axis=1).sort_index().ffill().fillna(1.0).mean(axis=1)
    returns = pd.Series(equity.to_numpy() / np.r_[1.0, equity.to_numpy()[:-1]] - 1, equity.index)
    trades = pd.concat([a.trades for a in accounts.values()], ignore_index=True)
    total = _figures(returns.to_numpy(), np.zeros(0, dtype=bool), trades)
    total |= {
        "turnover": total["turnover"] / len(accounts),
        "costs": total["costs"] / len(accounts),
        "exposure": float(np.mean([a.held.mean() for a in accounts.values()])),
    }
    rows.append({"strategy": name, "ticker": TOTAL, **total})
    drawdown = pd.Series(drawdown_series(returns), index=equity.index)
    return rows, equity.rename(name), drawdown.rename(name)


def trade_signals(
    signals: dict[str, Signals], paths: dict[str, TickerBars], costs: Costs
) -> BacktestResult:
    """Every strategy and buy-and-hold traded on the same bars, with their figures."""
    rows, curves, drawdowns, trades = [], [], [], []
    strategies = {name: _accounts(s, paths, costs) for name, s in signals.items()}
    strategies[BUY_AND_HOLD] = {t: _hold(px, costs) for t, px in paths.items()}
    for name, accounts in strategies.items():
        figures, equity, drawdown = _strategy(name, accounts, paths)
        rows += figures
        curves.append(equity)
        drawdowns.append(drawdown)
        for ticker, acc in accounts.items():
            trades.append(acc.trades.assign(strategy=name, ticker=ticker))
    first = min(px.ts[0] for px in paths.values())
    last = max(px.ts[-1] for px in paths.values())
    trade_frame = pd.concat(trades, ignore_index=True)
    trade_frame["direction"] = np.where(trade_frame["direction"] > 0, "long", "short")
    lead = ["strategy", "ticker"]
    return BacktestResult(
        summary=pd.DataFrame(rows),
        equity=pd.concat(curves, axis=1).ffill(),
        drawdown=pd.concat(drawdowns, axis=1).ffill(),
        trades=trade_frame[lead + [c for c in trade_frame.columns if c not in lead]],
        first_bar=first,
        last_bar=last,
    )


def _accounts(signals: Signals, paths: dict[str, TickerBars], costs: Costs) -> dict[str, Account]:
    actions, horizons = signals
    out = {}
    for ticker, px in paths.items():
        trades = plan_trades(actions[ticker], horizons[ticker], px.last)
        out[ticker] = Account(*run_account(px, trades, horizons[ticker], costs))
    return out


def _hold(px: TickerBars, costs: Costs) -> Account:
    """Buy at the range's first open, sell at its last close."""
    no_horizon = np.zeros(len(px.ts), dtype=int)
    hold = np.array([[-1, 0, len(px.ts) - 1, 1, 0]])
    return Account(*run_account(px, hold, no_horizon, costs))
