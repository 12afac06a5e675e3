"""Seeding from Yahoo Finance (the synthetic fake at yfinance's transport): resumable after a
kill, exact, idempotent."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from config.market_calendar import xnys
from db.reads import read_from_db
from tests.workers.price_support import stored_bars

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("seed_yahoo")]


def test_yahoo_seeding_killed_halfway_resumes_to_exactly_the_source_s_bars(
    clean_tables: None, tmp_path: Path
) -> None:
    """`seed_history --source yfinance` against the synthetic Yahoo (7-day pages, a rate limit,
    null minutes, the 16:00 print, the forming minute): SIGKILLed after its first sessions,
    run again, it ends with exactly Yahoo's final regular-session bars; a third run writes
    nothing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.workers.fake_yahoo import synthetic_bars

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": str(root / "tests/e2e/fake_site"),
        "STOCKPULSE_FAKE_YAHOO": "1",
        "MARKET_SOURCE": "yfinance",
        "UNIVERSE": "AAPL,MSFT,NVDA",
        "DATA_DIR": str(tmp_path),
        "YF_MIN_REQUEST_INTERVAL_S": "0.5",
    }
    cmd = [sys.executable, "-m", "workers.seed_history", "--days", "12"]

    def count() -> int:
        return int(read_from_db("SELECT count(*) AS n FROM bars_1m")["n"].iloc[0])

    first = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    while count() == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    partial = count()
    assert first.returncode == -signal.SIGKILL and 0 < partial

    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    now = pd.Timestamp.now(tz="UTC")
    cal = xnys()
    live = cal.minute_to_session(now.floor("min"), direction="next")
    sessions = cal.sessions_window(live, -13)[:-1]
    want = pd.concat(
        [
            synthetic_bars(t, cal.session_open(sessions[0]), cal.session_close(sessions[-1]))
            for t in ("AAPL", "MSFT", "NVDA")
        ],
        ignore_index=True,
    ).sort_values(["ticker", "ts"], ignore_index=True)
    stored = stored_bars()
    assert partial < len(stored)  # the first run was stopped halfway
    pd.testing.assert_frame_equal(stored, want, check_dtype=False)
    assert set(read_from_db("SELECT DISTINCT source FROM bars_1m")["source"]) == {"yfinance"}

    again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and " 0 bar(s) written" in again.stdout, again.stdout
    assert len(stored_bars()) == len(stored)
