"""The champion/challenger gate: `python -m ml.lifecycle.validate_model [--challenger V]`.

The challenger and the champion are evaluated on the same held-out window, next to three
baselines (the majority class, logistic regression and gradient-boosted trees), on the
**served signal** (`ml.lifecycle.evaluation`). The challenger is promoted, as a **proven**
champion, only when it passes against every baseline and, when a proven champion serves, against
that champion too (`ml.lifecycle.gate`). When nothing serves yet and the challenger does not pass,
it serves as
**provisional** (marked unproven on every page, its signals recorded as provisional) until a
challenger passes; a provisional champion is not a bar to clear, the baselines are.
The report (`ml.lifecycle.report.ValidationReport`) also compares each network (LSTM, Transformer
and their mean macro-F1) with the champion's, and goes to `models/<challenger>/evaluation.json` and
`model_evaluations`; it names every baseline the challenger did not beat.

The evaluation takes minutes; the promotion names the champion it was judged against, and the
registry refuses it when another promotion or rollback replaced that champion meanwhile: the
challenger is then not promoted, the stored report says so, and the run ends normally.
"""

from __future__ import annotations

import logging

from config.cli import setup_logging
from config.settings import Settings, get_settings
from core.files import write_text_atomic
from db.models import store_evaluation
from ml.lifecycle.evaluation import ValidationRefused, evaluate
from ml.lifecycle.gate import unproven_reason
from ml.lifecycle.report import ValidationReport
from ml.models import registry

log = logging.getLogger(__name__)


def store_report(report: ValidationReport, settings: Settings | None = None) -> None:
    """Write the report to the challenger's folder and to `model_evaluations`."""
    folder = registry.version_dir(report.challenger, settings)
    payload = report.model_dump(mode="json")
    write_text_atomic(folder / "evaluation.json", report.model_dump_json(indent=1))
    store_evaluation(report.challenger, report.champion, report.gate.decision == "promote", payload)


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
        prog="python -m ml.lifecycle.validate_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--challenger", help="version to evaluate (default: the newest)")
    parser.add_argument("--no-promote", action="store_true", help="report only")
    args = parser.parse_args(argv)
    setup_logging("ml.lifecycle.validate_model")
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
