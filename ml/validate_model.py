"""The champion/challenger gate: `python -m ml.validate_model [--challenger V]`.

Both versions are evaluated on the same held-out window: from the end of the newest training
data of either model (plus an embargo of the label horizon) to the newest bar. The run refuses
when the window would overlap either model's training or validation range. Next to them, on the
same window and features, score a majority-class baseline, a logistic regression and a
gradient-boosted-tree classifier (`ml.baselines`, fitted on the sessions just before the window).

The challenger is promoted only when it is demonstrably better:
- with a proven champion: its macro-F1 (mean of its two models) beats the champion's by at least
  `PROMOTION_MARGIN`, and a paired block bootstrap over time puts the lower end of the gain's
  one-sided (1 - `BOOTSTRAP_ALPHA`) interval above zero;
- without one (no champion, or a provisional one): it beats the majority-class and the
  logistic-regression baselines the same way.
When nothing serves yet and the challenger does not pass, it serves as **provisional** (marked
unproven on every page, its signals recorded as provisional) until a challenger passes. The full
report (`ml.report.ValidationReport`) goes to `models/<challenger>/evaluation.json` and
`model_evaluations`; it names every baseline that beat the models.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings, setup_logging
from core.files import write_text_atomic
from core.timeutil import iso, utc_now
from db.bars import newest_bar_ts
from db.models import store_evaluation
from ml import registry
from ml.baselines import fit_baselines, newest_bar, training_range_before
from ml.dataset import DatasetError, Samples, build_samples, load_raw
from ml.feature_engineering import required_history_bars
from ml.generate_recommendation import dual_actions
from ml.metadata import ModelMetadata
from ml.metrics import classification_metrics, equity_curve, paired_block_bootstrap
from ml.model_loader import LoadedModels, load_version
from ml.report import Decision, Gate, ValidationReport, VersionResult, Window

log = logging.getLogger(__name__)
UNPROVEN = "unproven: did not beat {baseline} on the held-out window, see the model lab"
BASELINE_NAMES = {
    "majority": "the majority class",
    "logistic": "logistic regression",
    "gbt": "gradient-boosted trees",
}


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
) -> tuple[VersionResult, np.ndarray]:
    X, y = s.X[rows], s.y[rows]
    p_lstm, p_tf = models.lstm.predict(X), models.transformer.predict(X)
    actions = dual_actions(p_lstm, p_tf, settings.buy_threshold, settings.sell_threshold)
    lstm, tf = classification_metrics(y, p_lstm), classification_metrics(y, p_tf)
    result = VersionResult(
        lstm=lstm,
        transformer=tf,
        dual=equity_curve(
            actions,
            s.fwd_return[rows],
            s.bar_ts[rows].to_numpy("datetime64[ns]"),
            settings.cost_bps,
        ),
        score=(lstm.macro_f1 + tf.macro_f1) / 2,
    )
    return result, np.vstack([p_lstm.argmax(1), p_tf.argmax(1)])


def _gate(
    delta: dict[str, float], decision: Decision, reason: str, margin: float, against: str
) -> Gate:
    return Gate(
        decision=decision,
        reason=reason,
        margin=margin,
        against=against,
        delta_f1=delta["delta_f1"],
        ci_low=delta["ci_low"],
        ci_high=delta["ci_high"],
        p_not_better=delta["p_not_better"],
        blocks=int(delta["blocks"]),
    )


def _decide(delta: dict[str, float], margin: float, against: str) -> Gate:
    if delta["delta_f1"] >= margin and delta["ci_low"] > 0:
        reason = (
            f"macro-F1 {delta['delta_f1']:+.4f} over {against} (margin "
            f"{margin}), bootstrap lower bound {delta['ci_low']:+.4f} > 0"
        )
        return _gate(delta, "promote", reason, margin, against)
    why = (
        f"gain {delta['delta_f1']:+.4f} < margin {margin}"
        if delta["delta_f1"] < margin
        else f"bootstrap lower bound {delta['ci_low']:+.4f} <= 0 (gain may be noise)"
    )
    return _gate(delta, "reject", f"not demonstrably better than {against}: {why}", margin, against)


def _newest_challenger(champion: str | None, settings: Settings) -> str:
    versions = [v for v in registry.list_versions(settings) if v != champion]
    if not versions:
        raise ValidationRefused("no challenger: train a model first (python -m ml.train_model)")
    return versions[-1]


def _latest_bar(tickers: list[str]) -> pd.Timestamp:
    latest = newest_bar_ts(tickers)
    if latest is None:
        raise ValidationRefused("no bars in the database")
    return latest


def _baseline_predictions(
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


def _against_baselines(
    preds: np.ndarray,
    base_probs: dict[str, np.ndarray],
    y: np.ndarray,
    ts: np.ndarray,
    settings: Settings,
) -> Gate:
    """With no proven champion: the challenger must beat the majority and logistic baselines."""
    gate: Gate | None = None
    for name in ("majority", "logistic"):
        delta = paired_block_bootstrap(
            y,
            preds,
            base_probs[name].argmax(1),
            ts,
            samples=settings.bootstrap_samples,
            alpha=settings.bootstrap_alpha,
        )
        gate = _decide(delta, settings.promotion_margin, f"the {name} baseline")
        if gate.decision == "reject":
            break
    assert gate is not None
    if gate.decision == "promote":
        gate.reason = f"beats the majority and logistic baselines; {gate.reason}"
    return gate


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
    chall = load_version(challenger, settings)
    champ = load_version(champion, settings) if champion else None
    metas = [chall.metadata] + ([champ.metadata] if champ else [])
    tickers = list(chall.metadata.tickers or settings.universe)
    window = window or held_out_window(metas, _latest_bar(tickers))
    for meta in metas:
        check_no_overlap(window, meta)
    try:
        s_new = _samples(chall.metadata, window, tickers)
    except DatasetError as exc:
        raise ValidationRefused(f"cannot build the held-out samples: {exc}") from None
    if len(s_new) < 200:
        raise ValidationRefused(f"only {len(s_new)} labelled held-out samples; need >= 200")
    rows_new = np.arange(len(s_new))
    models: dict[str, VersionResult] = {}
    proven = champ is not None and not (reg.champion and reg.champion.provisional)
    if champ is not None:
        s_old = _samples(champ.metadata, window, tickers)
        rows_new, rows_old = _align(s_new, s_old)
        models[champ.version], preds_old = _version_result(champ, s_old, rows_old, settings)
    models[challenger], preds_new = _version_result(chall, s_new, rows_new, settings)
    y, ts = s_new.y[rows_new], s_new.bar_ts[rows_new].to_numpy("datetime64[ns]")
    X_last = newest_bar(s_new.X[rows_new])
    base_probs = _baseline_predictions(chall.metadata, tickers, window, X_last, settings)
    baselines = {name: classification_metrics(y, p) for name, p in base_probs.items()}
    if proven and champ is not None:
        delta = paired_block_bootstrap(
            y,
            preds_new,
            preds_old,
            ts,
            samples=settings.bootstrap_samples,
            alpha=settings.bootstrap_alpha,
        )
        gate = _decide(delta, settings.promotion_margin, f"champion {champion}")
    else:
        gate = _against_baselines(preds_new, base_probs, y, ts, settings)
        if gate.decision == "reject" and champ is None:
            gate.decision = "provisional"
            gate.reason = f"{gate.reason}; serves as provisional until a challenger passes"
    score = models[challenger].score or 0.0
    gate.beaten_by_baselines = [n for n, m in baselines.items() if m.macro_f1 > score]
    return ValidationReport(
        challenger=challenger,
        champion=champion,
        models=models,
        baselines=baselines,
        gate=gate,
        window=Window(start=iso(window[0]), end=iso(window[1]), n_samples=int(len(y))),
        created_at=iso(utc_now()),
    )


def store_report(report: ValidationReport, settings: Settings | None = None) -> None:
    """Write the report to the challenger's folder and to `model_evaluations`."""
    folder = registry.version_dir(report.challenger, settings)
    payload = report.model_dump(mode="json")
    write_text_atomic(folder / "evaluation.json", report.model_dump_json(indent=1))
    store_evaluation(report.challenger, report.champion, report.gate.decision == "promote", payload)


