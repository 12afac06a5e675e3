"""supervisord from the project's config keeps the price ingestor alive through a SIGKILL.

A real supervisord (from the venv) runs the ingestor on the simulated market at 600x against
the test database; the worker is killed with SIGKILL mid-run; supervisord restarts it; the
stored bars end equal to what the source produced: nothing lost, nothing twice. The config is
the project's supervisord.conf, verbatim, less the other programs (news, app, cron), which
have tests of their own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from db.reads import read_from_db
from tests.workers.price_support import assert_same_bars, queue, source_truth, stored_bars
from workers.gaps import missing_minutes
from workers.sources.simulated import SimulatedMarket

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TICKERS = ["AAPL", "MSFT", "KO", "XOM", "JPM"]


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 90.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def price_only_config(target: Path) -> Path:
    """The project's supervisord.conf with every program but price_ingestor left out."""
    return program_only_config(target, "price_ingestor")


def program_only_config(target: Path, program: str) -> Path:
    """The project's supervisord.conf with every program but `program` left out."""
    kept, keep = [], True
    for line in (ROOT / "supervisord.conf").read_text().splitlines(keepends=True):
        if line.startswith("["):
            name = line.strip()
            other = name.startswith(("[program:", "[group:", "[eventlistener:", "[fcgi-program:"))
            keep = not other or name == f"[program:{program}]"
        if keep:
            kept.append(line)
    target.write_text("".join(kept))
    return target


@pytest.fixture
def supervised(clean_tables: None) -> Iterator[dict[str, Any]]:
    run_dir = Path(tempfile.mkdtemp(prefix="sp-", dir="/tmp"))  # short: it holds a socket
    env = {
        **os.environ,
        "STOCKPULSE_HOME": str(ROOT),
        "STOCKPULSE_PYTHON": sys.executable,
        "STOCKPULSE_LOG_DIR": str(run_dir),
        "DATA_DIR": str(run_dir / "data"),
        "MARKET_SOURCE": "simulated",
        "SIM_SPEED": "600",
        "SIM_SEED": "42",
        "UNIVERSE": ",".join(TICKERS),
    }
    conf = str(price_only_config(run_dir / "supervisord.conf"))
    proc = subprocess.Popen(
        [str(BIN / "supervisord"), "-c", conf],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )

    def ctl(*args: str) -> str:
        out = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", conf, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip()

    try:
        yield {"ctl": ctl, "dir": run_dir, "env": env, "proc": proc}
    finally:
        if proc.poll() is None:
            ctl("shutdown")
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


def _bar_count() -> int:
    return int(read_from_db("SELECT count(*) AS n FROM bars_1m")["n"].iloc[0])


def _newest() -> pd.Timestamp | None:
    ts = read_from_db("SELECT max(ts) AS ts FROM bars_1m")["ts"].iloc[0]
    return None if pd.isna(ts) else pd.Timestamp(ts)


def _pid(ctl: Callable[..., str], running: bool = True) -> int | None:
    if running and "RUNNING" not in ctl("status", "price_ingestor"):
        return None
    out = ctl("pid", "price_ingestor")
    return int(out) if out.isdigit() and int(out) > 0 else None


def _log(run_dir: Path, name: str) -> str:
    path = run_dir / name
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.slow
def test_sigkilled_worker_is_restarted_and_the_data_ends_complete(
    supervised: dict[str, Any],
) -> None:
    ctl, run_dir = supervised["ctl"], supervised["dir"]
    try:
        first_pid = wait_for("the worker to run", lambda: _pid(ctl))
        wait_for("bars written", _bar_count)
        live_start = wait_for("live bars after the first poll", _newest)
        wait_for(
            "a few live minutes",
            lambda: (_newest() or live_start) > live_start + pd.Timedelta(minutes=5),
        )
        os.kill(first_pid, signal.SIGKILL)  # mid-run: no flush, no goodbye
        killed_at = _newest()
        assert killed_at is not None
        second_pid = wait_for(
            "supervisord to restart it",
            lambda: (p := _pid(ctl, running=False)) and p != first_pid and p,
        )
        assert second_pid != first_pid
        wait_for(
            "the restarted worker to write new minutes",
            lambda: (_newest() or killed_at) > killed_at + pd.Timedelta(minutes=10),
        )
        assert "stopped" in ctl("stop", "price_ingestor")  # SIGTERM: flush and exit
    except AssertionError:
        print(_log(run_dir, "supervisord.log"), _log(run_dir, "price_ingestor.log")[-5000:])
        raise
    sup_log = _log(run_dir, "supervisord.log")
    assert "terminated by SIGKILL" in sup_log and sup_log.count("spawned: 'price_ingestor'") >= 2
    worker_log = _log(run_dir, "price_ingestor.log")
    assert "stopped (SIGTERM)" in worker_log

    stored = stored_bars()
    assert not stored.duplicated(["ticker", "ts"]).any()
    market = SimulatedMarket(seed=42)
    for ticker in TICKERS:
        mine = stored[stored["ticker"] == ticker]
        truth = source_truth(
            market, [ticker], mine["ts"].min(), mine["ts"].max() + pd.Timedelta(minutes=1)
        )
        assert_same_bars(mine, truth)  # every bar the source produced, exactly once
    q = queue()
    produced = set(zip(stored["ticker"], stored["ts"], strict=True))
    assert missing_minutes(q).isdisjoint(produced)  # queued minutes are the source's own holes
    for row in q.itertuples(index=False):
        hole = market.history([row.ticker], row.gap_start, row.gap_end + pd.Timedelta(minutes=1))
        assert hole.empty
