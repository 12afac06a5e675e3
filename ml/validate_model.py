"""The champion/challenger gate: `python -m ml.validate_model [--challenger V]`.

Both versions are evaluated on the same held-out window: from the end of the newest training
data of either model (plus an embargo of the label horizon) to the newest bar. The run refuses
when the window would overlap either model's training or validation range. Next to them, on the
same window and features, score a majority-class baseline, a logistic regression and a
gradient-boosted-tree classifier (`ml.baselines`, fitted on the sessions just before the window).

Everything is judged on the **served signal**: the dual-model action (`dual_actions`: BUY,
SELL or HOLD) read as a call of UP, DOWN or NEUTRAL, scored by its macro-F1 against the realised
triple-barrier labels. A baseline's signal is the same rule with the baseline's probabilities in
place of both networks' (BUY when its P(UP) reaches `BUY_THRESHOLD`, SELL when its P(DOWN)
reaches `SELL_THRESHOLD`). One comparison passes when the gain is at least `PROMOTION_MARGIN`
and a paired block bootstrap over time (30-minute blocks shared by all tickers) puts the lower
end of its one-sided (1 - `BOOTSTRAP_ALPHA`) interval above zero (`ml.verdict.passes`).

The challenger is promoted, as a **proven** champion, only when it passes against every baseline
(the majority class, logistic regression and gradient-boosted trees) and, when a proven champion
serves, against that champion too. When nothing serves yet and the challenger does not pass, it
serves as **provisional** (marked unproven on every page, its signals recorded as provisional)
until a challenger passes; a provisional champion is not a bar to clear, the baselines are.
The report (`ml.report.ValidationReport`) also compares each network (LSTM, Transformer and
their mean macro-F1) with the champion's, and goes to `models/<challenger>/evaluation.json` and
`model_evaluations`; it names every baseline the challenger did not beat.

The evaluation takes minutes; the promotion names the champion it was judged against, and the
registry refuses it when another promotion or rollback replaced that champion meanwhile: the
challenger is then not promoted, the stored report says so, and the run ends normally.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings, setup_logging
from core.files import write_text_atomic
from core.timeutil import iso, utc_now
from db.bars import newest_bar_ts
from db.models import store_evaluation
from ml import registry
from ml.baselines import (
    BASELINE_NAMES,
    BASELINES,
    fit_baselines,
    newest_bar,
    training_range_before,
)
from ml.dataset import DatasetError, Samples, build_samples, load_raw
from ml.feature_engineering import required_history_bars
from ml.generate_recommendation import dual_actions
from ml.metadata import MODEL_NAMES, ModelMetadata
from ml.metrics import (
    ClassMetrics,
    PairedDelta,
    SignalMetrics,
    classification_metrics,
    paired_delta,
    signal_classes,
    signal_metrics,
)
from ml.model_loader import LoadedModels, ModelLoadError, load_version
from ml.report import Decision, Gate, ValidationReport, VersionResult, Window
from ml.verdict import judgement, passes

log = logging.getLogger(__name__)
UNPROVEN = "unproven: did not beat {baseline} on the held-out window, see the model lab"
Preds = dict[str, np.ndarray]  # "signal", "lstm", "transformer": predicted classes [n]


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


def _gate(delta: PairedDelta, decision: Decision, reason: str, margin: float, against: str) -> Gate:
    return Gate(
        decision=decision,
        reason=reason,
        margin=margin,
        against=against,
        figure="signal",
        delta_f1=delta.delta,
        ci_low=delta.low,
        ci_high=delta.high,
        p_not_better=delta.p_not_better,
        blocks=delta.blocks,
    )


def against_baselines(vs: dict[str, PairedDelta], margin: float) -> Gate:
    """The challenger's served signal against every baseline's: `promote` when it passes
    against each one; else `reject`, with the figures of the strongest baseline it did not beat."""
    failed = [n for n in BASELINES if not passes(vs[n], margin)]
    if not failed:
        closest = min(BASELINES, key=lambda n: vs[n].low)
        reason = (
            f"beats all {len(BASELINES)} baselines on the served signal; the closest: "
            + judgement(vs[closest], margin, BASELINE_NAMES[closest], "signal")
        )
        return _gate(vs[closest], "promote", reason, margin, f"the {closest} baseline")
    strongest = min(failed, key=lambda n: vs[n].delta)
    reason = "did not beat every baseline on the served signal: " + "; ".join(
        judgement(vs[n], margin, BASELINE_NAMES[n], "signal") for n in failed
    )
    gate = _gate(vs[strongest], "reject", reason, margin, f"the {strongest} baseline")
    gate.not_beaten = failed
    return gate


def decide(
    vs_champion: dict[str, PairedDelta] | None,
    vs_baselines: dict[str, PairedDelta],
    *,
    champion: str | None,
    proven: bool,
    margin: float,
) -> Gate:
    """The gate's rule on the served signal: proven only past every baseline (and past a proven
    champion); with nothing serving, a challenger that is not proven serves provisionally."""
    base = against_baselines(vs_baselines, margin)
    if not (proven and vs_champion is not None):
        if base.decision == "reject":
            base.decision = "provisional" if champion is None else "reject"
            base.reason += (
                "; serves as provisional until a challenger passes"
                if champion is None
                else f"; the provisional champion {champion} keeps serving"
            )
        return base
    delta, against = vs_champion["signal"], f"champion {champion}"
    sentence = judgement(delta, margin, against, "signal")
    if not passes(delta, margin):
        gate = _gate(delta, "reject", sentence, margin, against)
        gate.not_beaten = base.not_beaten
        return gate
    if base.decision == "reject":
        base.reason = f"{sentence}, but {base.reason}; the champion keeps serving"
        return base
    return _gate(delta, "promote", f"{sentence}; {base.reason}", margin, against)


def _newest_challenger(champion: str | None, settings: Settings) -> str:
    versions = [v for v in registry.list_versions(settings) if v != champion]
    if not versions:
        raise ValidationRefused("no challenger: train a model first (python -m ml.train_model)")
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
    try:
        s_new = _samples(chall.metadata, window, tickers)
    except DatasetError as exc:
        raise ValidationRefused(f"cannot build the held-out samples: {exc}") from None
    if len(s_new) < 200:
        raise ValidationRefused(f"only {len(s_new)} labelled held-out samples; need >= 200")
    rows_new = np.arange(len(s_new))
    models: dict[str, VersionResult] = {}
    preds: dict[str, Preds] = {}
    if champ is not None:
        s_old = _samples(champ.metadata, window, tickers)
        rows_new, rows_old = _align(s_new, s_old)
        models[champ.version], preds[champ.version] = _version_result(
            champ, s_old, rows_old, settings
        )
    models[challenger], preds[challenger] = _version_result(chall, s_new, rows_new, settings)
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


def store_report(report: ValidationReport, settings: Settings | None = None) -> None:
    """Write the report to the challenger's folder and to `model_evaluations`."""
    folder = registry.version_dir(report.challenger, settings)
    payload = report.model_dump(mode="json")
    write_text_atomic(folder / "evaluation.json", report.model_dump_json(indent=1))
    store_evaluation(report.challenger, report.champion, report.gate.decision == "promote", payload)