def unproven_reason(report: ValidationReport) -> str:
    """What every page says of a provisional champion."""
    against = report.gate.against or "the baselines"
    name = against.removeprefix("the ").removesuffix(" baseline")
    return UNPROVEN.format(baseline=BASELINE_NAMES.get(name, against))


def validate(
    challenger: str | None = None, *, settings: Settings | None = None, promote: bool = True
) -> ValidationReport:
    """Evaluate, store the report and, as the gate decides, promote the challenger (proven or
    provisional)."""
    settings = settings or get_settings()
    report = evaluate(challenger, settings=settings)
    store_report(report, settings)
    gate = report.gate
    log.info("gate for %s: %s (%s)", report.challenger, gate.decision, gate.reason)
    if promote and gate.decision == "promote":
        registry.promote(report.challenger, by="validation", reason=gate.reason, settings=settings)
    elif promote and gate.decision == "provisional":
        registry.promote(
            report.challenger,
            by="validation",
            reason=gate.reason,
            settings=settings,
            provisional_reason=unproven_reason(report),
        )
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from core.locks import EXIT_BUSY, LockBusyError
    from db.ops import job_run, training_lock

    parser = argparse.ArgumentParser(
        prog="python -m ml.validate_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--challenger", help="version to evaluate (default: the newest)")
    parser.add_argument("--no-promote", action="store_true", help="report only")
    args = parser.parse_args(argv)
    setup_logging("ml.validate_model")
    try:
        with training_lock(), job_run("validate_model") as run:
            try:
                report = validate(args.challenger, promote=not args.no_promote)
            except ValidationRefused as exc:
                run.skip(str(exc))
                print(f"validation refused: {exc}", file=sys.stderr)
                return 4
            run.note(f"{report.challenger}: {report.gate.decision}")
    except LockBusyError as exc:
        print(f"not started: {exc}", file=sys.stderr)
        return EXIT_BUSY
    print(summary(report))
    return 0


def summary(report: ValidationReport) -> str:
    w = report.window
    lines = [f"held-out window {w.start} .. {w.end} ({w.n_samples} samples)"]
    for version, r in report.models.items():
        lines.append(
            f"  {version}: LSTM F1 {r.lstm.macro_f1:.4f}, Transformer F1 "
            f"{r.transformer.macro_f1:.4f}, dual-signal return "
            f"{r.dual.total_return:+.2%} over {r.dual.n_trades} trades"
        )
    for name, m in report.baselines.items():
        lines.append(f"  baseline {name}: F1 {m.macro_f1:.4f}")
    if report.gate.beaten_by_baselines:
        lines.append(f"  beaten by the baseline(s): {', '.join(report.gate.beaten_by_baselines)}")
    lines.append(f"decision: {report.gate.decision} - {report.gate.reason}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
