"""Drift checks during the session: `python -m ml.drift_monitor` (cron, every 15 minutes).

Each check:
1. scores any bars not yet in the signals log (so drift is measured on every bar);
2. data drift: PSI and KS of the last `DRIFT_WINDOW_BARS` bars' price features (pooled over the
   universe) against the training reference in the champion's metadata; a feature drifts when
   its PSI exceeds `DRIFT_PSI_THRESHOLD` (or KS rejects at `DRIFT_KS_ALPHA` with at least half
   that PSI); the statistic is the share of drifted features;
3. concept drift: the drop of the models' mean confidence below their validation reference, and,
   for signals whose triple-barrier outcome is known, the drop of realised accuracy;
4. alarms with persistence and hysteresis (ml.drift): `DRIFT_PERSISTENCE` consecutive breaches
   raise one; a raised alarm rolls the registry back to the previous stable champion (atomic,
   recorded with the reason), which the app picks up without a restart.
Every figure is stored in `drift_metrics` for the app.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings, setup_logging
from db.bars import read_bars
from db.database_manager import write_to_db
from db.models import alarm_states
from db.signals import predictions
from ml import registry
from ml.dataset import load_recent
from ml.drift import AlarmState, data_drift, step_alarm
from ml.feature_engineering import PRICE_FEATURES, FeatureParams, create_features
from ml.labels import LabelParams, triple_barrier_labels
from ml.live_scoring import score_new_bars
from ml.model_loader import LoadedModels, load_active_models
from ml.predict import CLASSES

log = logging.getLogger(__name__)

ALARMS = ("data", "confidence", "accuracy")
MODELS = ("lstm", "transformer")


@dataclass
class DriftReport:
    version: str
    figures: dict[str, float] = field(default_factory=dict)
    alarms: dict[str, AlarmState] = field(default_factory=dict)
    rolled_back_to: str | None = None
    message: str = ""


def live_features(models: LoadedModels, settings: Settings) -> pd.DataFrame:
    """Features of the last `drift_window_bars` bars of each ticker."""
    meta = models.metadata
    n = settings.drift_window_bars
    raw = load_recent(settings.universe, {**meta, "window_length": n})
    if raw.bars.empty:
        return pd.DataFrame()
    params = FeatureParams.from_dict(meta.get("feature_params"))
    feats = create_features(raw.bars, raw.news, raw.macro, params=params)
    return feats.groupby("ticker", sort=False).tail(n)


def monitored(reference: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Price features with a continuous reference distribution (time-of-day, news and macro
    features are step functions of the calendar and would alarm on any short window)."""
    out = {}
    for name in PRICE_FEATURES:
        ref = reference.get(name) or {}
        if ref.get("edges") and len(np.unique(np.round(ref["edges"], 12))) >= 6:
            out[name] = ref
    return out


def concept_figures(
    models: LoadedModels, feats: pd.DataFrame, settings: Settings
) -> dict[str, float]:
    meta = models.metadata
    if feats.empty:
        return {}
    sig = predictions(models.version, feats["ts"].min())
    out: dict[str, float] = {}
    if sig.empty:
        return out
    ref_conf = meta.get("reference_confidence") or {}
    for m in MODELS:
        probs = sig[[f"{m}_p_{c.lower()}" for c in CLASSES]].to_numpy()
        live = float(probs.max(axis=1).mean())
        out[f"confidence_{m}"] = live
        if m in ref_conf:
            out[f"confidence_drop_{m}"] = float(ref_conf[m]) - live
    labels = _realised_labels(models, sig, settings)
    if len(labels) >= 50:
        for m in MODELS:
            acc = float((labels[f"{m}_label"] == labels["realised"]).mean())
            out[f"realised_accuracy_{m}"] = acc
            ref_acc = meta.get("metrics", {}).get(m, {}).get("accuracy")
            if ref_acc is not None:
                out[f"accuracy_drop_{m}"] = float(ref_acc) - acc
    return out


