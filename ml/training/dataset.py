"""From the database to model inputs: raw data, features + labels, windows, the chronological split.

- `load_raw(tickers, start, end)`: bars, news and macro releases (`RawData`).
- `build_samples(raw, metadata)`: windows X [n, W, F] scaled with the model's scaler, labels,
  tickers, bar times and realised forward returns; works from a saved model's metadata alone.
- `chronological_split(...)`: train rows strictly before validation rows, with a purge and an
  embargo of at least the label horizon between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.timeutil import utc
from db.bars import read_bars, read_last_bars
from db.context import macro_for_features, news_for_features
from ml.features.feature_engineering import (
    MACRO_SERIES,
    FeatureParams,
    check_feature_list,
    create_features,
    ready_mask,
)
from ml.features.labels import LabelParams, session_codes, triple_barrier_labels
from ml.features.windows import FeatureScaler, gather_windows, window_ready
from ml.models.metadata import ModelMetadata


class DatasetError(ValueError):
    """Not enough (or unusable) data to build samples."""


@dataclass
class RawData:
    """Bars (ticker, ts, OHLCV), news (ticker, available_at, sentiment), macro releases."""

    bars: pd.DataFrame
    news: pd.DataFrame | None = None
    macro: pd.DataFrame | None = None


@dataclass
class Samples:
    """Model inputs and targets; arrays are aligned on the first axis."""

    X: np.ndarray  # [n, W, F] float32, scaled
    y: np.ndarray  # [n] int, index into CLASSES
    ticker: np.ndarray  # [n] str
    bar_ts: pd.DatetimeIndex  # [n] UTC time of the window's last bar
    fwd_return: np.ndarray  # [n] log return from that bar's close to the label's exit
    exit_ts: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([], tz="UTC"))

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Prepared:
    """Features and labels of every bar, plus which rows end a complete window."""

    frame: pd.DataFrame  # ticker, ts, features..., label, fwd_return, exit_ts
    window_ok: np.ndarray
    features: list[str]
    window: int

    def labelled(self) -> np.ndarray:
        """Rows usable as samples: a complete window and a defined label."""
        return np.asarray(self.window_ok & self.frame["label"].notna().to_numpy())


# --------------------------------------------------------------------------- database reads
def load_raw(
    tickers: Sequence[str],
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    *,
    warmup_bars: int = 0,
    params: FeatureParams | None = None,
) -> RawData:
    """Bars with start <= ts < end (plus `warmup_bars` earlier bars per ticker), and the news
    and macro releases their features need."""
    start, end = utc(start), utc(end)
    bars = read_bars(tickers, start, end)
    if warmup_bars > 0:
        before = read_last_bars(tickers, warmup_bars, start)
        bars = pd.concat([before, bars], ignore_index=True)
    return _with_context(bars, list(tickers), end, params)


def _with_context(
    bars: pd.DataFrame, tickers: list[str], end: pd.Timestamp, params: FeatureParams | None
) -> RawData:
    params = params or FeatureParams.from_settings()
    bars = bars.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)
    first = bars["ts"].min() if len(bars) else end
    news_from = first - pd.Timedelta(minutes=params.news_lookback_min)
    news = news_for_features(tickers, news_from, end)
    macro = macro_for_features(MACRO_SERIES, first, end)
    return RawData(bars, news, macro)


# --------------------------------------------------------------------------- samples
def prepare(
    raw: RawData,
    features: Sequence[str],
    window: int,
    label_params: LabelParams,
    feature_params: FeatureParams,
) -> Prepared:
    """Features and triple-barrier labels of every bar, aligned row by row."""
    if raw.bars is None or raw.bars.empty:
        raise DatasetError("no bars in the requested range")
    feats = create_features(raw.bars, raw.news, raw.macro, params=feature_params)
    labels = triple_barrier_labels(raw.bars, label_params)
    same_rows = len(labels) == len(feats) and pd.DatetimeIndex(labels["ts"]).equals(
        pd.DatetimeIndex(feats["ts"])
    )
    if not same_rows:
        labels = feats[["ticker", "ts"]].merge(labels, on=["ticker", "ts"], how="left")
    labels = labels.reset_index(drop=True)
    frame = feats.assign(
        label=labels["label"], fwd_return=labels["fwd_return"], exit_ts=labels["exit_ts"]
    )
    ok = window_ready(ready_mask(feats), feats["ticker"].to_numpy(), window)
    return Prepared(frame, ok, list(features), window)


def samples_from(prepared: Prepared, scaler: FeatureScaler, rows: np.ndarray) -> Samples:
    """Samples ending at `rows` (indices into prepared.frame, each a labelled row)."""
    frame = prepared.frame
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    scaled = scaler.transform(frame[prepared.features])
    return Samples(
        X=gather_windows(scaled, rows, prepared.window),
        y=frame["label"].to_numpy()[rows].astype(np.int64),
        ticker=frame["ticker"].to_numpy()[rows].astype(str),
        bar_ts=pd.DatetimeIndex(frame["ts"].iloc[rows]),
        fwd_return=frame["fwd_return"].to_numpy()[rows].astype(float),
        exit_ts=pd.DatetimeIndex(frame["exit_ts"].iloc[rows]),
    )


def build_samples(
    raw: RawData,
    metadata: ModelMetadata,
    *,
    scaler: FeatureScaler | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> Samples:
    """Labelled, scaled windows of `raw`, as a saved model with `metadata` sees them.

    Parameters
    ----------
    raw : bars and context; bars before `start` serve as indicator warm-up and window history.
    metadata : the version's features, window length, label and feature parameters and scaler
        (unless `scaler` is given).
    start, end : keep samples whose last bar has start <= bar_ts <= end.

    Returns
    -------
    Samples in (ticker, time) order. Labels use up to horizon_bars future bars of `raw`.
    """
    features = check_feature_list(metadata.features)
    scaler = scaler or metadata.feature_scaler
    if scaler.features != features:
        raise DatasetError("the scaler's feature list differs from the model's")
    prepared = prepare(
        raw, features, metadata.window_length, metadata.labels, metadata.feature_params
    )
    keep = prepared.labelled()
    ts = prepared.frame["ts"]
    if start is not None:
        keep &= (ts >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        keep &= (ts <= pd.Timestamp(end)).to_numpy()
    return samples_from(prepared, scaler, np.flatnonzero(keep))


# --------------------------------------------------------------------------- split
@dataclass
class Split:
    train_rows: np.ndarray
    val_rows: np.ndarray
    gap: pd.Timedelta  # from the last training bar to the first validation bar


def chronological_split(prepared: Prepared, val_fraction: float, horizon_bars: int) -> Split:
    """Train before validation, never shuffled. Validation is the last `val_fraction` of the
    sessions (of the time span when there is one session); training rows whose label exits at
    or after validation starts are purged, and those within `horizon_bars` minutes before it are
    embargoed, so the gap between the two is at least the label horizon."""
    rows = np.flatnonzero(prepared.labelled())
    if len(rows) == 0:
        raise DatasetError("no labelled windows: too little history for window and labels")
    ts = pd.DatetimeIndex(prepared.frame["ts"].iloc[rows])
    sessions = session_codes(ts)
    unique = np.unique(sessions)
    if len(unique) >= 2:
        n_val = min(len(unique) - 1, max(1, round(val_fraction * len(unique))))
        is_val = sessions >= unique[-n_val]
    else:
        cut = ts.min() + (ts.max() - ts.min()) * (1 - val_fraction)
        is_val = np.asarray(ts >= cut)
    val_start = ts[is_val].min()
    embargo = pd.Timedelta(minutes=horizon_bars)
    exits = pd.DatetimeIndex(prepared.frame["exit_ts"].iloc[rows])
    is_train = ~is_val & np.asarray(exits < val_start) & np.asarray(ts < val_start - embargo)
    if not is_train.any():
        raise DatasetError("no training windows left before the validation range")
    gap = val_start - ts[is_train].max()
    return Split(rows[is_train], rows[is_val], gap)
