"""The embedded PostgreSQL server's command line: start it, stop it, say where it is and what it
serves.

    python -m db.embedded start|stop|status|url
"""

from __future__ import annotations

import argparse
import sys

from config.settings import Settings, get_settings
from db.embedded import (
    DATABASE_NAME,
    ensure_running,
    is_running,
    pgdata_path,
    stop,
    timescaledb_installed,
)
from db.flavour import database_flavour


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m db.embedded",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["start", "stop", "status", "url"])
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.action in ("start", "url"):
        url = ensure_running(settings)
        print(url if args.action == "url" else f"embedded PostgreSQL running: {url}")
    elif args.action == "stop":
        print("stopped" if stop(settings) else "not running")
    else:
        print(status(settings))
    return 0


def status(settings: Settings) -> str:
    """Where the embedded server lives, whether it runs, and which flavour it serves."""
    running = is_running(settings)
    installed = timescaledb_installed()
    preload = settings.timescaledb != "off" and installed
    lines = [
        f"embedded PostgreSQL at {pgdata_path(settings)}: {'running' if running else 'stopped'}",
        "TimescaleDB: "
        + (
            f"{installed} installed, preloaded"
            if preload
            else f"{installed} installed, off (TIMESCALEDB=off)"
            if installed
            else "not installed (make timescaledb builds it)"
        ),
    ]
    if running:
        lines.append(f"database {DATABASE_NAME}: {database_flavour()}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
