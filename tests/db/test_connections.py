"""`db/connections.py` alone opens database connections: no other product module creates an
engine (a pool) or a driver connection. The embedded server's set-up is the one exception: it
creates the database before any URL to it exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "ml", "workers", "db", "config", "core")
ALLOWED = {"db/connections.py", "db/embedded/__init__.py"}
pytestmark = pytest.mark.no_db


def opens_connections(path: Path) -> bool:
    """True when the module calls `create_engine` or `psycopg2.connect`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "create_engine":
            return True
        if isinstance(func, ast.Attribute) and func.attr == "create_engine":
            return True
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "connect"
            and isinstance(func.value, ast.Name)
            and func.value.id == "psycopg2"
        ):
            return True
    return False


def test_only_the_connections_module_opens_connections() -> None:
    found = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if opens_connections(path)
    }
    assert found <= ALLOWED, f"connections opened outside db/connections.py: {found - ALLOWED}"
    assert "db/connections.py" in found
