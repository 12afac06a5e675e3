"""Backtest: following a version's signals over stored, out-of-sample bars, after costs, beside
buy-and-hold and the baselines. `python -m ml.backtest` and the app's Backtest page run it.

Signals come from the serving path (`ml.live_scoring.features_over` and `score_range`: the live
features, the version's windows and scaler, both TFLite models in padded batches, the dual-model
rule). A range that touches a version's training or validation data, or the label horizon after
them (their labels looked that far ahead), is refused.

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
held overnight). The baselines of `ml.baselines` are fitted on the sessions before the range, as
the gate fits them, and traded by the same rule (BUY / SELL by the same thresholds).

Each ticker is an account with equal starting capital; the total is the sum of the accounts
(not rebalanced). Figures, from per-bar returns with empyrical-reloaded, annualised with
`BARS_PER_YEAR` = 252 x 390 one-minute bars: total return, Sharpe and Sortino, maximum drawdown
and its duration in bars (peak to recovery, or to the end), turnover (value traded over capital),
hit rate (share of trades with a positive net return), exposure (share of bars in a position)
and costs paid (fees and slippage over capital).

The as-served replay scores each bar with the version that was champion when the bar closed
(promotions and rollbacks of the registry history, on the market clock) and trades those signals.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import empyrical
import numpy as np
import pandas as pd
from empyrical.stats import drawdown_series

from config.market_clock import clock_kind, read_clock
from config.settings import Settings, get_settings
from core.timeutil import utc
from db.bars import newest_bar_ts, read_bars, read_last_bars
from ml.feature_engineering import BAR, FeatureParams, check_feature_list, required_history_bars
from ml.generate_recommendation import dual_actions
from ml.labels import session_codes
from ml.live_features import LiveFeatures
from ml.live_scoring import RangeScores, features_over, score_range
from ml.metadata import MetadataError, ModelMetadata
from ml.model_loader import LoadedModels, ModelLoadError, load_version
from ml.registry import Registry, RegistryError, read_registry

BARS_PER_YEAR = 252 * 390  # one-minute bars of a year of regular sessions
TOTAL = "ALL"
BUY_AND_HOLD = "buy and hold"
AS_SERVED = "as served"
SLIPPAGE_MODELS = ("none", "fixed", "range")
FAR = pd.Timestamp("2262-01-01", tz="UTC")
Progress = Callable[[float, str], None]


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
class BacktestRequest:
    """What to backtest: versions (default the champion) or the as-served replay, tickers
    (default the universe), [start, end) (default: from the first out-of-sample bar to the
    newest), costs, and whether the baselines trade beside the versions."""

    versions: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ()
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    costs: Costs = field(default_factory=Costs)
    as_served: bool = False
    baselines: bool = True


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


# --------------------------------------------------------------------------- out of sample
def _fmt(ts: pd.Timestamp) -> str:
    return f"{utc(ts):%Y-%m-%d %H:%M} UTC"


def first_out_of_sample(meta: ModelMetadata) -> pd.Timestamp:
    """The first bar whose outcome the version has not seen: after its training and validation
    data and the label horizon that follows them."""
    try:
        horizon = meta.labels.horizon_bars
    except MetadataError as exc:
        raise BacktestRefused(str(exc)) from None
    if meta.trained_until is None:
        raise BacktestRefused(
            f"version {meta.version} records no training or validation range, so no range can "
            "be shown to be out of sample for it"
        )
    return utc(meta.trained_until) + BAR * (horizon + 1)


def check_out_of_sample(meta: ModelMetadata, start: pd.Timestamp, end: pd.Timestamp) -> None:
    """Refuse a range [start, end) that touches the version's training or validation data or
    the label horizon after them, naming both ranges."""
    embargo = first_out_of_sample(meta) - utc(meta.trained_until)
    for name, span in (("training", meta.train_range), ("validation", meta.val_range)):
        if span is None:
            continue
        lo, hi = utc(span[0]), utc(span[1])
        if start < hi + embargo and end > lo:
            raise BacktestRefused(
                f"the backtest range {_fmt(start)} to {_fmt(end)} overlaps the {name} data of "
                f"{meta.version} ({_fmt(lo)} to {_fmt(hi)}, and its labels look "
                f"{meta.labels.horizon_bars} bars further): a backtest on data the model was "
                f"trained or validated on is not out of sample. Start at "
                f"{_fmt(first_out_of_sample(meta))} or later."
            )


# --------------------------------------------------------------------------- what served when
def market_instants(walls: list[pd.Timestamp], settings: Settings) -> list[pd.Timestamp]:
    """Where the market clock stood at each wall-clock instant of `walls` (the wall clock
    itself for live sources, and before a simulated or replay clock is anchored)."""
    kind = clock_kind(settings)
    clock = None if kind is None else read_clock(settings.data_dir, kind)
    if clock is None:
        return [utc(wall) for wall in walls]
    out = []
    for wall in walls:
        clock.time_fn = utc(wall).timestamp
        out.append(clock.now())
    return out


def champion_periods(
    registry: Registry, start: pd.Timestamp, end: pd.Timestamp, settings: Settings
) -> pd.DataFrame:
    """version, start, end (exclusive) of each champion within [start, end), from the registry
    history's promotions and rollbacks (in their order), their times put on the market clock."""
    events = [h for h in registry.history if h.event in ("promoted", "rolled_back")]
    stamps = market_instants([utc(h.at) for h in events], settings)
    changes = sorted(zip(stamps, [h.version for h in events], strict=True), key=lambda c: c[0])
    rows = []
    for k, (at, version) in enumerate(changes):
        until = changes[k + 1][0] if k + 1 < len(changes) else FAR
        lo, hi = max(at, start), min(until, end)
        if lo < hi:
            rows.append({"version": version, "start": lo, "end": hi})
    return pd.DataFrame(rows, columns=["version", "start", "end"])


