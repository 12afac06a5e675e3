"""The gate's evaluation runs: challenger, champion and baselines on one held-out window.

Both versions are evaluated on the same held-out window: from the end of the newest training
data of either model (plus an embargo of the label horizon) to the newest bar. The run refuses
when the window would overlap either model's training or validation range. Next to them, on the
same window and features, score a majority-class baseline, a logistic regression and a
gradient-boosted-tree classifier (`ml.training.baselines`, fitted on the sessions just before the
window).

Everything is judged on the **served signal**: the dual-model action (`dual_actions`: BUY,
SELL or HOLD) read as a call of UP, DOWN or NEUTRAL, scored by its macro-F1 against the realised
triple-barrier labels. A baseline's signal is the same rule with the baseline's probabilities in
place of both networks' (BUY when its P(UP) reaches `BUY_THRESHOLD`, SELL when its P(DOWN)
reaches `SELL_THRESHOLD`). Each comparison is a paired block bootstrap over time (30-minute
blocks shared by all tickers); `evaluate` returns the report with the gate's decision
(`ml.lifecycle.gate.decide`) and promotes nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings
from core.timeutil import iso, utc_now
from db.bars import newest_bar_ts
from ml.features.feature_engineering import required_history_bars
from ml.lifecycle.bootstrap import PairedDelta, paired_delta
from ml.lifecycle.gate import decide
from ml.lifecycle.report import ValidationReport, VersionResult, Window
from ml.lifecycle.signal_metrics import SignalMetrics, signal_classes, signal_metrics
from ml.models import registry
from ml.models.metadata import MODEL_NAMES, ModelMetadata
from ml.models.metrics import ClassMetrics, classification_metrics
from ml.models.model_loader import LoadedModels, ModelLoadError, load_version
from ml.serving.generate_recommendation import dual_actions
from ml.training.baselines import fit_baselines, newest_bar, training_range_before
from ml.training.dataset import DatasetError, Samples, build_samples, load_raw

Preds = dict[str, np.ndarray]  # "signal", "lstm", "transformer": predicted classes [n]
MIN_SAMPLES = 200  # labelled held-out samples below which the gate does not judge


class ValidationRefused(RuntimeError):
    """The gate cannot run honestly (overlap with training data, no data, no challenger)."""


def _ranges(meta: ModelMetadata) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    ranges = meta.ranges()
    if not ranges:
        raise ValidationRefused(f"model {meta.version} has no training ranges in metadata")
    return ranges


def held_out_window(
    metas: list[ModelMetadata], latest_bar: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """From the newest training bar of any model (+ label horizon embargo) to `latest_bar`."""
    trained_until = max(end for m in metas for _, end in _ranges(m))
    horizon = max(m.labels.horizon_bars for m in metas)
    start = trained_until + pd.Timedelta(minutes=horizon + 1)
    if start >= latest_bar:
        raise ValidationRefused(
            f"no held-out data: the models were trained up to {trained_until}, the newest bar is "
            f"{latest_bar}; wait for new sessions or train with an earlier --end"
        )
    return start, latest_bar


def check_no_overlap(window: tuple[pd.Timestamp, pd.Timestamp], meta: ModelMetadata) -> None:
    """Refuse when the window touches the model's training or validation data."""
    start, end = window
    for r_start, r_end in _ranges(meta):
        if start <= r_end and end >= r_start:
            raise ValidationRefused(
                f"the evaluation window {start} .. {end} overlaps the training data of "
                f"{meta.version} ({r_start} .. {r_end}); refusing to evaluate"
            )


def _samples(
    meta: ModelMetadata, window: tuple[pd.Timestamp, pd.Timestamp], tickers: list[str]
) -> Samples:
    raw = load_raw(
        tickers,
        window[0],
        window[1] + pd.Timedelta(minutes=1),
        warmup_bars=required_history_bars(meta.window_length),
        params=meta.feature_params,
    )
    return build_samples(raw, meta, start=window[0], end=window[1])


