"""Classification metrics: what training, the gate, drift and the live scoreboard report of a
classifier.

- `classification_metrics(y, probs)`: `ClassMetrics` (macro-F1, accuracy, log-loss, calibration
  error and curve, per-class precision / recall / support, confusion matrix, mean confidence).
- `macro_f1`, `hit_rate` (directional: the share of UP/DOWN calls on UP/DOWN outcomes that got
  the direction right).

The served signal's figures (equity, BUY/SELL/HOLD calls) are in `ml.lifecycle.signal_metrics`; the
block-bootstrap intervals of macro-F1 and the hit rate in `ml.lifecycle.bootstrap`.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from ml.features.labels import CLASSES, DOWN, UP

LABELS = list(range(len(CLASSES)))
BINS = 10


class Calibration(BaseModel):
    """Mean confidence and accuracy per confidence bin (bins with no sample left out)."""

    confidence: list[float] = Field(default_factory=list)
    accuracy: list[float] = Field(default_factory=list)
    count: list[int] = Field(default_factory=list)


class ClassMetrics(BaseModel):
    """A classifier's results on labelled samples."""

    model_config = ConfigDict(extra="ignore")

    macro_f1: float
    accuracy: float
    log_loss: float | None = None
    ece: float | None = None
    precision: dict[str, float] = Field(default_factory=dict)
    recall: dict[str, float] = Field(default_factory=dict)
    support: dict[str, int] = Field(default_factory=dict)
    confusion: list[list[int]] = Field(default_factory=list)
    calibration: Calibration = Field(default_factory=Calibration)
    mean_confidence: float | None = None
    n: int = 0


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, labels=LABELS, average="macro", zero_division=0))


def hit_rate(y: np.ndarray, pred: np.ndarray) -> float:
    """Share of the directional calls (UP or DOWN predicted) whose outcome went that way; an
    outcome that stayed NEUTRAL counts as a miss (NaN when no call was made)."""
    y, pred = np.asarray(y), np.asarray(pred)
    directional = np.isin(pred, [DOWN, UP])
    if not directional.any():
        return float("nan")
    return float((pred[directional] == y[directional]).mean())


def _calibration(conf: np.ndarray, correct: np.ndarray, bins: int) -> tuple[Calibration, float]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    cal, ece = Calibration(), 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            cal.confidence.append(float(conf[mask].mean()))
            cal.accuracy.append(float(correct[mask].mean()))
            cal.count.append(int(mask.sum()))
            ece += float(mask.mean() * abs(conf[mask].mean() - correct[mask].mean()))
    return cal, ece


def classification_metrics(y: np.ndarray, probs: np.ndarray, bins: int = BINS) -> ClassMetrics:
    """Metrics of class probabilities `probs` [n, 3] against labels `y` [n] (0 DOWN, 1 NEUTRAL,
    2 UP); the predicted class is the most probable one."""
    y = np.asarray(y).astype(np.int64)
    probs = np.clip(np.asarray(probs, dtype="float64"), 1e-7, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    prec, rec, _, support = precision_recall_fscore_support(y, pred, labels=LABELS, zero_division=0)
    conf = probs.max(axis=1)
    calibration, ece = _calibration(conf, (pred == y).astype(float), bins)
    return ClassMetrics(
        macro_f1=macro_f1(y, pred),
        accuracy=float(accuracy_score(y, pred)) if len(y) else 0.0,
        log_loss=float(log_loss(y, probs, labels=LABELS)) if len(y) else None,
        ece=float(ece),
        precision={c: float(p) for c, p in zip(CLASSES, prec, strict=True)},
        recall={c: float(r) for c, r in zip(CLASSES, rec, strict=True)},
        support={c: int(s) for c, s in zip(CLASSES, support, strict=True)},
        confusion=confusion_matrix(y, pred, labels=LABELS).tolist(),
        calibration=calibration,
        mean_confidence=float(conf.mean()) if len(conf) else None,
        n=int(len(y)),
    )
