"""Baselines every evaluation scores beside the deep models, on the same features: the majority
class, a logistic regression and a gradient-boosted-tree classifier (scikit-learn), fitted on the
sessions just before the held-out window, using the newest bar's scaled features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from config.market_calendar import sessions_between
from config.settings import Settings
from ml.dataset import build_samples, load_raw
from ml.feature_engineering import required_history_bars
from ml.model_loader import LoadedModels
from ml.predict import CLASSES


class ThreeClass:
    """Wraps a fitted classifier so predict_proba always has the columns DOWN, NEUTRAL, UP."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), len(CLASSES)))
        out[:, list(self.model.classes_)] = self.model.predict_proba(X)
        return out


def baseline_training_range(
    window_start: pd.Timestamp, horizon_bars: int, sessions: int
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The `sessions` sessions before the window, ending one label horizon before it."""
    end = window_start - pd.Timedelta(minutes=horizon_bars + 1)
    days = sessions_between(
        end.normalize().tz_localize(None) - pd.Timedelta(days=sessions * 3),
        end.normalize().tz_localize(None),
    )
    start = pd.Timestamp(days[-sessions] if len(days) >= sessions else days[0]).tz_localize("UTC")
    return start, end


def fit_baselines(
    models: LoadedModels,
    tickers: list[str],
    window: tuple[pd.Timestamp, pd.Timestamp],
    settings: Settings,
    seed: int = 0,
) -> dict[str, ThreeClass]:
    meta = models.metadata
    horizon = int(meta["label_params"]["horizon_bars"])
    start, end = baseline_training_range(window[0], horizon, settings.baseline_train_sessions)
    raw = load_raw(
        tickers,
        start,
        end + pd.Timedelta(minutes=horizon + 1),
        warmup_bars=required_history_bars(meta),
    )
    s = build_samples(raw, meta, start=start, end=end)
    keep = s.exit_ts < window[0] if len(s.exit_ts) else np.ones(len(s), bool)
    X, y = s.X[keep][:, -1, :], s.y[keep]
    if len(y) > 40_000:  # plenty for these models; keeps the job quick
        pick = np.random.default_rng(seed).choice(len(y), 40_000, replace=False)
        X, y = X[pick], y[pick]
    return {
        "majority": ThreeClass(DummyClassifier(strategy="most_frequent").fit(X, y)),
        "logistic": ThreeClass(LogisticRegression(max_iter=500, class_weight="balanced").fit(X, y)),
        "gbt": ThreeClass(
            HistGradientBoostingClassifier(
                max_iter=150, learning_rate=0.1, class_weight="balanced", random_state=seed
            ).fit(X, y)
        ),
    }