def _align(a: Samples, b: Samples) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the samples both versions have (same ticker and bar)."""
    ka = pd.DataFrame({"t": a.ticker, "ts": a.bar_ts, "ia": np.arange(len(a))})
    kb = pd.DataFrame({"t": b.ticker, "ts": b.bar_ts, "ib": np.arange(len(b))})
    both = ka.merge(kb, on=["t", "ts"])
    return both["ia"].to_numpy(), both["ib"].to_numpy()


def _version_result(
    models: LoadedModels, s: Samples, rows: np.ndarray, settings: Settings
) -> tuple[VersionResult, Preds]:
    X, y = s.X[rows], s.y[rows]
    p_lstm, p_tf = models.lstm.predict(X), models.transformer.predict(X)
    actions = dual_actions(p_lstm, p_tf, settings.buy_threshold, settings.sell_threshold)
    signal = _signal(actions, s, rows, settings)
    lstm, tf = classification_metrics(y, p_lstm), classification_metrics(y, p_tf)
    result = VersionResult(
        lstm=lstm,
        transformer=tf,
        dual=signal.pnl,
        score=(lstm.macro_f1 + tf.macro_f1) / 2,
        signal=signal,
    )
    preds = {
        "signal": signal_classes(actions),
        "lstm": p_lstm.argmax(1),
        "transformer": p_tf.argmax(1),
    }
    return result, preds


def _signal(actions: np.ndarray, s: Samples, rows: np.ndarray, settings: Settings) -> SignalMetrics:
    """The served signal's figures on the held-out rows (as the live scoreboard computes them)."""
    return signal_metrics(
        actions,
        s.y[rows],
        s.fwd_return[rows],
        s.bar_ts[rows].to_numpy("datetime64[ns]"),
        cost_bps=settings.cost_bps,
        samples=settings.bootstrap_samples,
    )


def _delta(
    a: np.ndarray, b: np.ndarray, y: np.ndarray, ts: np.ndarray, settings: Settings
) -> PairedDelta:
    return paired_delta(
        y, a, b, ts, samples=settings.bootstrap_samples, alpha=settings.bootstrap_alpha
    )


def _vs_champion(
    new: Preds, old: Preds, y: np.ndarray, ts: np.ndarray, settings: Settings
) -> dict[str, PairedDelta]:
    """The challenger minus the champion: the served signal, each network, both networks."""
    out = {k: _delta(new[k], old[k], y, ts, settings) for k in ("signal", *MODEL_NAMES)}
    both = [np.vstack([p[m] for m in MODEL_NAMES]) for p in (new, old)]
    out["networks"] = _delta(both[0], both[1], y, ts, settings)
    return out


def _newest_challenger(champion: str | None, settings: Settings) -> str:
    versions = [v for v in registry.list_versions(settings) if v != champion]
    if not versions:
        raise ValidationRefused(
            "no challenger: train a model first (python -m ml.training.train_model)"
        )
    return versions[-1]


def _load(version: str, role: str, settings: Settings) -> LoadedModels:
    try:
        return load_version(version, settings)
    except ModelLoadError as exc:
        raise ValidationRefused(f"the {role} {version} cannot be loaded: {exc}") from None


def _latest_bar(tickers: list[str]) -> pd.Timestamp:
    latest = newest_bar_ts(tickers)
    if latest is None:
        raise ValidationRefused("no bars in the database")
    return latest


def baseline_predictions(
    meta: ModelMetadata,
    tickers: list[str],
    window: tuple[pd.Timestamp, pd.Timestamp],
    X_eval: np.ndarray,
    settings: Settings,
) -> dict[str, np.ndarray]:
    """The baselines, fitted on the sessions before the window, predicting its windows."""
    horizon = meta.labels.horizon_bars
    start, end = training_range_before(window[0], horizon, settings.baseline_train_sessions)
    raw = load_raw(
        tickers,
        start,
        end + pd.Timedelta(minutes=horizon + 1),
        warmup_bars=required_history_bars(meta.window_length),
        params=meta.feature_params,
    )
    s = build_samples(raw, meta, start=start, end=end)
    keep = s.exit_ts < window[0] if len(s.exit_ts) else np.ones(len(s), bool)
    fitted = fit_baselines(newest_bar(s.X[keep]), s.y[keep])
    return {name: model.predict_proba(X_eval) for name, model in fitted.items()}


