"""Training speed.

- train_epoch_lstm, train_epoch_transformer: seconds per epoch on the demo-size training set
  (settings.train_max_windows windows of 32 bars x all features, batch settings.train_batch_size;
  median of epochs 2..3, the first one includes graph tracing). Baseline: the same epoch at
  Keras' default batch size of 32, timed on a tenth of the windows and scaled up.
- train_demo_full, train_demo_quick: wall time of `python -m ml.training.train_model` and of
  `--quick` on a database holding the demo's data (20 tickers x 25 simulated sessions of
  1-minute bars, their news and the simulated macro series), process start to version folder.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_features import simulated_inputs
from benchmarks.common import bench_database, result

EPOCHS = 3


def training_windows() -> tuple[np.ndarray, np.ndarray]:
    from config.settings import get_settings
    from ml.features.feature_engineering import FEATURE_COLUMNS, FeatureParams
    from ml.features.labels import LabelParams
    from ml.features.windows import FeatureScaler
    from ml.training.dataset import RawData, prepare, samples_from

    settings = get_settings()
    bars, news = simulated_inputs()
    prepared = prepare(
        RawData(bars, news),
        list(FEATURE_COLUMNS),
        settings.window_length,
        LabelParams.from_settings(settings),
        FeatureParams.from_settings(settings),
    )
    rows = np.flatnonzero(prepared.labelled())
    rows = np.sort(np.random.default_rng(0).choice(rows, settings.train_max_windows, replace=False))
    scaler = FeatureScaler.fit(prepared.frame, list(FEATURE_COLUMNS))
    samples = samples_from(prepared, scaler, rows)
    return samples.X, samples.y


def epoch_seconds(name: str, X: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> list[float]:
    import keras

    from ml.models.architectures import BUILDERS, LEARNING_RATES

    keras.utils.set_random_seed(0)
    model = BUILDERS[name](X.shape[1], X.shape[2])
    model.compile(keras.optimizers.Adam(LEARNING_RATES[name]), "sparse_categorical_crossentropy")
    times: list[float] = []

    class Clock(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.perf_counter() - self.t0)

    model.fit(X, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[Clock()])
    return times


def epoch_results() -> list[dict[str, Any]]:
    from config.settings import get_settings

    batch = get_settings().train_batch_size
    X, y = training_windows()
    out = []
    for name in ("lstm", "transformer"):
        ours = statistics.median(epoch_seconds(name, X, y, batch, EPOCHS)[1:])
        tenth = len(X) // 10
        naive = epoch_seconds(name, X[:tenth], y[:tenth], 32, 2)[1] * len(X) / tenth
        print(f"train_epoch_{name}: {ours:.1f} s per epoch (batch 32: {naive:.1f} s)")
        cond = (
            f"{len(X):,} windows of {X.shape[1]}x{X.shape[2]}, batch {batch}, median of epochs "
            f"2..{EPOCHS}; baseline: Keras default batch 32 (a tenth of the windows, scaled)"
        )
        out.append(result(f"train_epoch_{name}", ours, "s", naive, cond, higher_is_better=False))
    return out


def fill_demo_database() -> pd.Timestamp:
    """Bars, news and macro of the demo (20 tickers x 25 sessions) in the bench database."""
    from db.writes import write_to_db
    from workers.macro_ingestor import ingest_all
    from workers.macro_sources import SimulatedMacroSource

    bars, news = simulated_inputs()
    write_to_db(bars.assign(source="simulated"), table="bars_1m")
    articles = news.assign(
        article_key=[f"sim-{i}" for i in range(len(news))],
        source="simulated",
        title=news["headline"],
        available_at=news["published_at"],
    )[["article_key", "ticker", "published_at", "available_at", "source", "title", "sentiment"]]
    write_to_db(articles, table="news_articles")
    end = bars["ts"].max() + pd.Timedelta(minutes=1)
    ingest_all(SimulatedMacroSource(), start=(end - pd.Timedelta(days=500)).date(), now=end)
    return end


def cli_seconds(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ml.training.train_model", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"ml.training.train_model {args} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout.strip().splitlines()[-1]


def demo_results() -> list[dict[str, Any]]:
    out = []
    with bench_database("stockpulse_bench_train") as url, tempfile.TemporaryDirectory() as tmp:
        end = fill_demo_database()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "MODELS_DIR": str(Path(tmp) / "models"),
            "DATA_DIR": str(Path(tmp) / "data"),
            "PYTHONPATH": os.getcwd(),
        }
        for label, extra in (("full", []), ("quick", ["--quick"])):
            seconds, folder = cli_seconds(["--end", end.isoformat(), *extra], env)
            meta = json.loads((Path(folder) / "metadata.json").read_text())
            scores = ", ".join(
                f"{m} macro-F1 {meta['metrics'][m]['macro_f1']:.3f} "
                f"({meta['training']['epochs_run'][m]} epochs)"
                for m in ("lstm", "transformer")
            )
            print(
                f"train_demo_{label}: {seconds:.0f} s, {meta['training']['n_train']} training "
                f"windows, {scores}, logistic regression "
                f"{meta['metrics']['baselines']['logreg_macro_f1']:.3f}"
            )
            out.append(
                result(
                    f"train_demo_{label}",
                    seconds,
                    "s",
                    None,
                    " ".join(["python -m ml.training.train_model", *extra]) + " on 20 tickers x 25 "
                    "simulated sessions of 1-minute bars with news and macro; both models, "
                    "TFLite conversion and checks, metadata; whole process",
                    higher_is_better=False,
                )
            )
    return out


def run() -> list[dict[str, Any]]:
    return epoch_results() + demo_results()
