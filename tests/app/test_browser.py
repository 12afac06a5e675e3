"""The workbench in a real browser: headless Chromium against `streamlit run app/main.py`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from config.settings import get_settings
from tests.app.support import (
    APP_DIR,
    CHROMIUM,
    CHROMIUM_ARGS,
    ScoringWorkerProcess,
    StreamlitServer,
    metric_value,
)

ARTIFACTS = APP_DIR.parent / "test-artifacts"
SCHEDULED_RUN = """
import sys, time
from pathlib import Path
from config.settings import get_settings
from db.ops import training_lock
from ml.training.progress import Progress, progress_path
with training_lock():
    Progress(progress_path(get_settings().data_dir), None).update(
        "training", "2189 windows", model="lstm", epoch=2, epochs=3
    )
    while not Path(sys.argv[1]).exists():
        time.sleep(0.2)
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_live_page_shows_a_new_bars_signal_without_reloading_then_the_model_lab(app_env, browser):
    feed = app_env.feed()
    feed.seed(hold_back=2)
    app_env.promote()
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"APP_REFRESH_S": "2", **{k: os.environ[k] for k in ("MODELS_DIR", "DATA_DIR")}}
    env["MODEL_CONFIG_PATH"] = str(get_settings().model_config_path)
    with (
        ScoringWorkerProcess(ARTIFACTS / "scoring-worker-browser-test.log", env),
        StreamlitServer(ARTIFACTS / "streamlit-browser-test.log", env) as server,
    ):
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(server.url)
        page.get_by_role("heading", name="Live signals").wait_for(timeout=60_000)
        page.get_by_text("Not financial advice").first.wait_for()
        page.locator('[data-testid="stMetric"]', has_text="Newest signal").wait_for()
        page.wait_for_function(
            "() => !document.body.innerText.includes('Newest signal\\n—')", timeout=60_000
        )
        before = metric_value(page, "Newest signal")
        page.evaluate("window.__stockpulse_marker = 42")
        ts, _ = feed.next_minute()
        wanted = f"{ts:%H:%M}"
        assert before != wanted
        page.wait_for_function(
            "w => [...document.querySelectorAll('[data-testid=stMetric]')].some("
            "m => m.innerText.includes('Newest signal') && m.innerText.trim().endsWith(w))",
            arg=wanted,
            timeout=30_000,
        )
        assert metric_value(page, "Newest bar") == wanted
        # the same document: the fragment refreshed in place, the page was not reloaded
        assert page.evaluate("window.__stockpulse_marker") == 42
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert page.get_by_text("Not financial advice").first.is_visible()
        page.screenshot(path=str(ARTIFACTS / "live_signals.png"), full_page=True)

        page.get_by_role("link", name="Model lab").click()
        page.get_by_role("heading", name="Model lab").wait_for(timeout=30_000)
        page.get_by_text("Champion:", exact=True).wait_for()
        page.get_by_role("button", name="Retrain now").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "model_lab.png"), full_page=True)

        page.get_by_role("link", name="Stock detail").click()
        page.get_by_role("heading", name="Stock detail").wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "stock_detail.png"), full_page=True)
        assert "Traceback" not in page.inner_text("body")


def _same_document(page) -> None:
    assert page.evaluate("window.__stockpulse_marker") == 42
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


def _open_marked(browser, url: str, height: int, ready):
    """`url` in a new page, once `ready(page)` (a locator) shows; marked, so `_same_document`
    tells a reload."""
    page = browser.new_page(viewport={"width": 1500, "height": height})
    page.goto(url)
    ready(page).wait_for(timeout=60_000)
    page.evaluate("window.__stockpulse_marker = 42")
    return page


