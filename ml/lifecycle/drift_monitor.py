"""Drift checks during the session: `python -m ml.lifecycle.drift_monitor` (cron, every 15 minutes).

Each check:
1. scores any bars not yet scored by the serving versions (the champion and the shadow
   challengers) and stores the realised outcomes whose horizon has passed;
2. data drift: PSI and KS of the last `DRIFT_WINDOW_BARS` bars' price features (pooled over the
   universe) against the training reference in the champion's metadata; a feature drifts when
   its PSI exceeds `DRIFT_PSI_THRESHOLD` (or KS rejects at `DRIFT_KS_ALPHA` with at least half
   that PSI); the statistic is the share of drifted features;
3. concept drift: the drop of the models' mean confidence below their validation reference, and,
   on the realised outcomes (`ml.serving.outcomes`, the ones the live scoreboard reads), the drop of
   realised accuracy;
4. the sentiment model: news scored by another model than the one behind the training features
   is flagged (`sentiment_model_changed`);
5. alarms with persistence and hysteresis (ml.features.drift): `DRIFT_PERSISTENCE` consecutive
   breaches raise one; a raised alarm rolls the registry back to the previous stable champion
   (atomic, recorded with the reason), which the app picks up without a restart. The rollback is
   made only while the champion measured still serves: one promoted meanwhile is left alone.
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
from sqlalchemy import Connection

from config.cli import setup_logging
from config.settings import Settings, get_settings
from core.timeutil import utc_now
from db.alerts import enqueue_event
from db.bars import read_last_bars
from db.connections import connect
from db.context import latest_sentiment_model
from db.models import alarm_states
from db.signals import predictions, scored_with_outcomes
from db.writes import write_to_db
from ml.features.drift import ALARMS, MODELS, AlarmState, Metric, data_drift, step_alarm
from ml.features.feature_engineering import HISTORY_MARGIN_BARS, PRICE_FEATURES, create_features
from ml.features.labels import CLASSES
from ml.models import registry
from ml.models.metadata import ReferenceStat
from ml.models.model_loader import LoadedModels, ModelManager
from ml.serving.live_scoring import Scorer
from ml.serving.outcomes import label_key

log = logging.getLogger(__name__)
FAR = pd.Timestamp("2262-01-01", tz="UTC")


@dataclass
class DriftReport:
    version: str
    figures: dict[str, float] = field(default_factory=dict)
    alarms: dict[str, AlarmState] = field(default_factory=dict)
    rolled_back_to: str | None = None
    message: str = ""


def live_features(models: LoadedModels, settings: Settings) -> pd.DataFrame:
    """Features of the last `drift_window_bars` bars of each ticker."""
    n = settings.drift_window_bars
    bars = read_last_bars(settings.universe, n + HISTORY_MARGIN_BARS, FAR)
    if bars.empty:
        return pd.DataFrame()
    feats = create_features(bars, params=models.metadata.feature_params)
    return feats.groupby("ticker", sort=False).tail(n)


def monitored(reference: dict[str, ReferenceStat]) -> dict[str, dict[str, Any]]:
    """Price features with a continuous reference distribution (time-of-day, news and macro
    features are step functions of the calendar and would alarm on any short window)."""
    out = {}
    for name in PRICE_FEATURES:
        ref = reference.get(name)
        if ref is not None and ref.edges and len(np.unique(np.round(ref.edges, 12))) >= 6:
            out[name] = ref.model_dump()
    return out


def concept_figures(models: LoadedModels, since: pd.Timestamp) -> dict[str, float]:
    """Live confidence against the validation reference; realised accuracy against the
    validation accuracy, on the bars whose outcome is known."""
    meta = models.metadata
    out: dict[str, float] = {}
    sig = predictions(models.version, since)
    if sig.empty:
        return out
    for m in MODELS:
        probs = sig[[f"{m}_p_{c.lower()}" for c in CLASSES]].to_numpy()
        live = float(probs.max(axis=1).mean())
        out[Metric.confidence(m)] = live
        if m in meta.reference_confidence:
            out[Metric.confidence_drop(m)] = float(meta.reference_confidence[m]) - live
    known = scored_with_outcomes([models.version], label_key(meta.labels), since)
    if len(known) >= 50:
        realised = known["outcome"].map(lambda v: CLASSES[int(v)])
        for m in MODELS:
            acc = float((known[f"{m}_label"] == realised).mean())
            out[Metric.realised_accuracy(m)] = acc
            reference = meta.metrics.models.get(m)
            if reference is not None:
                out[Metric.accuracy_drop(m)] = reference.accuracy - acc
    return out


def sentiment_figure(models: LoadedModels) -> dict[str, float]:
    """1.0 when the news worker's sentiment model is not the one behind the training features."""
    trained_on = models.metadata.sentiment_models
    current = latest_sentiment_model()
    if not trained_on or current is None:
        return {}
    return {Metric.SENTIMENT_MODEL_CHANGED: float(current not in trained_on)}


def _previous_states(version: str) -> dict[str, AlarmState]:
    df = alarm_states(version, Metric.ALARM_PREFIX)
    return {
        r.metric.removeprefix(Metric.ALARM_PREFIX): AlarmState(int(r.value), bool(r.alarm))
        for r in df.itertuples()
    }


