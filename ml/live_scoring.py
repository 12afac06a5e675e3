"""Score every new bar once: both models, dual-model recommendation, stored in `signals`.

`score_new_bars(models)` finds, per ticker, the final bars newer than the last one scored by the
serving version (at most `max_backlog` per ticker; on first sight only the newest), builds their
input windows from the bounded recent history, runs both TFLite models on all of them in one
batch, and writes the recommendations. A PostgreSQL advisory lock makes concurrent scorers (many
app sessions, several processes, the drift job) take turns, and the `signals` primary key makes a
bar scored at most once per version, however many callers there are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings
from db.database_manager import connect, write_to_db
from db.signals import last_scored, try_scoring_lock
from ml.dataset import RawData, load_recent
from ml.feature_engineering import (
    FeatureParams,
    check_feature_list,
    clean_bars,
    create_features,
    ready_mask,
)
from ml.generate_recommendation import Recommendation, get_trade_recommendation
from ml.model_loader import LoadedModels
from ml.predict import to_prediction
from ml.windows import FeatureScaler, gather_windows, window_ready

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    recommendations: list[Recommendation] = field(default_factory=list)
    invocations: int = 0
    busy: bool = False  # another scorer held the lock


def windows_at(
    raw: RawData, metadata: dict[str, Any], targets: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray]:
    """Scaled windows ending at each (ticker, ts) of `targets` that has a complete window.

    Returns the targets kept (ticker, ts, close) and X [n, W, F]. Only bars up to each target
    enter its window."""
    features = check_feature_list(metadata)
    window = int(metadata["window_length"])
    scaler = FeatureScaler.from_dict(metadata["scaler"])
    params = FeatureParams.from_dict(metadata.get("feature_params"))
    bars = clean_bars(raw.bars).reset_index(drop=True)
    feats = create_features(bars, raw.news, raw.macro, params=params)
    empty = np.zeros((0, window, len(features)), dtype=np.float32)
    if feats.empty:
        return targets.iloc[0:0].assign(close=[]), empty
    ok = window_ready(ready_mask(feats), feats["ticker"].to_numpy(), window)
    keyed = feats[["ticker", "ts"]].assign(row=np.arange(len(feats)), ok=ok)
    keyed = keyed.merge(bars[["ticker", "ts", "close"]], on=["ticker", "ts"], how="left")
    hit = targets[["ticker", "ts"]].merge(keyed, on=["ticker", "ts"], how="inner")
    hit = hit[hit["ok"]].sort_values(["ticker", "ts"]).reset_index(drop=True)
    if hit.empty:
        return hit[["ticker", "ts", "close"]], empty
    scaled = scaler.transform(feats[features])
    return hit[["ticker", "ts", "close"]], gather_windows(scaled, hit["row"].to_numpy(), window)


def _targets(raw: RawData, last: dict[str, pd.Timestamp], max_backlog: int) -> pd.DataFrame:
    bars = raw.bars[["ticker", "ts"]].sort_values(["ticker", "ts"])
    since = pd.to_datetime(bars["ticker"].map(last), utc=True)
    fresh = bars[since.isna() | (bars["ts"] > since)]
    first_sight = fresh["ticker"].map(lambda t: t not in last)
    per = fresh.groupby("ticker").cumcount(ascending=False)
    keep = per < np.where(first_sight, 1, max_backlog)
    return fresh[keep].reset_index(drop=True)


def score_new_bars(
    models: LoadedModels,
    *,
    settings: Settings | None = None,
    max_backlog: int = 30,
    tickers: list[str] | None = None,
) -> ScoreResult:
    """Score the bars not yet in `signals` for the serving version; see the module docstring."""
    settings = settings or get_settings()
    tickers = list(tickers or settings.universe)
    meta = models.metadata
    with connect() as conn:
        if not try_scoring_lock(conn):
            return ScoreResult(busy=True)
        last = last_scored(models.version, tickers)
        raw = load_recent(
            tickers, {**meta, "window_length": int(meta["window_length"]) + max_backlog}
        )
        if raw.bars.empty:
            return ScoreResult()
        targets = _targets(raw, last, max_backlog)
        if targets.empty:
            return ScoreResult()
        keys, X = windows_at(raw, meta, targets)
        if len(keys) == 0:
            return ScoreResult()
        before = models.invocations
        p_lstm = models.lstm.predict(X)
        p_tf = models.transformer.predict(X)
        recs = [
            get_trade_recommendation(
                to_prediction(a),
                to_prediction(b),
                ticker=str(t),
                bar_ts=ts,
                model_version=models.version,
                settings=settings,
            )
            for a, b, t, ts in zip(p_lstm, p_tf, keys["ticker"], keys["ts"], strict=True)
        ]
        rows = pd.DataFrame(
            [r.to_row(close=float(c)) for r, c in zip(recs, keys["close"], strict=True)]
        )
        write_to_db(rows, table="signals", on_conflict="nothing", conn=conn)
        return ScoreResult(recs, models.invocations - before)