def _show_a_scheduled_run(lab, env: dict[str, str]) -> None:
    """A run started by the schedule: another process holds the training lock and reports its
    progress the way ml.lifecycle.pipeline does, until the lab page has shown it in place."""
    import subprocess
    import sys

    stop = ARTIFACTS / "scheduled-run.stop"
    stop.unlink(missing_ok=True)
    run_env = {**os.environ, **env}
    scheduled = subprocess.Popen(
        [sys.executable, "-c", SCHEDULED_RUN, str(stop)], env=run_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        try:
            lab.get_by_text("Training is already running").wait_for(timeout=90_000)
            lab.get_by_text("lstm epoch 2/3").wait_for(timeout=30_000)
        except Exception:
            lab.screenshot(path=str(ARTIFACTS / "model_lab_retrain_missing.png"), full_page=True)
            raise
        _same_document(lab)
    finally:
        stop.touch()
        scheduled.wait(timeout=60)


def test_detail_and_lab_refresh_in_place_and_show_a_retrain_started_elsewhere(app_env, browser):
    """Pages opened before new bars, outcomes and a retrain (started by the schedule, not this
    session) show them without a reload: new candles on the detail page, the scoreboard
    filling in the model lab, then the retrain's progress."""
    import time

    from tests.app.test_model_lab import _trained_until

    feed = app_env.feed()
    last_seeded = feed.seed(hold_back=40)
    app_env.promote()
    challenger = app_env.copy_version("20991231T000000Z")
    _trained_until(challenger, last_seeded)
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"APP_REFRESH_S": "2", **{k: os.environ[k] for k in ("MODELS_DIR", "DATA_DIR")}}
    env["MODEL_CONFIG_PATH"] = str(get_settings().model_config_path)
    with (
        ScoringWorkerProcess(ARTIFACTS / "scoring-worker-refresh-test.log", env),
        StreamlitServer(ARTIFACTS / "streamlit-refresh-test.log", env) as server,
    ):
        detail = _open_marked(
            browser,
            f"{server.url}/stock_detail?ticker=AAPL",
            1100,
            lambda page: page.locator(".js-plotly-plot").first,
        )
        lab = _open_marked(
            browser,
            f"{server.url}/model_lab",
            1400,
            lambda page: page.get_by_text("scoreboard shows its figures from 30 on"),
        )

        for _ in range(40):
            ts, _ = feed.next_minute()
            time.sleep(0.3)
        wanted = f"newest bar {ts:%Y-%m-%d %H:%M} UTC"
        detail.get_by_text(wanted).wait_for(timeout=30_000)  # new candles, in place
        _same_document(detail)
        lab.get_by_text("Δ macro-F1").first.wait_for(timeout=60_000)  # the scoreboard filled
        _same_document(lab)
        lab.screenshot(path=str(ARTIFACTS / "model_lab_scoreboard.png"), full_page=True)

        _show_a_scheduled_run(lab, env)
        assert "Traceback" not in lab.inner_text("body") + detail.inner_text("body")


def _live_table_text(page) -> str:
    """The live board's rows as the browser shows them (the glide data grid's cells)."""
    return str(page.locator('[data-testid="stDataFrame"]').first.inner_text())


def test_two_app_servers_show_the_same_signals_and_call_no_model(app_env, browser):
    """Two `streamlit run` servers on their own ports against one database and one scoring
    worker: both pages show the same newest signal for each new bar, and the signals stored are
    exactly one row per bar and version (the predictions the worker made), whatever the number
    of servers and sessions."""
    import time

    from db.reads import read_from_db

    feed = app_env.feed()
    feed.seed(hold_back=3)
    app_env.promote()
    app_env.copy_version("20991231T000000Z")  # a challenger scoring in shadow
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"APP_REFRESH_S": "2", **{k: os.environ[k] for k in ("MODELS_DIR", "DATA_DIR")}}
    env["MODEL_CONFIG_PATH"] = str(get_settings().model_config_path)
    with (
        ScoringWorkerProcess(ARTIFACTS / "scoring-worker-two-servers.log", env),
        StreamlitServer(ARTIFACTS / "streamlit-server-a.log", env) as a,
        StreamlitServer(ARTIFACTS / "streamlit-server-b.log", env) as b,
    ):
        assert a.port != b.port
        pages = []
        for server in (a, b, a):  # two sessions on the first server, one on the second
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(server.url)
            page.locator('[data-testid="stMetric"]', has_text="Newest signal").wait_for(
                timeout=60_000
            )
            pages.append(page)
        for _ in range(3):
            ts, _ = feed.next_minute()
            wanted = f"{ts:%H:%M}"
            for page in pages:
                page.wait_for_function(
                    "w => [...document.querySelectorAll('[data-testid=stMetric]')].some("
                    "m => m.innerText.includes('Newest signal') && m.innerText.trim().endsWith(w))",
                    arg=wanted,
                    timeout=30_000,
                )
        time.sleep(2.5)  # one more refresh period: every board drawn from the same rows
        boards = [_live_table_text(p) for p in pages]
        assert boards[0] == boards[1] == boards[2]
        assert "Traceback" not in pages[1].inner_text("body")
    stored = read_from_db(
        "SELECT model_version, role, count(*) AS n, count(DISTINCT (ticker, bar_ts)) AS bars "
        "FROM signals GROUP BY model_version, role ORDER BY role"
    )
    assert list(stored["role"]) == ["champion", "shadow"]
    assert (stored["n"] == stored["bars"]).all()  # one row per bar and version, never more
    tickers = len(get_settings().universe)
    assert (stored["n"] == tickers * 4).all()  # the newest seeded bar + 3 new minutes, each once
