"""`python -m ml.lifecycle.backtest`: the backtest from the command line (its help is
`ml.lifecycle.backtest`'s)."""

from __future__ import annotations

import sys

import pandas as pd

from config.cli import job_parser
from config.settings import get_settings
from core.timeutil import utc
from ml.lifecycle.backtest.engine import BacktestRequest, run_backtest
from ml.lifecycle.backtest.execution import SLIPPAGE_MODELS, BacktestRefused, Costs
from ml.lifecycle.backtest.periods import fmt_utc


def _day_end(value: str) -> pd.Timestamp:
    """The end (exclusive) of a range given by its last day, or an exact time."""
    ts = utc(value)
    return ts + pd.Timedelta(days=1) if ts == ts.normalize() else ts


def main(argv: list[str] | None = None) -> int:
    """Run the backtest the arguments ask for, print its figures; 4 when it is refused."""

    from config.cli import setup_logging
    from ml.lifecycle import backtest

    settings = get_settings()
    parser = job_parser("ml.lifecycle.backtest", backtest.__doc__)
    add = parser.add_argument
    add("--version", dest="versions", action="append", default=[], help="repeat for two")
    add("--as-served", action="store_true", help="each bar scored by the champion of its time")
    add("--tickers", default="", help="comma list (default: the universe)")
    add("--start", help="first UTC day or time (default: the first out-of-sample bar)")
    add("--end", help="last UTC day, included, or an exact end time (default: the newest bar)")
    add("--cost-bps", type=float, default=settings.cost_bps / 2, help="fees per side, bps")
    add("--slippage", choices=SLIPPAGE_MODELS, default="none", help="slippage model")
    add("--slippage-bps", type=float, default=1.0, help="per fill, with --slippage fixed")
    add("--range-share", type=float, default=0.1, help="of the bar's range, --slippage range")
    add("--no-baselines", action="store_true", help="leave the baselines out")
    add("--csv", help="write the figures to this CSV file")
    add("--trades-csv", help="write every trade to this CSV file")
    args = parser.parse_args(argv)
    setup_logging("ml.lifecycle.backtest")
    try:
        request = BacktestRequest(
            versions=tuple(args.versions),
            tickers=tuple(t.strip().upper() for t in args.tickers.split(",") if t.strip()),
            start=None if args.start is None else utc(args.start),
            end=None if args.end is None else _day_end(args.end),
            costs=Costs(args.cost_bps, args.slippage, args.slippage_bps, args.range_share),
            as_served=args.as_served,
            baselines=not args.no_baselines,
        )
        result = run_backtest(request, settings, _print_progress)
    except BacktestRefused as exc:
        print(f"\nbacktest refused: {exc}", file=sys.stderr)
        return 4
    span = f"{fmt_utc(result.first_bar)} to {fmt_utc(result.last_bar)}"
    print(f"\n{span}. " + ". ".join(result.notes))
    print(result.summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        result.summary.to_csv(args.csv, index=False)
    if args.trades_csv:
        result.trades.to_csv(args.trades_csv, index=False)
    return 0


def _print_progress(fraction: float, message: str) -> None:
    print(f"\r{fraction:4.0%} {message:<60}", end="", file=sys.stderr, flush=True)
