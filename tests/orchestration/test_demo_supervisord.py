"""The demo's supervisord, for a bounded time: bars, news, signals and heartbeats appear, and a
SIGKILLed worker comes back. Real supervisord, real workers, the real app in headless Chromium."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from config.settings import get_settings
from db.connections import execute
from db.reads import read_from_db

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TICKERS = ["AAPL", "MSFT", "NVDA", "KO", "JPM"]
pytestmark = pytest.mark.slow


def count(table: str) -> int:
    return int(read_from_db(f"SELECT count(*) AS n FROM {table}")["n"][0])  # noqa: S608


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def promote_tiny_model(env: dict[str, str]) -> str:
    """A small real model version for the seeded bars (see tests/ml/conftest.py)."""
    spec = importlib.util.spec_from_file_location("ml_fixtures", ROOT / "tests/ml/conftest.py")
    assert spec and spec.loader
    fixtures = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fixtures
    spec.loader.exec_module(fixtures)
    bars = read_from_db(
        "SELECT ticker, ts, open, high, low, close, volume FROM bars_1m ORDER BY ticker, ts"
    )
    version = "20261101T000000Z"
    fixtures.build_feature_version(Path(env["MODELS_DIR"]) / version, bars)
    subprocess.run(
        [sys.executable, "-m", "ml.models.registry", "promote", version, "--reason", "demo test"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return version


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[dict[str, Any]]:
    run_dir = Path(tempfile.mkdtemp(prefix="spd-", dir="/tmp"))  # short: holds a socket
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STOCKPULSE_HOME": str(ROOT),
        "STOCKPULSE_PYTHON": sys.executable,
        "STOCKPULSE_LOG_DIR": str(run_dir),
        "STOCKPULSE_APP_PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "MODELS_DIR": str(tmp_path / "models"),
        "MODEL_CONFIG_PATH": str(tmp_path / "model_config.json"),
        "UNIVERSE": ",".join(TICKERS),
        "MARKET_SOURCE": "simulated",
        "NEWS_SOURCE": "simulated",
        "MACRO_SOURCE": "simulated",
        "SIM_SPEED": "120",
        "POLL_INTERVAL_S": "1",
        "NEWS_POLL_INTERVAL_S": "2",
        "APP_REFRESH_S": "2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    execute(
        "TRUNCATE bars_1m, news_articles, macro_observations, signals, worker_heartbeats, "
        "backfill_queue, corporate_actions"
    )
    for module in ("workers.seed_history", "workers.seed_context"):
        subprocess.run(
            [sys.executable, "-m", module, "--days", "2"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
    promote_tiny_model(env)
    conf = str(ROOT / "supervisord.conf")
    proc = subprocess.Popen([str(BIN / "supervisord"), "-s", "-c", conf], env=env, cwd=ROOT)

    def ctl(*args: str) -> str:
        return subprocess.run(
            [str(BIN / "supervisorctl"), "-c", conf, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()

    try:
        yield {"ctl": ctl, "port": port, "env": env, "logs": run_dir}
    finally:
        if proc.poll() is None:
            ctl("shutdown")
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(run_dir, ignore_errors=True)
        get_settings.cache_clear()


def app_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def price_pid(ctl: Callable[..., str]) -> int | None:
    line = ctl("status", "price_ingestor")
    if "RUNNING" not in line:
        return None
    return int(line.split("pid")[1].split(",")[0])


def test_demo_runs_and_a_killed_worker_comes_back(demo):
    from playwright.sync_api import sync_playwright

    ctl, port = demo["ctl"], demo["port"]
    seeded = count("bars_1m")
    wait_for("the app", lambda: app_healthy(port))
    wait_for("new bars", lambda: count("bars_1m") > seeded + 2 * len(TICKERS))

    def every_new_bar_scored() -> bool:  # with no page open: the scoring worker alone
        # after the worker's first pass (which scores each ticker's newest bar: first sight)
        # every bar stored is scored; at least two minutes of them
        frame = read_from_db(
            "WITH first AS (SELECT min(bar_ts) AS t FROM signals WHERE role = 'champion') "
            "SELECT (SELECT count(DISTINCT b.ts) FROM bars_1m b, first WHERE b.ts > first.t) "
            "AS minutes, (SELECT count(*) FROM bars_1m b, first WHERE b.ts > first.t "
            "AND NOT EXISTS (SELECT 1 FROM signals s WHERE s.ticker = b.ticker "
            "AND s.bar_ts = b.ts AND s.role = 'champion')) AS unscored"
        )
        minutes, unscored = frame.iloc[0]["minutes"], frame.iloc[0]["unscored"]
        return int(minutes or 0) >= 2 and int(unscored or 0) == 0

    wait_for("every new bar scored with no browser open", every_new_bar_scored)
    assert "RUNNING" in ctl("status", "scoring_worker")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}")
        page.get_by_text("Live signals").first.wait_for(timeout=60_000)
        wait_for("signals", lambda: count("signals") >= len(TICKERS))
        browser.close()
    assert count("news_articles") > 0

    def workers_beating() -> bool:
        beats = read_from_db("SELECT worker FROM worker_heartbeats")
        return {"price_ingestor", "news_ingestor", "scoring_worker"} <= set(beats["worker"])

    # the news worker loads its sentiment model before its first heartbeat
    wait_for("the workers' heartbeats", workers_beating)
    beats = read_from_db("SELECT worker, last_beat FROM worker_heartbeats")
    assert (pd.Timestamp.now(tz="UTC") - beats["last_beat"].max()) < pd.Timedelta(minutes=1)
    assert "RUNNING" in ctl("status", "news_ingestor") and "RUNNING" in ctl("status", "app")

    old = price_pid(ctl)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    new = wait_for(
        "the restarted price worker",
        lambda: (pid := price_pid(ctl)) is not None and pid != old and pid,
    )
    assert new != old
    before = count("bars_1m")
    wait_for("bars after the restart", lambda: count("bars_1m") > before, timeout_s=90)
    dupes = read_from_db(
        "SELECT count(*) AS n FROM (SELECT ticker, ts FROM bars_1m "
        "GROUP BY ticker, ts HAVING count(*) > 1) d"
    )
    assert int(dupes["n"][0]) == 0
