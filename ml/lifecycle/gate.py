"""The gate's rule: whether a challenger is promoted (proven), serves provisionally, or is
rejected, from its paired comparisons on the served signal (`ml.lifecycle.evaluation`).

One comparison passes when the gain is at least `PROMOTION_MARGIN` and a paired block bootstrap
over time (30-minute blocks shared by all tickers) puts the lower end of its one-sided
(1 - `BOOTSTRAP_ALPHA`) interval above zero (`ml.lifecycle.verdict.passes`). The challenger is
proven only when it passes against every baseline and, when a proven champion serves, against that
champion too; with nothing serving, a challenger that is not proven serves as provisional.
"""

from __future__ import annotations

from ml.lifecycle.bootstrap import PairedDelta
from ml.lifecycle.report import Decision, Gate, ValidationReport
from ml.lifecycle.verdict import judgement, passes
from ml.training.baselines import BASELINE_NAMES, BASELINES

UNPROVEN = "unproven: did not beat {baseline} on the held-out window, see the model lab"


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


def unproven_reason(report: ValidationReport) -> str:
    """What every page says of a provisional champion: the baselines it did not beat."""
    names = [BASELINE_NAMES.get(n, n) for n in report.gate.not_beaten]
    if not names:
        against = report.gate.against or "the baselines"
        name = against.removeprefix("the ").removesuffix(" baseline")
        names = [BASELINE_NAMES.get(name, against)]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return UNPROVEN.format(baseline=listed)
