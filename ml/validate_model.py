"""The champion/challenger gate: `python -m ml.validate_model [--challenger V]`.

Both versions are evaluated on the same held-out window: from the end of the newest training
data of either model (plus an embargo of the label horizon) to the newest bar. The run refuses
when the window would overlap either model's training or validation range. Next to them, on the
same window and features, score a majority-class baseline, a logistic regression and a
gradient-boosted-tree classifier (fitted on the sessions just before the window).

The challenger is promoted only when it is demonstrably better:
- with a champion: its macro-F1 (mean of its two models) beats the champion's by at least
  `PROMOTION_MARGIN`, and a paired block bootstrap over time puts the lower end of the gain's
  one-sided (1 - `BOOTSTRAP_ALPHA`) interval above zero;
- without one: it beats the majority-class and the logistic-regression baselines the same way.
The full report goes to `models/<challenger>/evaluation.json` and `model_evaluations`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings, setup_logging
from core.files import write_text_atomic
from db.bars import newest_bar_ts
from db.models import store_evaluation
from ml import registry
from ml.baselines import fit_baselines
from ml.dataset import DatasetError, Samples, build_samples, load_raw
from ml.evaluation import classification_metrics, dual_actions, equity_curve, paired_block_bootstrap
from ml.feature_engineering import required_history_bars
from ml.model_loader import LoadedModels, load_version

log = logging.getLogger(__name__)


class ValidationRefused(RuntimeError):
    """The gate cannot run honestly (overlap with training data, no data, no challenger)."""


def _ranges(meta: dict[str, Any]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    out = []
    for key in ("train_range", "val_range"):
        if meta.get(key):
            start, end = meta[key]
            out.append((pd.Timestamp(start), pd.Timestamp(end)))
    if not out:
        raise ValidationRefused(f"model {meta.get('version')} has no training ranges in metadata")
    return out


def held_out_window(
    metas: list[dict[str, Any]], latest_bar: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """From the newest training bar of any model (+ label horizon embargo) to `latest_bar`."""
    trained_until = max(end for m in metas for _, end in _ranges(m))
    horizon = max(int(m["label_params"]["horizon_bars"]) for m in metas)
    start = trained_until + pd.Timedelta(minutes=horizon + 1)
    if start >= latest_bar:
        raise ValidationRefused(
            f"no held-out data: the models were trained up to {trained_until}, the newest bar is "
            f"{latest_bar}; wait for new sessions or train with an earlier --end"
        )
    return start, latest_bar


def check_no_overlap(window: tuple[pd.Timestamp, pd.Timestamp], meta: dict[str, Any]) -> None:
    """Refuse when the window touches the model's training or validation data."""
    start, end = window
    for r_start, r_end in _ranges(meta):
        if start <= r_end and end >= r_start:
            raise ValidationRefused(
                f"the evaluation window {start} .. {end} overlaps the training data of "
                f"{meta['version']} ({r_start} .. {r_end}); refusing to evaluate"
            )


def _samples(
    models: LoadedModels, window: tuple[pd.Timestamp, pd.Timestamp], tickers: list[str]
) -> Samples:
    meta = models.metadata
    raw = load_raw(
        tickers,
        window[0],
        window[1] + pd.Timedelta(minutes=1),
        warmup_bars=required_history_bars(meta),
    )
    return build_samples(raw, meta, start=window[0], end=window[1])


