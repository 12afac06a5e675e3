"""The baselines every evaluation scores beside the deep models, on the same features: the
majority class, a logistic regression and a gradient-boosted-tree classifier (scikit-learn), each
given the newest bar's scaled features of a window.

Training fits them on its training windows and scores them on its validation windows (stored in
the version's metadata); the gate fits them on the sessions just before its held-out window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from config.market_calendar import sessions_between
from ml.features.labels import CLASSES
from ml.models.metrics import ClassMetrics, classification_metrics

BASELINES = ("majority", "logistic", "gbt")
BASELINE_NAMES = {
    "majority": "the majority class",
    "logistic": "logistic regression",
    "gbt": "gradient-boosted trees",
}
MAX_ROWS = 40_000  # plenty for these models; keeps the fit quick


class ThreeClass:
    """Wraps a fitted classifier so predict_proba always has the columns DOWN, NEUTRAL, UP."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), len(CLASSES)))
        out[:, list(self.model.classes_)] = self.model.predict_proba(X)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.predict_proba(X).argmax(axis=1))


def newest_bar(X: np.ndarray) -> np.ndarray:
    """The baselines' input: the newest bar's features of each window [n, W, F] -> [n, F]."""
    return np.asarray(X[:, -1, :])


def fit_baselines(X_last: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, ThreeClass]:
    """Fit the three baselines on newest-bar features [n, F] and labels [n]."""
    if len(y) > MAX_ROWS:
        pick = np.random.default_rng(seed).choice(len(y), MAX_ROWS, replace=False)
        X_last, y = X_last[pick], y[pick]
    return {
        "majority": ThreeClass(DummyClassifier(strategy="most_frequent").fit(X_last, y)),
        "logistic": ThreeClass(
            LogisticRegression(max_iter=500, class_weight="balanced").fit(X_last, y)
        ),
        "gbt": ThreeClass(
            HistGradientBoostingClassifier(
                max_iter=150, learning_rate=0.1, class_weight="balanced", random_state=seed
            ).fit(X_last, y)
        ),
    }


def score_baselines(
    models: dict[str, ThreeClass], X_last: np.ndarray, y: np.ndarray
) -> dict[str, ClassMetrics]:
    """Each baseline's metrics on newest-bar features [n, F] with labels [n]."""
    return {name: classification_metrics(y, m.predict_proba(X_last)) for name, m in models.items()}


def training_range_before(
    window_start: pd.Timestamp, horizon_bars: int, sessions: int
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The `sessions` sessions before a held-out window, ending one label horizon before it."""
    end = window_start - pd.Timedelta(minutes=horizon_bars + 1)
    days = sessions_between(
        end.normalize().tz_localize(None) - pd.Timedelta(days=sessions * 3),
        end.normalize().tz_localize(None),
    )
    start = pd.Timestamp(days[-sessions] if len(days) >= sessions else days[0]).tz_localize("UTC")
    return start, end
