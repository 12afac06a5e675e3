"""App test fixtures: one real model version trained once, a clean app environment per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.settings import get_settings
from tests.app.support import MarketFeed

TRAINING_ENV = {"TRAIN_MAX_WINDOWS": "3000", "TRAIN_EPOCHS": "1", "TRAIN_LOOKBACK_DAYS": "30"}


def clear_streamlit_caches() -> None:
    """Drop every cached value and resource (stopping the live scorer thread)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    # failing tests show the app's exception (the shipped config shows none to users)
    st.set_option("client.showErrorDetails", "full")


@pytest.fixture(scope="session")
def trained_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model version (TensorFlow training, real .tflite files) from a quick run on
    simulated bars, trained once per test session."""
    from db.database_manager import execute
    from ml.train_model import train

    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in TRAINING_ENV.items():
            mp.setenv(key, value)
        mp.setenv("MODELS_DIR", str(root / "models"))
        mp.setenv("MODEL_CONFIG_PATH", str(root / "model_config.json"))
        mp.setenv("DATA_DIR", str(root / "var"))
        get_settings.cache_clear()
        execute("TRUNCATE bars_1m, news_articles, macro_observations")
        MarketFeed(get_settings().universe, sessions=6).seed()
        folder = train(quick=True, epochs=1)
        execute("TRUNCATE bars_1m, job_runs")
    get_settings.cache_clear()
    return folder


@dataclass
class AppEnv:
    root: Path
    version: str
    models_dir: Path

    def promote(self, version: str | None = None) -> str:
        from ml.registry import promote

        version = version or self.version
        promote(version, by="cli", reason="test fixture")
        return version

    def copy_version(self, name: str) -> str:
        """Another version folder with the same (real) files."""
        shutil.copytree(self.models_dir / self.version, self.models_dir / name)
        return name

    def feed(self, sessions: int = 2) -> MarketFeed:
        return MarketFeed(get_settings().universe, sessions=sessions)


@pytest.fixture
def app_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_tables: None, trained_version: Path
) -> Iterator[AppEnv]:
    """Empty tables, a models folder holding the trained version (not promoted), fresh caches."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(trained_version, models / trained_version.name)
    monkeypatch.setenv("MODELS_DIR", str(models))
    monkeypatch.setenv("MODEL_CONFIG_PATH", str(tmp_path / "model_config.json"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    clear_streamlit_caches()
    yield AppEnv(tmp_path, trained_version.name, models)
    clear_streamlit_caches()
    get_settings.cache_clear()
