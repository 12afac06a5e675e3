"""README's architecture names real modules and classes."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "config", "db", "ml", "workers", "app")
pytestmark = pytest.mark.no_db


def architecture() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Architecture", 1)[1].split("\n## ", 1)[0]


def test_every_module_and_class_in_the_architecture_exists() -> None:
    named = set(
        re.findall(
            rf"\b((?:{'|'.join(PACKAGES)})/[a-z_]+(?:\.py)?(?:\.[A-Z]\w+)?)(?![\w.]*json)",
            architecture(),
        )
    )
    assert len(named) > 20
    missing = []
    for ref in sorted(named):
        path, _, attr = ref.removesuffix(".py").partition(".")
        if attr == "py":
            attr = ""
        file = ROOT / f"{path}.py"
        if not file.exists() and not (ROOT / path).is_dir():
            missing.append(ref)
            continue
        if attr:
            module = importlib.import_module(path.replace("/", "."))
            if not hasattr(module, attr):
                missing.append(ref)
    assert not missing, f"README names what does not exist: {missing}"
