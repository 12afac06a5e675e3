"""The import rule (README "Architecture"): each layer imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "core": set(),
    "config": {"core"},
    "db": {"config", "core"},
    "ml": {"db", "config", "core"},
    "workers": {"db", "config", "core"},
    "app": {"ml", "db", "config", "core"},
}
pytestmark = pytest.mark.no_db


def project_imports(path: Path) -> set[str]:
    """The project packages a module imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in ALLOWED}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in sorted((ROOT / package).rglob("*.py"))
        if (bad := project_imports(path) - ALLOWED[package] - {package})
    }
    assert not wrong, f"imports against the rule: {wrong}"


def test_the_rule_is_checked_on_every_package() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert packages == set(ALLOWED)


ML_ROOMS = ("features", "models", "training", "serving", "lifecycle")  # each imports only earlier
ML_MAY_IMPORT = {
    "features": set(),
    "models": {"features"},
    "training": {"features", "models"},
    "serving": {"features", "models"},
    "lifecycle": {"features", "models", "training", "serving"},
}


def ml_rooms_imported(path: Path) -> set[str]:
    """The rooms of `ml` a module imports (`ml.<room>...` or `from ml.<room> import ...`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {n.split(".")[1] for n in names if n.startswith("ml.") and n.count(".") >= 1}
    return found


@pytest.mark.parametrize("room", ML_ROOMS)
def test_each_room_of_ml_imports_only_the_rooms_before_it(room: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in sorted((ROOT / "ml" / room).rglob("*.py"))
        if (bad := ml_rooms_imported(path) - ML_MAY_IMPORT[room] - {room})
    }
    assert not wrong, f"imports against the rooms' order: {wrong}"


def test_every_module_of_ml_lives_in_a_room() -> None:
    rooms = {p.name for p in (ROOT / "ml").iterdir() if (p / "__init__.py").exists()}
    assert rooms == set(ML_ROOMS)
    assert [p.name for p in (ROOT / "ml").glob("*.py")] == ["__init__.py"]
