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


def fake_yahoo_env(root: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a `seed_history` run against the synthetic Yahoo, for three tickers."""
    import os

    return {
        **os.environ,
        "PYTHONPATH": str(root / "tests/e2e/fake_site"),
        "STOCKPULSE_FAKE_YAHOO": "1",
        "MARKET_SOURCE": "yfinance",
        "UNIVERSE": "AAPL,MSFT,NVDA",
        "DATA_DIR": str(tmp_path),
        "YF_MIN_REQUEST_INTERVAL_S": "0.5",
    }


def bar_count() -> int:
    return int(read_from_db("SELECT count(*) AS n FROM bars_1m")["n"].iloc[0])


def yahoo_final_bars(now: pd.Timestamp) -> pd.DataFrame:
    """The synthetic Yahoo's final bars of the 12 sessions before the one live (or next) at
    `now`, for the three tickers, by ticker and time."""
    from tests.workers.fake_yahoo import synthetic_bars

    cal = xnys()
    live = cal.minute_to_session(now.floor("min"), direction="next")
    sessions = cal.sessions_window(live, -13)[:-1]
    return pd.concat(
        [
            synthetic_bars(t, cal.session_open(sessions[0]), cal.session_close(sessions[-1]))
            for t in ("AAPL", "MSFT", "NVDA")
        ],
        ignore_index=True,
    ).sort_values(["ticker", "ts"], ignore_index=True)


def test_yahoo_seeding_killed_halfway_resumes_to_exactly_the_source_s_bars(
    clean_tables: None, tmp_path: Path
) -> None:
    """`seed_history --source yfinance` against the synthetic Yahoo (7-day pages, a rate limit,
    null minutes, the 16:00 print, the forming minute): SIGKILLed after its first sessions,
    run again, it ends with exactly Yahoo's final regular-session bars; a third run writes
    nothing."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    env = fake_yahoo_env(root, tmp_path)
    cmd = [sys.executable, "-m", "workers.seed_history", "--days", "12"]

    first = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    while bar_count() == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    partial = bar_count()
    assert first.returncode == -signal.SIGKILL and 0 < partial

    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    want = yahoo_final_bars(pd.Timestamp.now(tz="UTC"))
    stored = stored_bars()
    assert partial < len(stored)  # the first run was stopped halfway
    pd.testing.assert_frame_equal(stored, want, check_dtype=False)
    assert set(read_from_db("SELECT DISTINCT source FROM bars_1m")["source"]) == {"yfinance"}

    again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and " 0 bar(s) written" in again.stdout, again.stdout
    assert len(stored_bars()) == len(stored)
