"""`make test` and `make test-plain`: pytest with the given arguments, the time it took, and the
machine left as it was found.

The test session starts the embedded PostgreSQL when no DATABASE_URL is set; a server that was
not running before the run is stopped after it, so a finished suite leaves nothing behind (a
server a demo started before the run keeps running).

    python scripts/run_suite.py NAME [PYTEST_ARGS...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    name, pytest_args = argv[0], argv[1:]
    from db import embedded

    embedded_db = not os.environ.get("DATABASE_URL")
    was_running = embedded_db and embedded.is_running()
    started = time.monotonic()
    rc = subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT)
    print(f"make {name}: {time.monotonic() - started:.0f} s of tests, exit code {rc}")
    if embedded_db and not was_running and embedded.stop():
        print(f"make {name}: stopped the embedded PostgreSQL this run started")
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