def _realised_labels(models: LoadedModels, sig: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    params = LabelParams.from_dict(models.metadata["label_params"])
    start = pd.Timestamp(sig["bar_ts"].min()) - pd.Timedelta(minutes=3 * params.vol_lookback)
    bars = read_bars(list(sig["ticker"].unique()), start, pd.Timestamp("2262-01-01", tz="UTC"))
    labels = triple_barrier_labels(bars, params).dropna(subset=["label"])
    labels = labels.assign(realised=[CLASSES[int(v)] for v in labels["label"]])
    return sig.merge(
        labels[["ticker", "ts", "realised"]],
        left_on=["ticker", "bar_ts"],
        right_on=["ticker", "ts"],
    )


def _previous_states(version: str) -> dict[str, AlarmState]:
    df = alarm_states(version, "alarm_")
    return {
        r.metric.removeprefix("alarm_"): AlarmState(int(r.value), bool(r.alarm))
        for r in df.itertuples()
    }


def _statistics(figures: dict[str, float]) -> dict[str, float]:
    drops = {
        a: max((v for k, v in figures.items() if k.startswith(f"{a}_drop_")), default=float("nan"))
        for a in ("confidence", "accuracy")
    }
    return {"data": figures.get("drifted_share", float("nan")), **drops}


def check(
    settings: Settings | None = None,
    *,
    checked_at: pd.Timestamp | None = None,
    models: LoadedModels | None = None,
) -> DriftReport | None:
    """One drift check of the champion; None when no model is serving."""
    settings = settings or get_settings()
    models = models or load_active_models(settings)
    if models is None:
        return None
    checked_at = checked_at or pd.Timestamp.now(tz="UTC")
    score_new_bars(models, settings=settings, max_backlog=settings.drift_window_bars)
    report = DriftReport(models.version)
    feats = live_features(models, settings)
    reference = monitored(models.metadata.get("reference_stats") or {})
    rows: list[dict[str, Any]] = []
    if not feats.empty and reference:
        per = data_drift(
            {k: feats[k].to_numpy() for k in reference},
            reference,
            settings.drift_psi_threshold,
            settings.drift_ks_alpha,
        )
        for name, stats in per.items():
            rows.append(
                _row(
                    checked_at,
                    models.version,
                    "psi",
                    name,
                    stats["psi"],
                    settings.drift_psi_threshold,
                    bool(stats["drifted"]),
                )
            )
            rows.append(
                _row(
                    checked_at,
                    models.version,
                    "ks_pvalue",
                    name,
                    stats["ks_pvalue"],
                    settings.drift_ks_alpha,
                    bool(stats["drifted"]),
                )
            )
        report.figures["drifted_share"] = float(np.mean([s["drifted"] for s in per.values()]))
    report.figures.update(concept_figures(models, feats, settings))
    thresholds = {
        "data": settings.drift_feature_share,
        "confidence": settings.drift_confidence_drop,
        "accuracy": settings.drift_confidence_drop,
    }
    previous = _previous_states(models.version)
    for name, value in _statistics(report.figures).items():
        state = step_alarm(
            previous.get(name, AlarmState()), value, thresholds[name], settings.drift_persistence
        )
        report.alarms[name] = state
        rows.append(
            _row(
                checked_at,
                models.version,
                f"alarm_{name}",
                "",
                state.streak,
                thresholds[name],
                state.raised,
            )
        )
    for key, value in report.figures.items():
        thr = thresholds.get(key.split("_")[0]) if "drop" in key or "share" in key else None
        rows.append(_row(checked_at, models.version, key, "", value, thr, False))
    write_to_db(pd.DataFrame(rows), table="drift_metrics")
    raised = [n for n, s in report.alarms.items() if s.raised]
    if raised:
        _roll_back(report, raised, settings)
    return report


def _row(
    at: pd.Timestamp,
    version: str,
    metric: str,
    feature: str,
    value: float,
    threshold: float | None,
    alarm: bool,
) -> dict[str, Any]:
    return {
        "checked_at": at,
        "model_version": version,
        "metric": metric,
        "feature": feature,
        "value": None if value is None or not np.isfinite(value) else float(value),
        "threshold": threshold,
        "alarm": alarm,
    }


def _roll_back(report: DriftReport, raised: list[str], settings: Settings) -> None:
    figures = ", ".join(
        f"{k}={v:.3f}" for k, v in _statistics(report.figures).items() if np.isfinite(v)
    )
    reason = (
        f"severe drift ({', '.join(raised)}) for {settings.drift_persistence} "
        f"consecutive checks: {figures}"
    )
    try:
        reg = registry.rollback(by="drift_monitor", reason=reason, settings=settings)
    except registry.RegistryError as exc:
        report.message = f"{reason}; no rollback: {exc}"
        log.error(report.message)
        return
    report.rolled_back_to = reg.champion.version if reg.champion else None
    report.message = f"rolled back {report.version} -> {report.rolled_back_to}: {reason}"
    log.warning(report.message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.drift_monitor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    setup_logging("ml.drift_monitor")
    from db.ops import job_run

    with job_run("drift_monitor") as run:
        report = check()
        if report is None:
            run.skip("no champion model yet")
            print("no champion model yet: nothing to check")
            return 0
        states = ", ".join(
            f"{k}: streak {s.streak}{' RAISED' if s.raised else ''}"
            for k, s in report.alarms.items()
        )
        run.note(report.message or states)
    print(f"{report.version}: " + ", ".join(f"{k}={v:.4f}" for k, v in report.figures.items()))
    print(f"alarms: {states}")
    if report.message:
        print(report.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