def _statistics(figures: dict[str, float]) -> dict[str, float]:
    drops = {
        a: max((v for k, v in figures.items() if k.startswith(f"{a}_drop_")), default=float("nan"))
        for a in ("confidence", "accuracy")
    }
    return {"data": figures.get(Metric.DRIFTED_SHARE, float("nan")), **drops}


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


def _data_rows(
    models: LoadedModels, feats: pd.DataFrame, at: pd.Timestamp, settings: Settings
) -> tuple[list[dict[str, Any]], float | None]:
    reference = monitored(models.metadata.reference_stats)
    if feats.empty or not reference:
        return [], None
    per = data_drift(
        {k: feats[k].to_numpy() for k in reference},
        reference,
        settings.drift_psi_threshold,
        settings.drift_ks_alpha,
    )
    rows = []
    for name, stats in per.items():
        drifted = bool(stats["drifted"])
        psi, ks = stats["psi"], stats["ks_pvalue"]
        rows.append(
            _row(at, models.version, Metric.PSI, name, psi, settings.drift_psi_threshold, drifted)
        )
        rows.append(
            _row(at, models.version, Metric.KS_PVALUE, name, ks, settings.drift_ks_alpha, drifted)
        )
    return rows, float(np.mean([s["drifted"] for s in per.values()]))


def check(
    settings: Settings | None = None,
    *,
    checked_at: pd.Timestamp | None = None,
    manager: ModelManager | None = None,
) -> DriftReport | None:
    """One drift check of the champion; None when no model is serving."""
    settings = settings or get_settings()
    serving = (manager or ModelManager(settings)).serving()
    models = serving.champion
    if models is None:
        return None
    checked_at = checked_at or utc_now()
    Scorer(settings, max_backlog=settings.drift_window_bars).score(serving)
    feats = live_features(models, settings)
    since = feats["ts"].min() if not feats.empty else checked_at - pd.Timedelta(days=1)
    report = DriftReport(models.version)
    rows, drifted_share = _data_rows(models, feats, checked_at, settings)
    if drifted_share is not None:
        report.figures[Metric.DRIFTED_SHARE] = drifted_share
    report.figures.update(concept_figures(models, since))
    report.figures.update(sentiment_figure(models))
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
                Metric.alarm(name),
                "",
                state.streak,
                thresholds[name],
                state.raised,
            )
        )
    for key, value in report.figures.items():
        kind = key.split("_")[0]
        thr = thresholds.get(kind) if ("drop" in key or "share" in key) else None
        rows.append(_row(checked_at, models.version, key, "", value, thr, False))
    with connect() as conn:  # the figures and the alerts of the alarms they raise, together
        write_to_db(pd.DataFrame(rows), table="drift_metrics", conn=conn)
        _enqueue_alarms(conn, report, previous, thresholds, checked_at)
    raised = [n for n in ALARMS if report.alarms[n].raised]
    if raised:
        _roll_back(report, raised, settings)
    return report


def _enqueue_alarms(
    conn: Connection,
    report: DriftReport,
    previous: dict[str, AlarmState],
    thresholds: dict[str, float],
    checked_at: pd.Timestamp,
) -> None:
    """The alert of each alarm this check raised (not of one raised before), in the outbox."""
    values = _statistics(report.figures)
    for name in ALARMS:
        state = report.alarms[name]
        if not state.raised or previous.get(name, AlarmState()).raised:
            continue
        reason = (
            f"{name} drift {values[name]:.3f} above {thresholds[name]:g} for {state.streak} "
            "consecutive checks: the champion is rolled back to the previous stable one"
        )
        payload = {
            "model_version": report.version,
            "role": "champion",
            "alarm": name,
            "value": values[name],
            "threshold": thresholds[name],
            "reason": reason,
        }
        fingerprint = f"drift_alarm:{report.version}:{name}:{checked_at.isoformat()}"
        enqueue_event(conn, "drift_alarm", payload, fingerprint)


def _roll_back(report: DriftReport, raised: list[str], settings: Settings) -> None:
    figures = ", ".join(
        f"{k}={v:.3f}" for k, v in _statistics(report.figures).items() if np.isfinite(v)
    )
    reason = (
        f"severe drift ({', '.join(raised)}) for {settings.drift_persistence} "
        f"consecutive checks: {figures}"
    )
    try:
        reg = registry.rollback(
            by="drift_monitor",
            reason=reason,
            expected_champion=report.version,  # the champion measured, not whatever serves now
            settings=settings,
        )
    except registry.RegistryError as exc:
        report.message = f"{reason}; no rollback: {exc}"
        conflict = isinstance(exc, registry.RegistryConflict)
        log.log(logging.WARNING if conflict else logging.ERROR, "%s", report.message)
        return
    report.rolled_back_to = reg.champion.version if reg.champion else None
    report.message = f"rolled back {report.version} -> {report.rolled_back_to}: {reason}"
    log.warning(report.message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.lifecycle.drift_monitor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    setup_logging("ml.lifecycle.drift_monitor")
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
