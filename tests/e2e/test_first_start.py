"""The deployment's first start on real-data settings, end to end on this machine.

`python -m workers.startup -- supervisord ...` exactly as the container's entry point runs it,
with `MARKET_SOURCE=yfinance`: Yahoo Finance is answered at yfinance's transport by the
synthetic fake (`tests/workers/fake_yahoo.py`, loaded into every process of the run by
`fake_site/sitecustomize.py`): 1-minute payloads of the real shape for every session, paged in
7-day windows, HTTP 429 rate limits on the first requests, minutes without trades sent as
nulls, the 16:00 closing print with volume 0 and the still-forming minute. The database is the
test session's (TimescaleDB under `make test`, plain PostgreSQL under `make test-plain`).

Checked: the history is seeded, a first pair is trained and gated (promoted, or provisional
with its reason), supervisord brings up the workers and the app, and in headless Chromium the
live page shows signals, marked provisional when they are, under the data-source banner.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from config.settings import get_settings
from db.reads import read_from_db
from ml.models.registry import read_registry

ROOT = Path(__file__).resolve().parents[2]
TICKERS = ["AAPL", "MSFT", "NVDA"]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("first_start")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


@pytest.fixture
def first_start(clean_tables, tmp_path):
    run_dir = Path(tempfile.mkdtemp(prefix="sp-first-", dir="/tmp"))  # short: supervisor socket
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests/e2e/fake_site"),
        "STOCKPULSE_FAKE_YAHOO": "2",  # the first two 1-minute requests answer HTTP 429
        "MARKET_SOURCE": "yfinance",
        "NEWS_SOURCE": "simulated",
        "MACRO_SOURCE": "simulated",
        "UNIVERSE": ",".join(TICKERS),
        "SIM_HISTORY_DAYS": "12",
        "YF_MIN_REQUEST_INTERVAL_S": "0.2",
        "DATA_DIR": str(run_dir / "var"),
        "MODELS_DIR": str(tmp_path / "models"),
        "MODEL_CONFIG_PATH": str(tmp_path / "models" / "model_config.json"),
        "TRAIN_EPOCHS": "1",
        "TRAIN_MAX_WINDOWS": "3000",
        "BOOTSTRAP_SAMPLES": "200",
        "APP_REFRESH_S": "2",
        "STOCKPULSE_HOME": str(ROOT),
        "STOCKPULSE_PYTHON": sys.executable,
        "STOCKPULSE_LOG_DIR": str(run_dir / "logs"),
        "STOCKPULSE_APP_PORT": str(port),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("STOCKPULSE_CRON", None)
    (run_dir / "logs").mkdir(parents=True)
    supervisord = str(Path(sys.executable).parent / "supervisord")
    log = open(run_dir / "startup.log", "wb")  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.startup", "--", supervisord, "-n", "-c",
         str(ROOT / "supervisord.conf")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield {"proc": proc, "port": port, "run_dir": run_dir, "env": env, "started": started}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        get_settings.cache_clear()


def test_first_start_on_yahoo_reaches_signals_in_the_browser(first_start, monkeypatch):
    from tests.app.support import CHROMIUM, CHROMIUM_ARGS

    proc, port, run_dir = first_start["proc"], first_start["port"], first_start["run_dir"]
    deadline = time.monotonic() + 900
    while not app_up(port):
        log = (run_dir / "startup.log").read_text(errors="replace")
        assert proc.poll() is None, f"the start failed:\n{log[-4000:]}"
        assert time.monotonic() < deadline, f"the app did not come up:\n{log[-4000:]}"
        time.sleep(2)
    up_after = time.monotonic() - first_start["started"]
    print(f"first start: app up {up_after:.0f} s after the start-up script began")

    bars = read_from_db(
        "SELECT ticker, count(*) AS n, min(source) AS source FROM bars_1m GROUP BY 1"
    )
    assert sorted(bars["ticker"]) == TICKERS and (bars["n"] > 12 * 300).all()
    assert set(bars["source"]) == {"yfinance"}
    monkeypatch.setenv("MODEL_CONFIG_PATH", first_start["env"]["MODEL_CONFIG_PATH"])
    get_settings.cache_clear()
    champion = read_registry().champion
    assert champion is not None, "no first model was trained and gated"
    evaluations = read_from_db("SELECT challenger FROM model_evaluations")
    assert evaluations["challenger"].tolist() == [champion.version]

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_text("Prices").first.wait_for(timeout=120_000)
        newest = page.locator('[data-testid="stMetric"]', has_text="Newest signal")
        newest.wait_for(timeout=180_000)
        deadline = time.monotonic() + 180
        while "—" in newest.inner_text():  # the page refreshes itself until signals show
            assert time.monotonic() < deadline, "no signal on the live page"
            time.sleep(2)
        counts = {
            action: int(
                page.locator('[data-testid="stMetric"]', has_text=action)
                .locator('[data-testid="stMetricValue"]')
                .inner_text()
            )
            for action in ("BUY", "SELL", "HOLD")
        }
        text = page.inner_text("body")
        (run_dir / "live.png").write_bytes(page.screenshot(full_page=True))
        browser.close()
    assert sum(counts.values()) == len(TICKERS)  # a signal for every stock
    assert "LIVE" in text and "Yahoo Finance" in text  # the banner: where prices come from
    assert "SIMULATED" in text  # ... and that the headlines are simulated
    provisional = "Signals are provisional" in text
    assert provisional == champion.provisional
    if champion.provisional:
        assert "did not beat" in text
