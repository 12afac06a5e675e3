"""Every process's log lines are stamped in UTC, whatever its time zone (cron runs jobs with
TZ=America/New_York)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.no_db
def test_a_job_running_in_new_york_time_stamps_its_lines_in_utc() -> None:
    code = "from core.logs import setup_logging; setup_logging('job').info('hello')"
    before = datetime.now(UTC)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "TZ": "America/New_York"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    stamp, rest = proc.stderr.strip().split(" ", 1)
    assert rest == "INFO job: hello"
    assert stamp.endswith("Z")
    logged = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((logged - before).total_seconds()) < 30  # New York time would be hours off
