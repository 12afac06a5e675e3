"""Orchestration test fixtures: docker-compose.yml as written and as Compose interpolates it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.orchestration.compose_support import PRODUCTION_ENV, ROOT, interpolate


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict[str, Any]:
    return interpolate(raw, PRODUCTION_ENV)