# --------------------------------------------------------------------------- execution
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
    """The trades of the execution rule (module docstring), [k, 5] ints: signal bar, entry bar,
    exit bar, direction, 1 when it exits at the open; `action` +1/-1/0 and `horizon` (bars)
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


COLUMNS = ["signal_ts", "direction", "entry_ts", "entry_price", "exit_ts", "exit_price"]
COLUMNS += ["exit_reason", "bars", "gross_return", "net_return", "turnover"]


def run_account(
    px: TickerBars, trades: np.ndarray, horizon: np.ndarray, costs: Costs
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Per-bar returns of a ticker's account following `trades` (`plan_trades`), whether each
    bar was held, and the trades with their fills, gross and net returns (of the capital at
    entry), vectorised over the trades (which never overlap)."""
    n = len(px.close)
    growth, held = np.ones(n), np.zeros(n, dtype=bool)
    if not len(trades):
        return growth - 1.0, held, pd.DataFrame(columns=COLUMNS)
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


# --------------------------------------------------------------------------- figures
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


# --------------------------------------------------------------------------- signals
def _load(version: str, settings: Settings) -> LoadedModels:
    try:
        return load_version(version, settings)
    except ModelLoadError as exc:
        raise BacktestRefused(str(exc)) from None


def _newest(tickers: list[str]) -> pd.Timestamp:
    newest = newest_bar_ts(tickers)
    if newest is None:
        raise BacktestRefused(f"no stored bars of {', '.join(tickers)}")
    return newest + BAR


def _bars(
    tickers: list[str], start: pd.Timestamp, end: pd.Timestamp, warmup: int
) -> tuple[pd.DataFrame, dict[str, TickerBars]]:
    """The range's bars with `warmup` bars per ticker before it, and each ticker's range."""
    bars = read_bars(tickers, start, end)
    if bars.empty:
        raise BacktestRefused(
            f"no stored bars of {', '.join(tickers)} from {_fmt(start)} to {_fmt(end)}"
        )
    paths = {str(t): TickerBars.of(g) for t, g in bars.groupby("ticker", sort=True)}
    history = read_last_bars(tickers, warmup, start)
    return pd.concat([history, bars], ignore_index=True), paths


def _targets(paths: dict[str, TickerBars], periods: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """Bar times (UTC ns) to score: every bar, or those that closed within `periods`."""
    out = {}
    for ticker, px in paths.items():
        keep = np.ones(len(px.ts), dtype=bool)
        if periods is not None:
            closed = px.ts + BAR
            keep[:] = False
            for lo, hi in zip(periods["start"], periods["end"], strict=True):
                keep |= np.asarray((closed >= lo) & (closed < hi))
        out[ticker] = px.ts.as_unit("ns").asi8[keep]
    return out


def _placed(
    keys: pd.DataFrame, values: np.ndarray, paths: dict[str, TickerBars]
) -> dict[str, np.ndarray]:
    """`values` of scored bars (keys: ticker, ts) on each ticker's bars (0 where unscored)."""
    out = {t: np.zeros(len(px.ts), dtype=values.dtype) for t, px in paths.items()}
    stamps = pd.DatetimeIndex(keys["ts"]).as_unit("ns").asi8
    for ticker, rows in keys.groupby("ticker", sort=False).indices.items():
        px = paths[str(ticker)]
        out[str(ticker)][np.searchsorted(px.ts.as_unit("ns").asi8, stamps[rows])] = values[rows]
    return out


Signals = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]  # actions, horizons per ticker


