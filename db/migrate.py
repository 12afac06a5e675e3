"""Apply or revert the schema migrations in `db/migrations/`.

python -m db.migrate up [--to N]      apply pending migrations (all, or up to N)
python -m db.migrate down --to N      revert migrations above N (0 = empty schema)
python -m db.migrate status           list migrations and whether each is applied
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from config.cli import job_parser, setup_logging
from db import migrations, timescale
from db.connections import ADVISORY_LOCKS, autocommit_cursor, create_db_engine
from db.flavour import database_flavour, forget_schema

log = logging.getLogger(__name__)

_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
_LOCK_KEY = ADVISORY_LOCKS["migrate"]  # one migrator at a time
TIMESCALE_MIGRATION = 2


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType


def available() -> list[Migration]:
    found = []
    for info in pkgutil.iter_modules(migrations.__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            module = importlib.import_module(f"db.migrations.{info.name}")
            found.append(Migration(int(info.name[1:5]), module.NAME, module))
    return sorted(found, key=lambda m: m.version)


def _raw_connection() -> Any:
    return create_db_engine().raw_connection()


def applied_versions() -> set[int]:
    conn = _raw_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(_LEDGER)
            cur.execute("SELECT version FROM schema_migrations")
            rows = cur.fetchall()
        conn.commit()
        return {int(r[0]) for r in rows}
    finally:
        conn.close()


def _apply(module: ModuleType, direction: str, cur: Any) -> None:
    """Run a migration one way: its `up(cur)` / `down(cur)` when it has one, else its `UP` /
    `DOWN` statements in order."""
    step = getattr(module, direction, None)
    if step is not None:
        step(cur)
        return
    for statement in getattr(module, direction.upper()):
        cur.execute(statement)


def _run(migration: Migration, direction: str) -> None:
    conn = _raw_connection()
    try:
        autocommit = getattr(migration.module, "NEEDS_AUTOCOMMIT", False)
        dbapi = conn.dbapi_connection
        dbapi.autocommit = autocommit
        with dbapi.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            try:
                _apply(migration.module, direction, cur)
                if direction == "up":
                    cur.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                else:
                    cur.execute(
                        "DELETE FROM schema_migrations WHERE version = %s", (migration.version,)
                    )
                if not autocommit:
                    dbapi.commit()
            except Exception:
                if not autocommit:
                    dbapi.rollback()
                raise
            finally:
                if not autocommit:
                    dbapi.autocommit = True
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    finally:
        dbapi.autocommit = False
        conn.close()


def upgrade(to: int | None = None) -> list[int]:
    """Apply pending migrations up to `to` (default: all), then make sure TimescaleDB is used
    when the server has it (`db.timescale.ensure`, idempotent). Returns the versions applied."""
    done = applied_versions()
    ran = []
    for m in available():
        if m.version in done or (to is not None and m.version > to):
            continue
        log.info("applying migration %04d %s", m.version, m.name)
        _run(m, "up")
        ran.append(m.version)
    if TIMESCALE_MIGRATION in done | set(ran):
        ensure_timescale()
    forget_schema()
    return ran


def ensure_timescale() -> list[str]:
    """Convert to TimescaleDB if the server gained it after migration 0002 ran."""
    with autocommit_cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            return timescale.ensure(cur)
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def downgrade(to: int) -> list[int]:
    """Revert applied migrations above `to`, newest first. Returns the versions reverted."""
    done = applied_versions()
    ran = []
    for m in reversed(available()):
        if m.version in done and m.version > to:
            log.info("reverting migration %04d %s", m.version, m.name)
            _run(m, "down")
            ran.append(m.version)
    return ran


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("db.migrate", __doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--to", type=int, default=None, help="target version")
    args = parser.parse_args(argv)
    setup_logging("db.migrate")
    if args.action == "up":
        ran = upgrade(args.to)
        print(f"applied: {ran or 'nothing (up to date)'}")
        print(f"database: {database_flavour()}")
    elif args.action == "down":
        if args.to is None:
            parser.error("down needs --to N")
        print(f"reverted: {downgrade(args.to) or 'nothing'}")
        forget_schema()
    else:
        done = applied_versions()
        for m in available():
            print(f"{m.version:04d} {'applied' if m.version in done else 'pending':8} {m.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
