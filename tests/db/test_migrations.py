from __future__ import annotations

from db import migrate
from db.reads import read_from_db
from db.tables import TABLES


def table_columns() -> dict[str, set[str]]:
    df = read_from_db(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    )
    out: dict[str, set[str]] = {}
    for t, c in zip(df["table_name"], df["column_name"], strict=True):
        out.setdefault(t, set()).add(c)
    return out


def test_specs_match_the_migrated_schema():
    cols = table_columns()
    for name, spec in TABLES.items():
        assert name in cols, name
        assert set(spec.columns) == cols[name], name


def test_migrations_go_down_and_up_again():
    versions = [m.version for m in migrate.available()]
    assert versions == sorted(versions) and versions[0] == 1
    assert migrate.applied_versions() == set(versions)
    assert migrate.downgrade(0) == list(reversed(versions))
    assert migrate.applied_versions() == set()
    assert "bars_1m" not in table_columns()
    assert migrate.upgrade() == versions
    assert migrate.upgrade() == []  # idempotent
    assert set(TABLES) <= set(table_columns())