def _feature_states(
    models: dict[str, LoadedModels], bars: pd.DataFrame, tickers: list[str], report: Progress
) -> dict[FeatureParams, LiveFeatures]:
    """One live feature state through the bars per feature parameters the versions use."""
    states: dict[FeatureParams, LiveFeatures] = {}
    params = list(dict.fromkeys(m.metadata.feature_params for m in models.values()))
    for k, p in enumerate(params):

        def day(done: int, days: int, k: int = k) -> None:
            report(0.05 + 0.4 * (k + done / days) / len(params), f"features: day {done}/{days}")

        states[p] = features_over(tickers, p, bars, on_day=day)
    return states


def _scores(
    models: dict[str, LoadedModels],
    states: dict[FeatureParams, LiveFeatures],
    targets: dict[str, dict[str, np.ndarray]],
    settings: Settings,
    report: Progress,
) -> dict[str, RangeScores]:
    """Each version's scores of its bars, through the serving path."""
    out = {}
    for k, (version, m) in enumerate(models.items()):

        def chunk(done: int, total: int, k: int = k, v: str = version) -> None:
            share = (k + done / max(total, 1)) / len(models)
            report(0.45 + 0.45 * share, f"scoring {v}: {done:,}/{total:,} bars")

        state = states[m.metadata.feature_params]
        out[version] = score_range(m, state, targets[version], settings, on_chunk=chunk)
    return out


def _baselines(
    version: str,
    meta: ModelMetadata,
    state: LiveFeatures,
    paths: dict[str, TickerBars],
    span: tuple[pd.Timestamp, pd.Timestamp],
    settings: Settings,
) -> tuple[dict[str, Signals], str]:
    """The baselines fitted on the sessions before the range (as the gate fits them) and
    given each bar's newest scaled features in the version's features and scaler, each traded
    by the same thresholds; and a note saying so."""
    from ml.validate_model import _baseline_predictions

    targets = _targets(paths, None)
    features = check_feature_list(meta.features)
    keys, X = state.windows(targets, features, 1, meta.feature_scaler)  # the newest bar
    try:
        probs = _baseline_predictions(meta, list(paths), span, X[:, -1], settings)
    except ValueError as exc:  # no (or too little) history before the range
        return {}, f"No baselines: they cannot be fitted on the sessions before the range ({exc})"
    horizon = np.full(len(keys), meta.labels.horizon_bars)
    out = {}
    for name, p in probs.items():
        action = dual_actions(p, p, settings.buy_threshold, settings.sell_threshold)
        out[f"baseline: {name}"] = (_placed(keys, action, paths), _placed(keys, horizon, paths))
    sessions = settings.baseline_train_sessions
    return (
        out,
        f"Baselines fitted on the {sessions} sessions before the range, on {version}'s features",
    )


# --------------------------------------------------------------------------- the run
def _registry(settings: Settings) -> Registry:
    try:
        return read_registry(settings.model_config_path)
    except RegistryError as exc:
        raise BacktestRefused(f"the model registry cannot be read: {exc}") from None


@dataclass
class _Plan:
    models: dict[str, LoadedModels]
    start: pd.Timestamp
    end: pd.Timestamp
    periods: pd.DataFrame  # version, start, end: what scores which bars (as-served)


def _versions_plan(request: BacktestRequest, tickers: list[str], settings: Settings) -> _Plan:
    names = request.versions
    if not names:
        champion = _registry(settings).champion
        if champion is None:
            raise BacktestRefused("no champion serves yet: choose a version to backtest")
        names = (champion.version,)
    models = {v: _load(v, settings) for v in dict.fromkeys(names)}
    start = request.start
    if start is None:
        start = max(first_out_of_sample(m.metadata) for m in models.values())
    end = _newest(tickers) if request.end is None else request.end
    for m in models.values():
        check_out_of_sample(m.metadata, utc(start), utc(end))
    return _Plan(models, utc(start), utc(end), pd.DataFrame())


