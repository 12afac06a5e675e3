"""The backtest's signals: the range's stored bars, the live features through them, each
version's scores through the serving path (`ml.serving.range_scoring.score_range`), and the
baselines fitted on the sessions before the range, each put on every ticker's bars."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from config.settings import Settings
from db.bars import newest_bar_ts, read_bars, read_last_bars
from ml.features.feature_engineering import BAR, FeatureParams, check_feature_list
from ml.features.live_features import LiveFeatures
from ml.lifecycle.backtest.execution import BacktestRefused, TickerBars
from ml.lifecycle.backtest.figures import Signals
from ml.lifecycle.backtest.periods import fmt_utc
from ml.models.metadata import ModelMetadata
from ml.models.model_loader import LoadedModels, ModelLoadError, load_version
from ml.serving.generate_recommendation import dual_actions
from ml.serving.range_scoring import RangeScores, features_over, score_range

Progress = Callable[[float, str], None]


def load_models(version: str, settings: Settings) -> LoadedModels:
    """The version's models, or the reason they cannot be loaded as a refusal."""
    try:
        return load_version(version, settings)
    except ModelLoadError as exc:
        raise BacktestRefused(str(exc)) from None


def newest_end(tickers: list[str]) -> pd.Timestamp:
    """The end (exclusive) of a range reaching the newest stored bar of `tickers`."""
    newest = newest_bar_ts(tickers)
    if newest is None:
        raise BacktestRefused(f"no stored bars of {', '.join(tickers)}")
    return newest + BAR


def range_bars(
    tickers: list[str], start: pd.Timestamp, end: pd.Timestamp, warmup: int
) -> tuple[pd.DataFrame, dict[str, TickerBars]]:
    """The range's bars with `warmup` bars per ticker before it, and each ticker's range."""
    bars = read_bars(tickers, start, end)
    if bars.empty:
        raise BacktestRefused(
            f"no stored bars of {', '.join(tickers)} from {fmt_utc(start)} to {fmt_utc(end)}"
        )
    paths = {str(t): TickerBars.of(g) for t, g in bars.groupby("ticker", sort=True)}
    history = read_last_bars(tickers, warmup, start)
    return pd.concat([history, bars], ignore_index=True), paths


def bar_targets(
    paths: dict[str, TickerBars], periods: pd.DataFrame | None
) -> dict[str, np.ndarray]:
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


def placed(
    keys: pd.DataFrame, values: np.ndarray, paths: dict[str, TickerBars]
) -> dict[str, np.ndarray]:
    """`values` of scored bars (keys: ticker, ts) on each ticker's bars (0 where unscored)."""
    out = {t: np.zeros(len(px.ts), dtype=values.dtype) for t, px in paths.items()}
    stamps = pd.DatetimeIndex(keys["ts"]).as_unit("ns").asi8
    for ticker, rows in keys.groupby("ticker", sort=False).indices.items():
        px = paths[str(ticker)]
        out[str(ticker)][np.searchsorted(px.ts.as_unit("ns").asi8, stamps[rows])] = values[rows]
    return out


def merged(parts: list[Signals]) -> Signals:
    """The signals of versions that scored disjoint bars, on one timeline."""
    actions = {t: np.sum([p[0][t] for p in parts], axis=0) for t in parts[0][0]}
    horizons = {t: np.sum([p[1][t] for p in parts], axis=0) for t in parts[0][1]}
    return actions, horizons


def feature_states(
    models: dict[str, LoadedModels], bars: pd.DataFrame, tickers: list[str], report: Progress
) -> dict[FeatureParams, LiveFeatures]:
    """One live feature state through the bars per feature parameters the versions use."""
    states: dict[FeatureParams, LiveFeatures] = {}
    params = list(dict.fromkeys(m.metadata.feature_params for m in models.values()))
    for k, p in enumerate(params):

        def day(done: int, days: int, k: int = k) -> None:
            report(0.05 + 0.2 * (k + done / days) / len(params), f"features: day {done}/{days}")

        states[p] = features_over(tickers, p, bars, on_day=day)
    return states


def version_signals(
    models: dict[str, LoadedModels],
    states: dict[FeatureParams, LiveFeatures],
    targets: dict[str, dict[str, np.ndarray]],
    paths: dict[str, TickerBars],
    settings: Settings,
    report: Progress,
) -> dict[str, Signals]:
    """Each version's signals on its bars (`targets`), scored through the serving path."""
    out = {}
    for k, (version, m) in enumerate(models.items()):

        def chunk(done: int, total: int, k: int = k, v: str = version) -> None:
            share = (k + done / max(total, 1)) / len(models)
            report(0.25 + 0.65 * share, f"scoring {v}: {done:,}/{total:,} bars")

        state = states[m.metadata.feature_params]
        scores: RangeScores = score_range(m, state, targets[version], settings, on_chunk=chunk)
        horizon = np.full(len(scores.keys), m.metadata.labels.horizon_bars)
        actions = placed(scores.keys, scores.action, paths)
        out[version] = (actions, placed(scores.keys, horizon, paths))
    return out


def baseline_signals(
    version: str,
    meta: ModelMetadata,
    state: LiveFeatures,
    paths: dict[str, TickerBars],
    span: tuple[pd.Timestamp, pd.Timestamp],
    settings: Settings,
) -> tuple[dict[str, Signals], str]:
    """The baselines fitted on the sessions before the range (as the gate fits them) and
    given each bar's newest scaled features in the version's features and scaler, each traded
    by the same thresholds; and a note saying so.

    They are fitted beside the scoring, whose two models already keep both cores busy: their
    OpenMP and BLAS pools are held to one thread (more threads than cores only contend)."""
    from threadpoolctl import threadpool_limits

    from ml.lifecycle.evaluation import baseline_predictions

    targets = bar_targets(paths, None)
    features = check_feature_list(meta.features)
    keys, X = state.windows(targets, features, 1, meta.feature_scaler)  # the newest bar
    try:
        with threadpool_limits(limits=1):
            probs = baseline_predictions(meta, list(paths), span, X[:, -1], settings)
    except ValueError as exc:  # no (or too little) history before the range
        return {}, f"No baselines: they cannot be fitted on the sessions before the range ({exc})"
    horizon = np.full(len(keys), meta.labels.horizon_bars)
    out = {}
    for name, p in probs.items():
        action = dual_actions(p, p, settings.buy_threshold, settings.sell_threshold)
        out[f"baseline: {name}"] = (placed(keys, action, paths), placed(keys, horizon, paths))
    sessions = settings.baseline_train_sessions
    return (
        out,
        f"Baselines fitted on the {sessions} sessions before the range, on {version}'s features",
    )