def _align(a: Samples, b: Samples) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the samples both versions have (same ticker and bar)."""
    ka = pd.DataFrame({"t": a.ticker, "ts": a.bar_ts, "ia": np.arange(len(a))})
    kb = pd.DataFrame({"t": b.ticker, "ts": b.bar_ts, "ib": np.arange(len(b))})
    both = ka.merge(kb, on=["t", "ts"])
    return both["ia"].to_numpy(), both["ib"].to_numpy()


def _version_report(
    models: LoadedModels, s: Samples, rows: np.ndarray, settings: Settings
) -> tuple[dict[str, Any], np.ndarray]:
    X = s.X[rows]
    p_lstm, p_tf = models.lstm.predict(X), models.transformer.predict(X)
    y = s.y[rows]
    actions = dual_actions(p_lstm, p_tf, settings.buy_threshold, settings.sell_threshold)
    report = {
        "lstm": classification_metrics(y, p_lstm),
        "transformer": classification_metrics(y, p_tf),
        "dual": equity_curve(
            actions, s.fwd_return[rows], s.bar_ts[rows].to_numpy(), settings.cost_bps
        ),
    }
    report["score"] = (report["lstm"]["macro_f1"] + report["transformer"]["macro_f1"]) / 2
    return report, np.vstack([p_lstm.argmax(1), p_tf.argmax(1)])


def _decide(delta: dict[str, float], margin: float, against: str) -> tuple[str, str]:
    if delta["delta_f1"] >= margin and delta["ci_low"] > 0:
        return "promote", (
            f"macro-F1 {delta['delta_f1']:+.4f} over {against} (margin "
            f"{margin}), bootstrap lower bound {delta['ci_low']:+.4f} > 0"
        )
    why = (
        f"gain {delta['delta_f1']:+.4f} < margin {margin}"
        if delta["delta_f1"] < margin
        else f"bootstrap lower bound {delta['ci_low']:+.4f} <= 0 (gain may be noise)"
    )
    return "reject", f"not demonstrably better than {against}: {why}"


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


def evaluate(
    challenger: str | None = None,
    *,
    settings: Settings | None = None,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> dict[str, Any]:
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
    tickers = list(chall.metadata.get("tickers") or settings.universe)
    window = window or held_out_window(metas, _latest_bar(tickers))
    for meta in metas:
        check_no_overlap(window, meta)
    try:
        s_new = _samples(chall, window, tickers)
    except DatasetError as exc:
        raise ValidationRefused(f"cannot build the held-out samples: {exc}") from None
    if len(s_new) < 200:
        raise ValidationRefused(f"only {len(s_new)} labelled held-out samples; need >= 200")
    rows_new = np.arange(len(s_new))
    report: dict[str, Any] = {"challenger": challenger, "champion": champion, "models": {}}
    if champ is not None:
        s_old = _samples(champ, window, tickers)
        rows_new, rows_old = _align(s_new, s_old)
        report["models"][champion], preds_old = _version_report(champ, s_old, rows_old, settings)
    report["models"][challenger], preds_new = _version_report(chall, s_new, rows_new, settings)
    y, ts = s_new.y[rows_new], s_new.bar_ts[rows_new].to_numpy()
    base_probs = fit_baselines(chall, tickers, window, settings)
    X_last = s_new.X[rows_new][:, -1, :]
    report["baselines"] = {
        name: classification_metrics(y, model.predict_proba(X_last))
        for name, model in base_probs.items()
    }
    if champ is not None:
        delta = paired_block_bootstrap(
            y,
            preds_new,
            preds_old,
            ts,
            samples=settings.bootstrap_samples,
            alpha=settings.bootstrap_alpha,
        )
        decision, reason = _decide(delta, settings.promotion_margin, f"champion {champion}")
    else:
        decision, reason, delta = "promote", "no champion yet; beats the baselines", {}
        for name in ("majority", "logistic"):
            pred = base_probs[name].predict_proba(X_last).argmax(1)
            d = paired_block_bootstrap(
                y,
                preds_new,
                pred,
                ts,
                samples=settings.bootstrap_samples,
                alpha=settings.bootstrap_alpha,
            )
            dec, why = _decide(d, settings.promotion_margin, f"the {name} baseline")
            delta = delta or d
            if dec == "reject":
                decision, reason, delta = dec, why, d
                break
    report["gate"] = {
        **delta,
        "decision": decision,
        "reason": reason,
        "margin": settings.promotion_margin,
    }
    report["window"] = {
        "start": window[0].isoformat(),
        "end": window[1].isoformat(),
        "n_samples": int(len(y)),
    }
    report["created_at"] = pd.Timestamp.now(tz="UTC").isoformat()
    return report


def store_report(report: dict[str, Any], settings: Settings | None = None) -> None:
    """Write the report to the challenger's folder and to `model_evaluations`."""
    folder = registry.version_dir(report["challenger"], settings)
    payload = json.dumps(report, indent=1, default=str)
    write_text_atomic(folder / "evaluation.json", payload)
    store_evaluation(
        report["challenger"], report["champion"], report["gate"]["decision"] == "promote", report
    )


def validate(
    challenger: str | None = None, *, settings: Settings | None = None, promote: bool = True
) -> dict[str, Any]:
    """Evaluate, store the report and, when the gate says so, promote the challenger."""
    settings = settings or get_settings()
    report = evaluate(challenger, settings=settings)
    store_report(report, settings)
    gate = report["gate"]
    log.info("gate for %s: %s (%s)", report["challenger"], gate["decision"], gate["reason"])
    if promote and gate["decision"] == "promote":
        registry.promote(
            report["challenger"], by="validation", reason=gate["reason"], settings=settings
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
            run.note(f"{report['challenger']}: {report['gate']['decision']}")
    except LockBusyError as exc:
        print(f"not started: {exc}", file=sys.stderr)
        return EXIT_BUSY
    print(summary(report))
    return 0


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"held-out window {report['window']['start']} .. {report['window']['end']} "
        f"({report['window']['n_samples']} samples)"
    ]
    for version, r in report["models"].items():
        lines.append(
            f"  {version}: LSTM F1 {r['lstm']['macro_f1']:.4f}, Transformer F1 "
            f"{r['transformer']['macro_f1']:.4f}, dual-signal return "
            f"{r['dual']['total_return']:+.2%} over {r['dual']['n_trades']} trades"
        )
    for name, m in report["baselines"].items():
        lines.append(f"  baseline {name}: F1 {m['macro_f1']:.4f}")
    g = report["gate"]
    lines.append(f"decision: {g['decision']} - {g['reason']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
