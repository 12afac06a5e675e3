"""Scoring a stored range of bars in batches through the serving path (the backtest): one
feature state advanced through the range, each version's windows, both TFLite models and the
dual-model rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from config.settings import Settings
from ml.features.feature_engineering import (
    BAR,
    FeatureParams,
)
from ml.features.labels import session_codes
from ml.features.live_features import LiveFeatures
from ml.models.model_loader import LoadedModels
from ml.serving.generate_recommendation import (
    dual_actions,
)
from ml.serving.live_scoring import feature_context, version_windows


def features_over(
    tickers: Sequence[str],
    params: FeatureParams,
    bars: pd.DataFrame,
    on_day: Callable[[int, int], None] | None = None,
) -> LiveFeatures:
    """A feature state advanced through every bar of `bars` (ticker, ts, OHLCV; every row kept,
    so windows can end at any of them), one New York day at a time, with the news and macro the
    bars join; `on_day(done, days)` after each day."""
    counts = bars.groupby("ticker").size()
    features = LiveFeatures(tickers, params, capacity=int(counts.max()) if len(counts) else 1)
    if bars.empty:
        return features
    feature_context(features, tickers, bars["ts"].min(), bars["ts"].max() + BAR)
    ordered = bars.sort_values(["ts", "ticker"], kind="stable", ignore_index=True)
    days = session_codes(pd.DatetimeIndex(ordered["ts"]))
    edges = np.r_[0, np.flatnonzero(np.diff(days)) + 1, len(days)]
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        features.update(ordered.iloc[lo:hi])
        if on_day is not None:
            on_day(i + 1, len(edges) - 1)
    return features


@dataclass(frozen=True)
class RangeScores:
    """Both models' class probabilities and the dual-model action of each scored bar."""

    keys: pd.DataFrame  # ticker, ts, close of each window's last bar
    lstm: np.ndarray  # [n, 3]
    transformer: np.ndarray  # [n, 3]
    action: np.ndarray  # [n]: +1 BUY, -1 SELL, 0 HOLD


def score_range(
    models: LoadedModels,
    features: LiveFeatures,
    targets: Mapping[str, np.ndarray],
    settings: Settings,
    *,
    chunk: int = 8192,
    on_chunk: Callable[[int, int], None] | None = None,
) -> RangeScores:
    """Score the bars `targets` (ticker -> bar times, UTC ns) as serving does: the version's
    windows, both TFLite models in padded batches, the dual-model rule (`dual_actions`).
    Windows are built `chunk` bars at a time, in time order; `on_chunk(done, total)` after
    each. Bars without a complete window are left out."""
    sizes = [len(v) for v in targets.values()]
    pairs = pd.DataFrame(
        {
            "ticker": np.repeat(np.asarray(list(targets), dtype=object), sizes),
            "ns": np.concatenate([np.asarray(v, dtype=np.int64) for v in targets.values()])
            if sizes
            else np.array([], dtype=np.int64),
        }
    ).sort_values("ns", kind="stable", ignore_index=True)
    parts: list[tuple[pd.DataFrame, np.ndarray, np.ndarray]] = []
    # the two networks run side by side (LiteRT's invoke releases the GIL): two cores, two models
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="transformer") as other:
        for lo in range(0, len(pairs), chunk):
            part = pairs.iloc[lo : lo + chunk]
            wanted = {str(t): g["ns"].to_numpy() for t, g in part.groupby("ticker", sort=False)}
            keys, X = version_windows(models, features, wanted)
            if len(keys):
                transformer = other.submit(models.transformer.predict, X)
                parts.append((keys, models.lstm.predict(X), transformer.result()))
            if on_chunk is not None:
                on_chunk(min(lo + chunk, len(pairs)), len(pairs))
    if not parts:
        empty = np.zeros((0, 3), dtype=np.float32)
        keys = pd.DataFrame({"ticker": [], "ts": pd.DatetimeIndex([], tz="UTC"), "close": []})
        return RangeScores(keys, empty, empty, np.zeros(0, dtype=int))
    p_lstm = np.concatenate([p[1] for p in parts])
    p_tf = np.concatenate([p[2] for p in parts])
    return RangeScores(
        keys=pd.concat([p[0] for p in parts], ignore_index=True),
        lstm=p_lstm,
        transformer=p_tf,
        action=dual_actions(p_lstm, p_tf, settings.buy_threshold, settings.sell_threshold),
    )
