"""The backtest's run: what to backtest (`BacktestRequest`), the versions and the range it
runs on, and `run_backtest`, which the command line and the app's Backtest page call."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from config.settings import Settings, get_settings
from core.timeutil import utc
from ml.features.feature_engineering import BAR, required_history_bars
from ml.lifecycle.backtest.execution import BacktestRefused, Costs
from ml.lifecycle.backtest.figures import BacktestResult, Signals, trade_signals
from ml.lifecycle.backtest.periods import (
    FAR,
    champion_periods,
    check_out_of_sample,
    first_out_of_sample,
    fmt_utc,
)
from ml.lifecycle.backtest.signals import (
    Progress,
    bar_targets,
    baseline_signals,
    feature_states,
    load_models,
    merged,
    newest_end,
    range_bars,
    version_signals,
)
from ml.models.model_loader import LoadedModels
from ml.models.registry import Registry, RegistryError, read_registry

AS_SERVED = "as served"


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
    models = {v: load_models(v, settings) for v in dict.fromkeys(names)}
    start = request.start
    if start is None:
        start = max(first_out_of_sample(m.metadata) for m in models.values())
    end = newest_end(tickers) if request.end is None else request.end
    for m in models.values():
        check_out_of_sample(m.metadata, utc(start), utc(end))
    return _Plan(models, utc(start), utc(end), pd.DataFrame())


def _served_plan(request: BacktestRequest, tickers: list[str], settings: Settings) -> _Plan:
    registry = _registry(settings)
    ever = champion_periods(registry, pd.Timestamp(0, tz="UTC"), FAR, settings)
    if ever.empty:
        raise BacktestRefused("the registry history records no promotion: nothing has served")
    start = utc(ever["start"].min() if request.start is None else request.start)
    end = utc(newest_end(tickers) if request.end is None else request.end)
    periods = champion_periods(registry, start, end + BAR, settings)  # by the bars' close
    if periods.empty:
        raise BacktestRefused(f"no version was champion from {fmt_utc(start)} to {fmt_utc(end)}")
    models = {v: load_models(v, settings) for v in dict.fromkeys(periods["version"])}
    for row in periods.itertuples(index=False):
        check_out_of_sample(models[str(row.version)].metadata, row.start - BAR, row.end - BAR)
    return _Plan(models, start, end, periods)


def _quiet(fraction: float, message: str) -> None:
    del fraction, message


def run_backtest(
    request: BacktestRequest, settings: Settings | None = None, progress: Progress | None = None
) -> BacktestResult:
    """Backtest `request` (see `ml.lifecycle.backtest`); `progress(fraction, message)` is told how
    far it is. Raises `BacktestRefused` with a plain message when it cannot run honestly."""
    settings = settings or get_settings()
    report = progress or _quiet
    tickers = list(request.tickers or settings.universe)
    report(0.0, "loading the models")
    plan = (_served_plan if request.as_served else _versions_plan)(request, tickers, settings)
    window = max(m.metadata.window_length for m in plan.models.values())
    bars, paths = range_bars(tickers, plan.start, plan.end, required_history_bars(window))
    missing = [t for t in tickers if t not in paths]
    notes = [f"No stored bars in the range for {', '.join(missing)}"] if missing else []
    periods = {
        v: plan.periods[plan.periods["version"] == v] if request.as_served else None
        for v in plan.models
    }
    targets = {v: bar_targets(paths, periods[v]) for v in plan.models}
    states = feature_states(plan.models, bars, list(paths), report)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the baselines are fitted beside scoring
        baselines: Future[tuple[dict[str, Signals], str]] | None = None
        if request.baselines and not request.as_served:
            first = next(iter(plan.models))
            meta = plan.models[first].metadata
            state, span = states[meta.feature_params], (plan.start, plan.end)
            baselines = pool.submit(baseline_signals, first, meta, state, paths, span, settings)
        signals = version_signals(plan.models, states, targets, paths, settings, report)
        if request.as_served:
            signals = {AS_SERVED: merged(list(signals.values()))}
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