def unproven_reason(report: ValidationReport) -> str:
    """What every page says of a provisional champion: the baselines it did not beat."""
    names = [BASELINE_NAMES.get(n, n) for n in report.gate.not_beaten]
    if not names:
        against = report.gate.against or "the baselines"
        name = against.removeprefix("the ").removesuffix(" baseline")
        names = [BASELINE_NAMES.get(name, against)]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return UNPROVEN.format(baseline=listed)


def validate(
    challenger: str | None = None, *, settings: Settings | None = None, promote: bool = True
) -> ValidationReport:
    """Evaluate, promote the challenger (proven or provisional) as the gate decides, and store the
    report. The promotion is made only while the champion it was evaluated against still serves:
    when another change replaced it meanwhile, the challenger is not promoted and the stored
    report says why (the gate's decision becomes `reject`)."""
    settings = settings or get_settings()
    report = evaluate(challenger, settings=settings)
    gate = report.gate
    log.info("gate for %s: %s (%s)", report.challenger, gate.decision, gate.reason)
    failure = _promote(report, settings) if promote else None
    store_report(report, settings)
    if failure is not None and not isinstance(failure, registry.RegistryConflict):
        raise failure
    return report


def _promote(report: ValidationReport, settings: Settings) -> registry.RegistryError | None:
    """Promote as the gate decided, against the champion the report was evaluated with; on a
    refusal the report's gate records it and the error is returned."""
    gate = report.gate
    if gate.decision not in ("promote", "provisional"):
        return None
    unproven = unproven_reason(report) if gate.decision == "provisional" else None
    try:
        registry.promote(
            report.challenger,
            by="validation",
            reason=gate.reason,
            expected_champion=report.champion,
            settings=settings,
            provisional_reason=unproven,
        )
    except registry.RegistryError as exc:
        level = logging.WARNING if isinstance(exc, registry.RegistryConflict) else logging.ERROR
        log.log(
            level, "%s not promoted (the gate said %s): %s", report.challenger, gate.decision, exc
        )
        gate.reason = f"not promoted: {exc}; the gate had said {gate.decision}: {gate.reason}"
        gate.decision = "reject"
        return exc
    return None


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
        signal = "" if r.signal is None else f"served-signal F1 {r.signal.macro_f1:.4f}, "
        lines.append(
            f"  {version}: {signal}LSTM F1 {r.lstm.macro_f1:.4f}, Transformer F1 "
            f"{r.transformer.macro_f1:.4f}, dual-signal return "
            f"{r.dual.total_return:+.2%} over {r.dual.n_trades} trades"
        )
    for name, m in report.baselines.items():
        sig = report.baseline_signals.get(name)
        extra = "" if sig is None else f", its signal's F1 {sig.macro_f1:.4f}"
        lines.append(f"  baseline {name}: F1 {m.macro_f1:.4f}{extra}")
    if report.gate.beaten_by_baselines:
        lines.append(f"  beaten by the baseline(s): {', '.join(report.gate.beaten_by_baselines)}")
    lines.append(f"decision: {report.gate.decision} - {report.gate.reason}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