def evaluate(
    challenger: str | None = None,
    *,
    settings: Settings | None = None,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> ValidationReport:
    """Evaluate challenger vs champion and baselines; returns the report (no promotion)."""
    settings = settings or get_settings()
    reg = registry.read_registry(settings.model_config_path)
    champion = reg.champion.version if reg.champion else None
    challenger = challenger or _newest_challenger(champion, settings)
    if challenger == champion:
        raise ValidationRefused(f"{challenger} is already the champion")
    chall = _load(challenger, "challenger", settings)
    champ = _load(champion, "champion", settings) if champion else None
    metas = [chall.metadata] + ([champ.metadata] if champ else [])
    tickers = list(chall.metadata.tickers or settings.universe)
    window = window or held_out_window(metas, _latest_bar(tickers))
    for meta in metas:
        check_no_overlap(window, meta)
    s_new, rows_new, models, preds = _score_versions(chall, champ, window, tickers, settings)
    X_last = newest_bar(s_new.X[rows_new])
    base_probs = baseline_predictions(chall.metadata, tickers, window, X_last, settings)
    figures = _compare(challenger, champ, preds, base_probs, s_new, rows_new, settings)
    gate = decide(
        figures.vs_champion,
        figures.vs_baselines[challenger],
        champion=champion,
        proven=champ is not None and not (reg.champion and reg.champion.provisional),
        margin=settings.promotion_margin,
    )
    ours = models[challenger].signal
    gate.beaten_by_baselines = [
        n
        for n, m in figures.baseline_signals.items()
        if ours is not None and m.macro_f1 > ours.macro_f1
    ]
    return ValidationReport(
        challenger=challenger,
        champion=champion,
        models=models,
        baselines=figures.baselines,
        baseline_signals=figures.baseline_signals,
        vs_champion=figures.vs_champion or {},
        vs_baselines=figures.vs_baselines,
        gate=gate,
        window=Window(start=iso(window[0]), end=iso(window[1]), n_samples=len(rows_new)),
        created_at=iso(utc_now()),
    )


def _score_versions(
    chall: LoadedModels,
    champ: LoadedModels | None,
    window: tuple[pd.Timestamp, pd.Timestamp],
    tickers: list[str],
    settings: Settings,
) -> tuple[Samples, np.ndarray, dict[str, VersionResult], dict[str, Preds]]:
    """The challenger's held-out samples, the rows both versions have, and each version's
    figures and predicted classes on those rows (the champion's first)."""
    try:
        s_new = _samples(chall.metadata, window, tickers)
    except DatasetError as exc:
        raise ValidationRefused(f"cannot build the held-out samples: {exc}") from None
    if len(s_new) < MIN_SAMPLES:
        raise ValidationRefused(
            f"only {len(s_new)} labelled held-out samples; need >= {MIN_SAMPLES}"
        )
    rows_new = np.arange(len(s_new))
    models: dict[str, VersionResult] = {}
    preds: dict[str, Preds] = {}
    if champ is not None:
        s_old = _samples(champ.metadata, window, tickers)
        rows_new, rows_old = _align(s_new, s_old)
        models[champ.version], preds[champ.version] = _version_result(
            champ, s_old, rows_old, settings
        )
    models[chall.version], preds[chall.version] = _version_result(chall, s_new, rows_new, settings)
    return s_new, rows_new, models, preds


class Comparisons(NamedTuple):
    baselines: dict[str, ClassMetrics]  # each baseline as a classifier
    baseline_signals: dict[str, SignalMetrics]  # each baseline's signal
    vs_champion: dict[str, PairedDelta] | None  # challenger minus champion, per figure
    vs_baselines: dict[str, dict[str, PairedDelta]]  # each version's signal minus each baseline's


def _compare(
    challenger: str,
    champ: LoadedModels | None,
    preds: dict[str, Preds],
    base_probs: dict[str, np.ndarray],
    s: Samples,
    rows: np.ndarray,
    settings: Settings,
) -> Comparisons:
    """The baselines' figures and signals (the served rule with the baseline standing for both
    networks), every version's served signal against each baseline's, and the challenger against
    the champion on each figure."""
    y, ts = s.y[rows], s.bar_ts[rows].to_numpy("datetime64[ns]")
    base_actions = {
        name: dual_actions(p, p, settings.buy_threshold, settings.sell_threshold)
        for name, p in base_probs.items()
    }
    return Comparisons(
        baselines={name: classification_metrics(y, p) for name, p in base_probs.items()},
        baseline_signals={n: _signal(a, s, rows, settings) for n, a in base_actions.items()},
        vs_champion=(
            _vs_champion(preds[challenger], preds[champ.version], y, ts, settings)
            if champ
            else None
        ),
        vs_baselines={
            version: {
                name: _delta(p["signal"], signal_classes(a), y, ts, settings)
                for name, a in base_actions.items()
            }
            for version, p in preds.items()
        },
    )
