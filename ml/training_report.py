"""What training records about a model: validation metrics, baselines and drift reference stats."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support

from ml.labels import CLASSES

LABELS = list(range(len(CLASSES)))
BINS = 10
REFERENCE_SAMPLE = 500


def classification_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Macro-F1, accuracy, log-loss and per-class precision/recall of probabilities [n, 3]."""
    pred = probs.argmax(axis=1)
    prec, rec, _, support = precision_recall_fscore_support(y, pred, labels=LABELS, zero_division=0)
    clipped = np.clip(probs, 1e-7, 1.0)
    return {
        "macro_f1": float(f1_score(y, pred, labels=LABELS, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "log_loss": float(log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=LABELS)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "support": int(s)}
            for name, p, r, s in zip(CLASSES, prec, rec, support, strict=True)
        },
        "mean_confidence": float(probs.max(axis=1).mean()),
        "n": len(y),
    }


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, labels=LABELS, average="macro", zero_division=0))


def majority_class(y_train: np.ndarray) -> int:
    return int(np.bincount(y_train, minlength=len(CLASSES)).argmax())


def logistic_baseline(X_train: np.ndarray, y_train: np.ndarray, seed: int = 0) -> Any:
    """Multinomial logistic regression on the last bar's features of each window (balanced)."""
    model = LogisticRegression(max_iter=500, class_weight="balanced", random_state=seed)
    return model.fit(X_train[:, -1, :], y_train)


def baseline_scores(
    X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray, y_eval: np.ndarray
) -> dict[str, float]:
    """Macro-F1 on the evaluation windows of the majority class and of logistic regression."""
    majority = np.full(len(y_eval), majority_class(y_train))
    logreg = logistic_baseline(X_train, y_train).predict(X_eval[:, -1, :])
    return {
        "majority_macro_f1": macro_f1(y_eval, majority),
        "logreg_macro_f1": macro_f1(y_eval, logreg),
    }


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Balanced weights n / (k * count) for the classes present."""
    counts = np.bincount(y, minlength=len(CLASSES))
    present = counts > 0
    return {int(c): float(len(y) / (present.sum() * counts[c])) for c in LABELS if counts[c] > 0}


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
