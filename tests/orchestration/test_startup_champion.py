"""Whether a start trains a first model: `workers.startup.has_champion` reads the registry file
itself (`db.registry_store.champion_version`, the file's own validation), without running a
subprocess."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from config.settings import load_settings
from db.registry_store import RegistryError, champion_version
from workers import startup

pytestmark = pytest.mark.no_db

CHAMPION = {
    "version": "20260101T000000Z",
    "path": "models/20260101T000000Z",
    "files": {},
    "promoted_at": "2026-01-01T00:00:00+00:00",
    "promoted_by": "validation",
    "reason": "gate passed",
}


@pytest.fixture
def registry_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"has_champion ran a subprocess: {args}")

    monkeypatch.setattr(startup.subprocess, "run", no_subprocess)
    return tmp_path / "model_config.json"


def test_no_registry_file_means_no_champion(registry_path: Path) -> None:
    settings = load_settings(model_config_path=registry_path)
    assert champion_version(registry_path) is None
    assert startup.has_champion(settings) is False


def test_a_registry_naming_a_champion_skips_the_first_training(registry_path: Path) -> None:
    registry_path.write_text(json.dumps({"schema_version": 1, "champion": CHAMPION}))
    settings = load_settings(model_config_path=registry_path)
    assert champion_version(registry_path) == CHAMPION["version"]
    assert startup.has_champion(settings) is True
    registry_path.write_text(json.dumps({"schema_version": 1, "champion": None}))
    assert startup.has_champion(settings) is False


def test_an_unreadable_registry_counts_as_a_champion_and_says_why(
    registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A person has to look at a malformed registry; no first training overwrites it."""
    registry_path.write_text(json.dumps({"schema_version": 2}))
    with pytest.raises(RegistryError, match="schema_version"):
        champion_version(registry_path)
    with caplog.at_level(logging.WARNING, logger="workers.startup"):
        assert startup.has_champion(load_settings(model_config_path=registry_path)) is True
    assert "the model registry cannot be read" in caplog.text
    assert "schema_version" in caplog.text
