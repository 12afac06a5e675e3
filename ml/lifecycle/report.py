"""The gate's report, typed: what `ml.lifecycle.validate_model` stores in `models/<challenger>/
evaluation.json` and in `model_evaluations`, and what the model lab shows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.validation import problems
from ml.lifecycle.bootstrap import PairedDelta
from ml.lifecycle.signal_metrics import EquityCurve, SignalMetrics
from ml.models.metrics import ClassMetrics

Decision = Literal["promote", "provisional", "reject"]


class VersionResult(BaseModel):
    """One version on the held-out window: both models and the dual-model signals."""

    model_config = ConfigDict(extra="ignore")

    lstm: ClassMetrics
    transformer: ClassMetrics
    dual: EquityCurve = Field(default_factory=EquityCurve)  # the signal's P&L (= signal.pnl)
    score: float | None = None  # mean macro-F1 of the two models
    signal: SignalMetrics | None = None  # the served signal (None in reports stored before it)


class Gate(BaseModel):
    """The decision and the evidence behind it.

    `promote`: on the served signal the challenger beat every baseline (and a proven champion)
    by the margin and the bootstrap: it serves as a proven champion; `provisional`: nothing
    serves yet and the challenger did not beat every baseline, so it serves marked unproven;
    `reject`: it stays a challenger. The figures are those of the comparison that decided."""

    model_config = ConfigDict(extra="ignore")

    decision: Decision
    reason: str
    margin: float | None = None
    against: str | None = None  # "champion <v>" or "the <name> baseline"
    figure: str = "networks"  # what was compared: "signal" (the served signal) or "networks"
    delta_f1: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_not_better: float | None = None
    blocks: int | None = None
    beaten_by_baselines: list[str] = Field(default_factory=list)  # better point estimate
    not_beaten: list[str] = Field(default_factory=list)  # baselines the challenger did not beat


class Window(BaseModel):
    start: str
    end: str
    n_samples: int


class ValidationReport(BaseModel):
    """Challenger and champion on the same held-out bars, the baselines beside them."""

    model_config = ConfigDict(extra="ignore")

    challenger: str
    champion: str | None = None
    models: dict[str, VersionResult] = Field(default_factory=dict)
    baselines: dict[str, ClassMetrics] = Field(default_factory=dict)
    # each baseline's signal: the dual-model rule with the baseline in place of both networks
    baseline_signals: dict[str, SignalMetrics] = Field(default_factory=dict)
    # the challenger minus the champion, per figure ("signal", "lstm", "transformer", "networks")
    vs_champion: dict[str, PairedDelta] = Field(default_factory=dict)
    # each version's served signal minus each baseline's, by version then baseline
    vs_baselines: dict[str, dict[str, PairedDelta]] = Field(default_factory=dict)
    gate: Gate
    window: Window
    created_at: str | None = None


class ReportError(ValueError):
    """A stored report this version cannot read."""


def parse_report(raw: dict[str, Any]) -> ValidationReport:
    """A stored report as a `ValidationReport`; `ReportError` names what is missing."""
    try:
        return ValidationReport.model_validate(raw)
    except ValidationError as exc:
        raise ReportError(f"the stored report cannot be read: {problems(exc)}") from None
