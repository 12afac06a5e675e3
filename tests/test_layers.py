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
