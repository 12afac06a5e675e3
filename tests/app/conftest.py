"""App test fixtures: one real model version trained once, a clean app environment per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import get_settings
from tests.app.support import MarketFeed

TRAINING_ENV = {"TRAIN_MAX_WINDOWS": "3000", "TRAIN_EPOCHS": "1", "TRAIN_LOOKBACK_DAYS": "30"}


def clear_streamlit_caches() -> None:
    """Drop every cached value and resource."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    # failing tests show the app's exception (the shipped config shows none to users)
    st.set_option("client.showErrorDetails", "full")


@pytest.fixture(scope="session")
def trained_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model version (TensorFlow training, real .tflite files) from a quick run on
    simulated bars, trained once per test session (from memory: the database is not touched,
    so a test may ask for it after seeding its own data)."""
    from ml.training.dataset import RawData
    from ml.training.progress import Progress
    from ml.training.train_model import train_from_raw

    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in TRAINING_ENV.items():
            mp.setenv(key, value)
        mp.setenv("MODELS_DIR", str(root / "models"))
        mp.setenv("MODEL_CONFIG_PATH", str(root / "model_config.json"))
        mp.setenv("DATA_DIR", str(root / "var"))
        get_settings.cache_clear()
        feed = MarketFeed(get_settings().universe, sessions=6)
        bars = feed.bars[["ticker", "ts", "open", "high", "low", "close", "volume"]]
        folder = train_from_raw(
            RawData(bars), get_settings(), quick=True, epochs=1, progress=Progress(None, None)
        )
    get_settings.cache_clear()
    return folder


class AppEnv:
    """A test's app environment; the trained model version is copied in on first use, so
    tests that need no model never pay for training one."""

    def __init__(self, root: Path, models_dir: Path, request: pytest.FixtureRequest) -> None:
        self.root = root
        self.models_dir = models_dir
        self._request = request
        self._version: str | None = None
        self._worker: Any = None

    @property
    def worker(self) -> Any:
        """The scoring worker (`ml.serving.scoring_worker.ScoringWorker`) of this test,
        in-process."""
        if self._worker is None:
            from ml.serving.scoring_worker import ScoringWorker

            self._worker = ScoringWorker()
        return self._worker

    def score(self) -> Any:
        """One pass of the scoring worker, as when a bar's notification wakes it."""
        return self.worker.run_pass()

    @property
    def version(self) -> str:
        """The trained version (a real TensorFlow model, trained once per test session)."""
        if self._version is None:
            trained: Path = self._request.getfixturevalue("trained_version")
            shutil.copytree(trained, self.models_dir / trained.name)
            self._version = trained.name
        return self._version

    def promote(self, version: str | None = None) -> str:
        from ml.models.registry import promote

        version = version or self.version
        promote(version, by="cli", reason="test fixture")
        return version

    def copy_version(self, name: str) -> str:
        """Another version named `name` with the same (real) model files."""
        from ml.models.metadata import read_metadata_file

        shutil.copytree(self.models_dir / self.version, self.models_dir / name)
        path = self.models_dir / name / "metadata.json"
        read_metadata_file(path).model_copy(update={"version": name}).write(path)
        return name

    def feed(self, sessions: int = 2) -> MarketFeed:
        return MarketFeed(get_settings().universe, sessions=sessions)


@pytest.fixture
def app_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_tables: None,
    request: pytest.FixtureRequest,
) -> Iterator[AppEnv]:
    """Empty tables, a models folder (the trained version is copied in when a test first asks
    for it, not promoted), fresh caches."""
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("MODELS_DIR", str(models))
    monkeypatch.setenv("MODEL_CONFIG_PATH", str(tmp_path / "model_config.json"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    clear_streamlit_caches()
    yield AppEnv(tmp_path, models, request)
    clear_streamlit_caches()
    get_settings.cache_clear()