def _served_plan(request: BacktestRequest, tickers: list[str], settings: Settings) -> _Plan:
    registry = _registry(settings)
    ever = champion_periods(registry, pd.Timestamp(0, tz="UTC"), FAR, settings)
    if ever.empty:
        raise BacktestRefused("the registry history records no promotion: nothing has served")
    start = utc(ever["start"].min() if request.start is None else request.start)
    end = utc(_newest(tickers) if request.end is None else request.end)
    periods = champion_periods(registry, start, end + BAR, settings)  # by the bars' close
    if periods.empty:
        raise BacktestRefused(f"no version was champion from {_fmt(start)} to {_fmt(end)}")
    models = {v: _load(v, settings) for v in dict.fromkeys(periods["version"])}
    for row in periods.itertuples(index=False):
        check_out_of_sample(models[str(row.version)].metadata, row.start - BAR, row.end - BAR)
    return _Plan(models, start, end, periods)


def _quiet(fraction: float, message: str) -> None:
    del fraction, message


def run_backtest(
    request: BacktestRequest, settings: Settings | None = None, progress: Progress | None = None
) -> BacktestResult:
    """Backtest `request` (see the module docstring); `progress(fraction, message)` is told
    how far it is. Raises `BacktestRefused` with a plain message when it cannot run honestly."""
    settings = settings or get_settings()
    report = progress or _quiet
    tickers = list(request.tickers or settings.universe)
    report(0.0, "loading the models")
    plan = (_served_plan if request.as_served else _versions_plan)(request, tickers, settings)
    window = max(m.metadata.window_length for m in plan.models.values())
    bars, paths = _bars(tickers, plan.start, plan.end, required_history_bars(window))
    missing = [t for t in tickers if t not in paths]
    notes = [f"No stored bars in the range for {', '.join(missing)}"] if missing else []
    periods = {
        v: plan.periods[plan.periods["version"] == v] if request.as_served else None
        for v in plan.models
    }
    targets = {v: _targets(paths, periods[v]) for v in plan.models}
    states = _feature_states(plan.models, bars, list(paths), report)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the baselines are fitted beside scoring
        baselines = None
        if request.baselines and not request.as_served:
            first = next(iter(plan.models))
            meta = plan.models[first].metadata
            state, span = states[meta.feature_params], (plan.start, plan.end)
            baselines = pool.submit(_baselines, first, meta, state, paths, span, settings)
        scores = _scores(plan.models, states, targets, settings, report)
        signals: dict[str, Signals] = {}
        for version, score in scores.items():
            horizon = np.full(len(score.keys), plan.models[version].metadata.labels.horizon_bars)
            signals[version] = (
                _placed(score.keys, score.action, paths),
                _placed(score.keys, horizon, paths),
            )
        if request.as_served:
            signals = {AS_SERVED: _merged(list(signals.values()))}
        elif baselines is not None:
            report(0.9, "fitting the baselines")
            fitted, note = baselines.result()
            signals |= fitted
            notes.append(note)
    report(0.95, "trading the signals")
    result = trade_signals(signals, paths, request.costs)
    result.served, result.notes = plan.periods, notes
    report(1.0, "done")
    return result


def _merged(parts: list[Signals]) -> Signals:
    """The signals of versions that scored disjoint bars, on one timeline."""
    actions = {t: np.sum([p[0][t] for p in parts], axis=0) for t in parts[0][0]}
    horizons = {t: np.sum([p[1][t] for p in parts], axis=0) for t in parts[0][1]}
    return actions, horizons


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


# --------------------------------------------------------------------------- command line
def _day_end(value: str) -> pd.Timestamp:
    """The end (exclusive) of a range given by its last day, or an exact time."""
    ts = utc(value)
    return ts + pd.Timedelta(days=1) if ts == ts.normalize() else ts


def main(argv: list[str] | None = None) -> int:
    import argparse

    from config.settings import setup_logging

    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m ml.backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    setup_logging("ml.backtest")
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
    print(f"\n{_fmt(result.first_bar)} to {_fmt(result.last_bar)}. " + ". ".join(result.notes))
    print(result.summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        result.summary.to_csv(args.csv, index=False)
    if args.trades_csv:
        result.trades.to_csv(args.trades_csv, index=False)
    return 0


def _print_progress(fraction: float, message: str) -> None:
    print(f"\r{fraction:4.0%} {message:<60}", end="", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
