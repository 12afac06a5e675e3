"""Drift statistics and the alarm state machine (pure functions; the job is ml/drift_monitor).

- Data drift: per-feature PSI of the live window against the training reference histogram
  (quantile bins stored in the model metadata), and a KS test against the reference CDF
  interpolated from the same quantiles.
- Concept drift: a drop of the live models' mean confidence below the validation reference, and
  (once outcomes are known) a drop of realised accuracy.
- Alarms need persistence: `DRIFT_PERSISTENCE` consecutive alarming checks make a severe alarm;
  an alarm clears only when the statistic falls below half its threshold (hysteresis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

EPS = 1e-4
MODELS = ("lstm", "transformer")
ALARMS = ("data", "confidence", "accuracy")


class Metric:
    """The names of the figures in `drift_metrics` (the drift monitor writes them, the drift
    page reads them)."""

    PSI = "psi"  # per feature
    KS_PVALUE = "ks_pvalue"  # per feature
    DRIFTED_SHARE = "drifted_share"
    SENTIMENT_MODEL_CHANGED = "sentiment_model_changed"  # 1: news scored by another model

    @staticmethod
    def confidence(model: str) -> str:
        return f"confidence_{model}"

    @staticmethod
    def confidence_drop(model: str) -> str:
        return f"confidence_drop_{model}"

    @staticmethod
    def realised_accuracy(model: str) -> str:
        return f"realised_accuracy_{model}"

    @staticmethod
    def accuracy_drop(model: str) -> str:
        return f"accuracy_drop_{model}"

    @staticmethod
    def alarm(name: str) -> str:
        return f"alarm_{name}"

    ALARM_PREFIX = "alarm_"


def psi(live: np.ndarray, edges: list[float], ref_props: list[float]) -> float:
    """Population stability index of `live` values against reference bin proportions."""
    live = np.asarray(live, dtype="float64")
    live = live[np.isfinite(live)]
    if live.size == 0:
        return float("nan")
    inner = np.asarray(edges[1:-1], dtype="float64")
    counts = np.bincount(np.searchsorted(inner, live, side="right"), minlength=len(ref_props))
    p_live = np.clip(counts / counts.sum(), EPS, None)
    p_ref = np.clip(np.asarray(ref_props, dtype="float64"), EPS, None)
    return float(np.sum((p_live - p_ref) * np.log(p_live / p_ref)))


def ks_pvalue(live: np.ndarray, ref: dict[str, Any]) -> float:
    """KS test p-value of `live` against the reference: two-sample against the stored reference
    sample when there is one, else against the CDF interpolated between the stored quantiles."""
    live = np.asarray(live, dtype="float64")
    live = live[np.isfinite(live)]
    if live.size < 5:
        return float("nan")
    if ref.get("sample"):
        return float(stats.ks_2samp(live, np.asarray(ref["sample"], dtype="float64")).pvalue)
    xs = np.asarray(ref["edges"], dtype="float64")
    cdf_at = np.concatenate([[0.0], np.cumsum(ref["proportions"])])
    cdf_at = cdf_at / cdf_at[-1]
    xs, keep = np.unique(xs, return_index=True)
    cdf_at = cdf_at[keep]
    if len(xs) < 2:
        return float("nan")

    def cdf(x: np.ndarray) -> np.ndarray:
        return np.asarray(np.interp(x, xs, cdf_at, left=0.0, right=1.0))

    return float(stats.kstest(live, cdf).pvalue)


def data_drift(
    live: dict[str, np.ndarray],
    reference: dict[str, dict[str, Any]],
    psi_threshold: float,
    ks_alpha: float,
) -> dict[str, dict[str, float]]:
    """Per-feature PSI and KS p-value, with whether each feature counts as drifted."""
    out = {}
    for name, ref in reference.items():
        if name not in live or "edges" not in ref:
            continue
        p = psi(live[name], ref["edges"], ref["proportions"])
        k = ks_pvalue(live[name], ref)
        # Minute data are autocorrelated, which makes KS over-eager on its own: a KS rejection
        # counts only together with at least half the PSI threshold.
        drifted = bool(
            (np.isfinite(p) and p > psi_threshold)
            or (np.isfinite(k) and k < ks_alpha and p > psi_threshold / 2)
        )
        out[name] = {"psi": p, "ks_pvalue": k, "drifted": float(drifted)}
    return out


@dataclass(frozen=True)
class AlarmState:
    """Consecutive alarming checks and whether the alarm is raised."""

    streak: int = 0
    raised: bool = False


def step_alarm(state: AlarmState, value: float, threshold: float, persistence: int) -> AlarmState:
    """Advance an alarm on a statistic where higher is worse (a PSI share, a confidence drop).

    It is raised after `persistence` consecutive breaches (value > threshold) and cleared, with
    hysteresis, only once the value is back below half the threshold.
    """
    if not np.isfinite(value):
        return state
    if value > threshold:
        streak = state.streak + 1
        return AlarmState(streak, state.raised or streak >= persistence)
    if state.raised and value >= threshold / 2:
        return AlarmState(0, True)
    return AlarmState(0, False)


# --------------------------------------------------------------------------- the reference
BINS = 10
REFERENCE_SAMPLE = 500


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def reference_stats(frame: pd.DataFrame, features: list[str], seed: int = 0) -> dict[str, Any]:
    """Per feature over the training range: mean, std, 10 quantile-bin edges and the share of
    rows in each bin (binning as `np.searchsorted(edges[1:-1], x, side="right")`), and a small
    random sample for two-sample tests. Features never defined there get only a count of 0."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name in features:
        values = frame[name].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            out[name] = {"mean": None, "std": None, "count": 0}
            continue
        edges = np.quantile(values, np.linspace(0.0, 1.0, BINS + 1))
        bins = np.searchsorted(edges[1:-1], values, side="right")
        props = np.bincount(bins, minlength=BINS) / len(values)
        take = min(REFERENCE_SAMPLE, len(values))
        out[name] = {
            "mean": _finite_or_none(values.mean()),
            "std": _finite_or_none(values.std()),
            "count": len(values),
            "edges": edges.tolist(),
            "proportions": props.tolist(),
            "sample": np.sort(rng.choice(values, take, replace=False)).tolist(),
        }
    return out
