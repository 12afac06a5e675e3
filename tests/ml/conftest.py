"""Tiny real `.tflite` model versions for serving tests (built and converted with TensorFlow)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.settings import get_settings

WINDOW, FEATURES, BATCH = 8, 4, 4


def build_version(
    folder: Path,
    seed: int,
    bias: tuple[float, float, float] | None = None,
    window: int = WINDOW,
    features: int = FEATURES,
    batch: int = BATCH,
) -> Path:
    """Write a model version folder with two tiny real TFLite models and metadata."""
    import tensorflow as tf

    from ml.models.metadata import ModelMetadata
    from ml.models.registry import sha256_file

    folder.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(seed)
    for name, layer in (
        ("lstm", tf.keras.layers.LSTM(6)),
        ("transformer", tf.keras.layers.GlobalAveragePooling1D()),
    ):
        inp = tf.keras.Input(shape=(window, features), batch_size=batch)
        dense = tf.keras.layers.Dense(3, activation="softmax")
        model = tf.keras.Model(inp, dense(layer(inp)))
        if bias is not None:
            w, _ = dense.get_weights()
            dense.set_weights([w * 0.01, np.log(np.asarray(bias, dtype="float32"))])
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        (folder / f"{name}.tflite").write_bytes(conv.convert())
    ModelMetadata(
        version=folder.name,
        features=[f"f{i}" for i in range(features)],
        window_length=window,
        tflite_batch=batch,
        files={f: sha256_file(folder / f) for f in ("lstm.tflite", "transformer.tflite")},
    ).write(folder / "metadata.json")
    return folder


@pytest.fixture
def model_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing models_dir and the registry at a temporary folder."""
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MODEL_CONFIG_PATH", str(tmp_path / "model_config.json"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    # the embedded server's data folder comes from DATA_DIR: keep the URL the session exported
    assert os.environ.get("DATABASE_URL")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def tiny_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tiny versions built once per session: v1 (balanced), v2, v3 (biased to UP)."""
    root = tmp_path_factory.mktemp("tiny_models")
    build_version(root / "20260101T000000Z", seed=1)
    build_version(root / "20260102T000000Z", seed=2)
    build_version(root / "20260103T000000Z", seed=3, bias=(0.05, 0.05, 0.9))
    return root


@pytest.fixture
def tiny_versions(model_env: Path, tiny_model_cache: Path) -> Callable[[], list[str]]:
    """Copy the tiny versions into the test's models_dir; returns their names."""
    import shutil

    target = model_env / "models"
    shutil.copytree(tiny_model_cache, target)
    return lambda: sorted(p.name for p in target.iterdir())


def build_feature_version(
    folder: Path, bars: Any, seed: int = 1, window: int = 8, batch: int = 4
) -> Path:
    """A tiny real version whose metadata carries the real feature pipeline (features, scaler,
    feature and label parameters), so it can score real bars."""
    from ml.features.feature_engineering import FEATURE_COLUMNS, FeatureParams, create_features
    from ml.features.labels import LabelParams
    from ml.features.windows import FeatureScaler
    from ml.models.metadata import ScalerParams, read_metadata_file

    features = list(FEATURE_COLUMNS)
    params = FeatureParams()
    scaler = FeatureScaler.fit(create_features(bars, None, None, params=params), features)
    build_version(folder, seed=seed, window=window, features=len(features), batch=batch)
    meta = read_metadata_file(folder / "metadata.json").model_copy(
        update={
            "features": features,
            "scaler": ScalerParams.model_validate(scaler.to_dict()),
            "feature_params": params,
            "label_params": LabelParams(1.5, 1.5, 15, 30),
        }
    )
    meta.write(folder / "metadata.json")
    return folder
