"""Worker test fixtures: the settings of an alert test."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import get_settings
from tests.workers.alert_support import Env


@pytest.fixture
def alert_env(clean_tables: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Settings for a test (`ALERT_*` given as keyword arguments): short retries and polls, a
    simulated market whose clock has not started (so no stale-feed check runs)."""

    def configure(**env: str) -> None:
        base = {
            "DATA_DIR": str(tmp_path),
            "MARKET_SOURCE": "simulated",
            "ALERT_RETRY_S": "0.05",
            "ALERT_POLL_S": "0.3",
        }
        for key, value in {**base, **env}.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    configure()
    return configure
