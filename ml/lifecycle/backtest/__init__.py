"""Backtest: following a version's signals over stored, out-of-sample bars, after costs, beside
buy-and-hold and the baselines. `python -m ml.lifecycle.backtest` and the app's Backtest page run
it.

Signals come from the serving path (`ml.serving.range_scoring.features_over` and `score_range`: the
live features, the version's windows and scaler, both TFLite models in padded batches, the
dual-model rule). A range that touches a version's training or validation data, or the label
horizon after them (their labels looked that far ahead), is refused.

Execution rule, per ticker, one position at a time:

- a BUY (SELL) on bar t while flat opens a long (short) position at the open of the next bar of
  the same session (a signal on a session's last bar opens nothing);
- it is closed at the open of the bar after the first opposite signal, else at the close of bar
  t + horizon_bars (the label's vertical barrier), and at the latest at the close of the
  session's (or the range's) last bar: nothing is held overnight. The opposite signal opens
  nothing itself; signals in the position's direction are ignored;
- every entry and exit pays `cost_bps` of the traded value and fills at a price moved against
  the trade by the slippage model: `none`, `fixed` (`slippage_bps`), or `range` (`range_share`
  of the high-low range, over its close, of the last bar complete at the fill).

Buy-and-hold buys each ticker at the range's first open and sells at its last close (same costs,
held overnight). The baselines of `ml.training.baselines` are fitted on the sessions before the
range, as the gate fits them, and traded by the same rule (BUY / SELL by the same thresholds).

Each ticker is an account with equal starting capital; the total is the sum of the accounts
(not rebalanced). Figures, from per-bar returns with empyrical-reloaded, annualised with
`BARS_PER_YEAR` = 252 x 390 one-minute bars: total return, Sharpe and Sortino, maximum drawdown
and its duration in bars (peak to recovery, or to the end), turnover (value traded over capital),
hit rate (share of trades with a positive net return), exposure (share of bars in a position)
and costs paid (fees and slippage over capital).

The as-served replay scores each bar with the version that was champion when the bar closed
(promotions and rollbacks of the registry history, on the market clock) and trades those signals.
"""

# The package: `execution` (costs, the execution rule, each account's returns), `figures` (every
# strategy traded and its figures), `periods` (the out-of-sample check, what served when),
# `signals` (bars, live features, the versions' and the baselines' signals), `engine`
# (`run_backtest`) and `cli` (`python -m ml.lifecycle.backtest`).

from ml.lifecycle.backtest.cli import main
from ml.lifecycle.backtest.engine import AS_SERVED, BacktestRequest, run_backtest
from ml.lifecycle.backtest.execution import (
    SLIPPAGE_MODELS,
    BacktestRefused,
    Costs,
    TickerBars,
    plan_trades,
    run_account,
)
from ml.lifecycle.backtest.figures import (
    BARS_PER_YEAR,
    BUY_AND_HOLD,
    TOTAL,
    BacktestResult,
    performance,
    trade_signals,
)
from ml.lifecycle.backtest.periods import (
    champion_periods,
    check_out_of_sample,
    first_out_of_sample,
    market_instants,
)

__all__ = [
    "AS_SERVED",
    "BARS_PER_YEAR",
    "BUY_AND_HOLD",
    "SLIPPAGE_MODELS",
    "TOTAL",
    "BacktestRefused",
    "BacktestRequest",
    "BacktestResult",
    "Costs",
    "TickerBars",
    "champion_periods",
    "check_out_of_sample",
    "first_out_of_sample",
    "main",
    "market_instants",
    "performance",
    "plan_trades",
    "run_account",
    "run_backtest",
    "trade_signals",
]
