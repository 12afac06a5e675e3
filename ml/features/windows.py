"""The scaling step and the model input windows (the last W bars of one ticker).

`FeatureScaler` is fitted on the training range only and travels in the model's metadata;
serving applies the saved parameters, never refitting them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

CLIP = 5.0


class FeatureScaler:
    """Standardisation `(x - mean) / std`, clipped to +-clip; a missing value becomes 0 (the mean).

    A feature constant over the training range gets a floor on its std (1e-3 of its magnitude),
    so later changes map to large but clipped values instead of infinities.
    """

    def __init__(
        self, features: Sequence[str], mean: Sequence[float], std: Sequence[float], clip: float
    ) -> None:
        if not (len(features) == len(mean) == len(std)):
            raise ValueError("scaler: features, mean and std differ in length")
        self.features = list(features)
        self.mean = np.asarray(mean, dtype=float)
        self.std = np.asarray(std, dtype=float)
        self.clip = float(clip)

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: Sequence[str], clip: float = CLIP) -> FeatureScaler:
        """Fit on `frame[features]` (rows of the training range only)."""
        values = frame[list(features)].to_numpy(dtype=float)
        finite = np.isfinite(values)
        count = finite.sum(axis=0)
        filled = np.where(finite, values, 0.0)
        mean = np.divide(filled.sum(axis=0), count, out=np.zeros(len(features)), where=count > 0)
        dev = np.where(finite, values - mean, 0.0)
        var = np.divide((dev**2).sum(axis=0), count, out=np.zeros(len(features)), where=count > 0)
        floor = np.maximum(1e-3 * np.abs(mean), 1e-8)
        return cls(features, mean, np.maximum(np.sqrt(var), floor), clip)

    def transform(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Scaled float32 array [n, F] in `self.features` order."""
        if isinstance(frame, pd.DataFrame):
            missing = [f for f in self.features if f not in frame.columns]
            if missing:
                raise KeyError(f"scaler: input lacks feature column(s) {missing}")
            frame = frame[self.features].to_numpy(dtype=float)
        values = np.asarray(frame, dtype=float)
        if values.shape[-1] != len(self.features):
            raise ValueError(f"scaler: {values.shape[-1]} columns, expected {len(self.features)}")
        z = (values - self.mean) / self.std
        z = np.where(np.isfinite(z), z, 0.0)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "standard",
            "features": self.features,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureScaler:
        if data.get("kind", "standard") != "standard":
            raise ValueError(f"unknown scaler kind {data.get('kind')!r}")
        return cls(data["features"], data["mean"], data["std"], data.get("clip", CLIP))


def window_ready(ready: np.ndarray, groups: np.ndarray, window: int) -> np.ndarray:
    """True at row i when rows i-window+1..i are all ready and of the same group (ticker)."""
    n = len(ready)
    ok = np.zeros(n, dtype=bool)
    if n < window:
        return ok
    bad = np.concatenate([[0], np.cumsum(~ready)])
    start_group = np.r_[True, groups[1:] != groups[:-1]]
    group_start = np.maximum.accumulate(np.where(start_group, np.arange(n), 0))
    i = np.arange(window - 1, n)
    clean = bad[i + 1] - bad[i + 1 - window] == 0
    ok[window - 1 :] = clean & (i - window + 1 >= group_start[window - 1 :])
    return ok


def gather_windows(
    scaled: np.ndarray, ends: np.ndarray, window: int, dtype: Any = np.float32
) -> np.ndarray:
    """Windows [len(ends), window, F] of `scaled` rows ending at each of `ends` (inclusive), as
    `dtype` (the models' float32; the live path gathers raw float64 rows, then scales them)."""
    if len(ends) == 0:
        return np.zeros((0, window, scaled.shape[1]), dtype=dtype)
    view = sliding_window_view(scaled, window, axis=0)  # [n-window+1, F, window]
    return np.ascontiguousarray(view[ends - window + 1].transpose(0, 2, 1), dtype=dtype)
