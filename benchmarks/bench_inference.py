"""inference_20 and serving_rss_mb: both models for 20 tickers through the LiteRT interpreters
(the serving path) vs Keras `model.predict` on the same inputs, and the memory of a process that
holds both served models vs one holding the Keras models."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import result

WINDOW, TICKERS, REPEATS = 32, 20, 200


def _build(folder: Path) -> int:
    from ml.features.feature_engineering import FEATURE_COLUMNS
    from ml.models.architectures import BUILDERS
    from ml.models.tflite_export import convert_fixed_batch

    n_features = len(FEATURE_COLUMNS)
    _BUILT[folder] = []
    for name, builder in BUILDERS.items():
        model = builder(WINDOW, n_features)
        _BUILT[folder].append(model)
        (folder / f"{name}.tflite").write_bytes(convert_fixed_batch(model, builder, TICKERS))
    return n_features


def _keras_models(folder: Path, n_features: int) -> list[Any]:
    """Keras models with the weights the .tflite files were converted from."""
    return _BUILT[folder]


_BUILT: dict[Path, list[Any]] = {}


def _median_ms(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


RSS_SCRIPT = """
import json, sys, psutil
from pathlib import Path
folder = Path(sys.argv[1])
before = psutil.Process().memory_info().rss
if sys.argv[2] == "tflite":
    from ml.models.predict import TFLiteModel
    models = [TFLiteModel(folder / f"{n}.tflite") for n in ("lstm", "transformer")]
else:
    from ml.models.architectures import BUILDERS
    models = [b(int(sys.argv[3]), int(sys.argv[4])) for b in BUILDERS.values()]
print(json.dumps({"rss_mb": psutil.Process().memory_info().rss / 2**20}))
"""


def _rss_mb(folder: Path, kind: str, n_features: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(folder), kind, str(WINDOW), str(n_features)],
        check=True,
        capture_output=True,
        text=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": "."},
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["rss_mb"])


def run() -> list[dict[str, Any]]:
    from ml.models.predict import TFLiteModel

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_features = _build(folder)
        X = np.random.default_rng(0).normal(size=(TICKERS, WINDOW, n_features)).astype("float32")
        lite = [TFLiteModel(folder / f"{n}.tflite") for n in ("lstm", "transformer")]
        heavy = _keras_models(folder, n_features)
        lite_ms = _median_ms(lambda: [m.predict(X) for m in lite], REPEATS)
        keras_ms = _median_ms(lambda: [m.predict(X, verbose=0) for m in heavy], 30)
        diff = max(
            float(np.abs(a.predict(X) - b.predict(X, verbose=0)).max())
            for a, b in zip(lite, heavy, strict=True)
        )
        rss_lite = _rss_mb(folder, "tflite", n_features)
        rss_keras = _rss_mb(folder, "keras", n_features)
    cond = (
        f"LSTM + Transformer, {TICKERS} windows of {WINDOW}x{n_features}, median of "
        f"{REPEATS} calls; max |LiteRT - Keras| = {diff:.1e}"
    )
    print(
        f"inference_20: LiteRT {lite_ms:.2f} ms vs Keras predict {keras_ms:.1f} ms "
        f"({keras_ms / lite_ms:.0f}x); RSS {rss_lite:.0f} MB vs {rss_keras:.0f} MB"
    )
    return [
        result(
            "inference_20",
            lite_ms,
            "ms",
            keras_ms,
            cond + "; baseline: keras predict",
            higher_is_better=False,
        ),
        result(
            "serving_rss_mb",
            rss_lite,
            "MB",
            rss_keras,
            "RSS of a process holding both models via LiteRT; baseline: the Keras models "
            "loaded with TensorFlow",
            higher_is_better=False,
        ),
    ]
