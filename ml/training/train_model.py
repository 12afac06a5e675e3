"""Nightly training: `python -m ml.training.train_model [--quick] [--epochs N] [--end DATE]`.

Loads bars, news and macro from the database, builds causal features and triple-barrier labels,
splits chronologically (validation = the latest sessions, purge + embargo >= label horizon),
trains an LSTM and a Transformer (class weights, early stopping, LR reduction, checkpoints,
fixed seeds), converts both to fixed-batch .tflite files checked against Keras, and writes a
model version folder `models_dir/<UTC timestamp>/` with metadata.json written last. The version
is not promoted; `ml.lifecycle.validate_model` decides that. One run at a time (the training lock).

Exit codes: 0 trained, 1 failed (message on stderr), 75 another training holds the lock.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from config.cli import job_parser, run_job
from config.settings import Settings, get_settings
from core.timeutil import iso, utc, utc_now
from ml.features.drift import reference_stats
from ml.features.feature_engineering import FEATURE_COLUMNS, FeatureParams
from ml.features.labels import CLASSES
from ml.features.windows import FeatureScaler
from ml.models.hyperparameters import HYPERPARAMETERS
from ml.models.metadata import (
    MODEL_NAMES,
    ModelMetadata,
    ScalerParams,
    TrainingMetrics,
    TrainingRun,
)
from ml.models.metrics import ClassMetrics, classification_metrics
from ml.training.baselines import fit_baselines, newest_bar, score_baselines
from ml.training.dataset import (
    DatasetError,
    RawData,
    Samples,
    chronological_split,
    load_raw,
    prepare,
)
from ml.training.dataset import samples_from as _samples_from
from ml.training.fitting import TrainConfig, fit_model
from ml.training.progress import PROGRESS_FILE, Progress


def _subsample(rows: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or len(rows) <= cap:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, cap, replace=False))


# --------------------------------------------------------------------------- the run
@dataclass
class TrainingData:
    train: Samples
    val: Samples
    scaler: FeatureScaler
    reference: dict[str, Any]
    gap: pd.Timedelta


def build_training_data(raw: RawData, cfg: TrainConfig, progress: Progress) -> TrainingData:
    """Features, labels, the purged chronological split, the scaler (training range only)."""
    progress.update("features", f"{len(raw.bars)} bars of {raw.bars['ticker'].nunique()} tickers")
    features = list(FEATURE_COLUMNS)
    prepared = prepare(raw, features, cfg.window, cfg.label_params, cfg.feature_params)
    split = chronological_split(prepared, cfg.val_fraction, cfg.label_params.horizon_bars)
    frame = prepared.frame
    ts = frame["ts"]
    first, last = ts.iloc[split.train_rows].min(), ts.iloc[split.train_rows].max()
    in_train_range = ((ts >= first) & (ts <= last)).to_numpy()
    scaler = FeatureScaler.fit(frame.loc[in_train_range], features)
    reference = reference_stats(frame.loc[in_train_range], features, seed=cfg.seed)
    train_rows = _subsample(split.train_rows, cfg.max_train_windows, cfg.seed)
    val_rows = _subsample(split.val_rows, cfg.max_val_windows, cfg.seed)
    train, val = (
        _samples_from(prepared, scaler, train_rows),
        _samples_from(prepared, scaler, val_rows),
    )
    progress.update(
        "split",
        f"train {len(train)} windows ({first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M}), "
        f"validation {len(val)} windows from {val.bar_ts.min():%Y-%m-%d %H:%M}, gap {split.gap}",
    )
    return TrainingData(train, val, scaler, reference, split.gap)


def new_version_dir(models_dir: Path) -> Path:
    """A new folder named by the UTC time (YYYYMMDDTHHMMSSZ), unique."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    while True:
        folder = models_dir / f"{now:%Y%m%dT%H%M%SZ}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            now += pd.Timedelta(seconds=1)


@dataclass(frozen=True)
class _Trained:
    """Both networks after training, per model name: the epochs run, the fixed-batch .tflite
    file, the Keras probabilities on the validation windows and the TFLite parity."""

    epochs_run: dict[str, int]
    files: dict[str, bytes]
    probs: dict[str, np.ndarray]
    parity: dict[str, float]


def _train_and_convert(data: TrainingData, cfg: TrainConfig, progress: Progress) -> _Trained:
    """Fit the LSTM and the Transformer, convert each to a fixed-batch .tflite file and check
    it against Keras on the validation windows."""
    from ml.models.architectures import BUILDERS
    from ml.models.tflite_export import check_parity, convert_fixed_batch

    models, epochs_run, files, probs, parity = {}, {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="stockpulse-train-") as tmp:
        for name in MODEL_NAMES:
            models[name], epochs_run[name] = fit_model(
                name, data.train, data.val, cfg, progress, Path(tmp)
            )
    for name in MODEL_NAMES:
        progress.update("converting", f"{name} -> TFLite (batch {cfg.serving_batch})", model=name)
        probs[name] = models[name].predict(data.val.X, batch_size=1024, verbose=0)
        files[name] = convert_fixed_batch(models[name], BUILDERS[name], cfg.serving_batch)
        parity[name] = check_parity(name, files[name], probs[name], data.val.X)
    return _Trained(epochs_run, files, probs, parity)


def train_from_raw(
    raw: RawData,
    settings: Settings | None = None,
    *,
    quick: bool = False,
    epochs: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Train both models on `raw` and write a version folder; returns the folder."""
    settings = settings or get_settings()
    progress = progress or Progress(settings.data_dir / PROGRESS_FILE)
    cfg = TrainConfig.from_settings(settings, quick, epochs)
    started = time.monotonic()
    data = build_training_data(raw, cfg, progress)
    trained = _train_and_convert(data, cfg, progress)
    progress.update("baselines", "majority class, logistic regression and boosted trees")
    fitted = fit_baselines(newest_bar(data.train.X), data.train.y, seed=cfg.seed)
    baselines = score_baselines(fitted, newest_bar(data.val.X), data.val.y)
    folder = new_version_dir(settings.models_dir)
    checksums = {}
    for name, content in trained.files.items():
        (folder / f"{name}.tflite").write_bytes(content)
        checksums[f"{name}.tflite"] = hashlib.sha256(content).hexdigest()
    metadata = _trained_metadata(
        folder.name, raw, data, cfg, trained, baselines, checksums, started
    )
    metadata.write(folder / "metadata.json")
    progress.update("done", f"version {folder.name} in {metadata.training.seconds} s")
    return folder


def _trained_metadata(
    version: str,
    raw: RawData,
    data: TrainingData,
    cfg: TrainConfig,
    trained: _Trained,
    baselines: dict[str, ClassMetrics],
    checksums: dict[str, str],
    started: float,
) -> ModelMetadata:
    """The metadata.json of a version trained on `raw` (`started`: `time.monotonic()` at the
    start of the run)."""
    metrics = {
        name: classification_metrics(data.val.y, trained.probs[name]) for name in MODEL_NAMES
    }
    return ModelMetadata(
        version=version,
        created_at=iso(utc_now()),
        features=list(FEATURE_COLUMNS),
        scaler=ScalerParams(**data.scaler.to_dict()),
        window_length=cfg.window,
        classes=list(CLASSES),
        label_params=cfg.label_params,
        feature_params=cfg.feature_params,
        tickers=sorted({str(t) for t in data.train.ticker} | {str(t) for t in data.val.ticker}),
        train_range=(iso(data.train.bar_ts.min()), iso(data.train.bar_ts.max())),
        val_range=(iso(data.val.bar_ts.min()), iso(data.val.bar_ts.max())),
        purge_gap_minutes=data.gap / pd.Timedelta(minutes=1),
        tflite_batch=cfg.serving_batch,
        reference_stats=data.reference,
        reference_confidence={name: float(m.mean_confidence or 0.0) for name, m in metrics.items()},
        metrics=TrainingMetrics(models=metrics, baselines=baselines),
        files=checksums,
        training=TrainingRun(
            quick=cfg.quick,
            config=asdict(cfg),
            hyperparameters=HYPERPARAMETERS,
            epochs_run=trained.epochs_run,
            seconds=round(time.monotonic() - started, 1),
            n_train=len(data.train),
            n_val=len(data.val),
            tflite_parity_max_abs_diff=trained.parity,
        ),
        sentiment_models=sentiment_models_of(raw),
    )


def sentiment_models_of(raw: RawData) -> list[str]:
    """The sentiment models that scored the training news (serving with another one changes
    what the news features mean; the pages and the drift check say so)."""
    if raw.news is None or "sentiment_model" not in raw.news.columns:
        return []
    return sorted(str(m) for m in raw.news["sentiment_model"].dropna().unique())


def train(
    settings: Settings | None = None,
    *,
    end: pd.Timestamp | str | None = None,
    quick: bool = False,
    epochs: int | None = None,
    progress: Progress | None = None,
    take_lock: bool = True,
) -> Path:
    """Train both models on the database's recent bars and write a (not promoted) version.

    Parameters
    ----------
    settings : default `get_settings()`.
    end : train on bars before this time (default: now); history reaches back
        `settings.train_lookback_days`.
    quick : a short run (few epochs, fewer windows) for demos.
    epochs : cap on epochs per model (default: settings.train_epochs).
    progress : where progress goes (default: stdout and data_dir/training_progress.json).
    take_lock : False when the caller already holds `db.ops.training_lock()`.

    Returns
    -------
    The version folder. Raises `core.locks.LockBusyError` when another run holds the lock.
    """
    from contextlib import nullcontext

    from db.ops import job_run, training_lock

    settings = settings or get_settings()
    progress = progress or Progress(settings.data_dir / PROGRESS_FILE)
    end_ts = utc_now() if end is None else utc(end)
    lock = training_lock(settings.lock_path) if take_lock else nullcontext()
    with lock, job_run("train_model") as run:
        start = end_ts - pd.Timedelta(days=settings.train_lookback_days)
        progress.update("loading", f"bars of {len(settings.universe)} tickers {start:%Y-%m-%d}..")
        try:
            params = FeatureParams.from_settings(settings)
            raw = load_raw(settings.universe, start, end_ts, params=params)
            folder = train_from_raw(raw, settings, quick=quick, epochs=epochs, progress=progress)
        except Exception as exc:
            progress.update("failed", f"{type(exc).__name__}: {exc}")
            raise
        run.note(f"version {folder.name}")
        return folder


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(
        "ml.training.train_model",
        "Train the LSTM and the Transformer on the database's bars and write a model version "
        "folder (not promoted; ml.lifecycle.validate_model decides that).",
    )
    parser.add_argument("--quick", action="store_true", help="short run for demos (~minutes)")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs per model")
    parser.add_argument("--end", default=None, help="train on bars before this date/time (UTC)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return run_job(
            "ml.training.train_model",
            lambda: train(end=args.end, quick=args.quick, epochs=args.epochs),
            busy="try again when it has finished",
        )
    except (DatasetError, ValueError) as exc:
        print(f"training failed: {get_settings().redact(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
