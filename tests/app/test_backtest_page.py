"""The backtest page: under AppTest (figures, charts, downloads, the refusal, the cache) and in a
real browser (the chart drawn, the CSV downloaded)."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from config.settings import get_settings
from tests.app.support import (
    APP_DIR,
    CHROMIUM,
    CHROMIUM_ARGS,
    StreamlitServer,
    figures,
    table_with,
    texts,
)
from tests.ml.lifecycle.test_backtest import (
    DOWN_BIAS,
    TICKERS,
    UP_BIAS,
    feature_version,
    store_bars,
)

UP, DOWN = "20261031T000000Z", "20261031T000001Z"
ARTIFACTS = APP_DIR.parent / "test-artifacts"


@pytest.fixture(scope="session")
def page_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backtest_page_versions")
    feature_version(root / UP, 1, UP_BIAS)
    feature_version(root / DOWN, 2, DOWN_BIAS)
    return root


@pytest.fixture
def backtest_env(app_env, page_versions, monkeypatch):
    """Two tickers' bars of Nov 2-4 2026 stored; an UP- and a DOWN-biased version trained (by
    their metadata) on October, the newest (DOWN) not promoted."""
    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    for version in (UP, DOWN):
        shutil.copytree(page_versions / version, app_env.models_dir / version)
    store_bars()
    return app_env


def open_backtest() -> AppTest:
    at = AppTest.from_file(str(APP_DIR / "main.py"), default_timeout=120)
    at.switch_page("views/backtest.py")
    return at.run()


def submit(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Run backtest").click()
    return at.run()


def unescaped(values) -> list[str]:
    return [str(v.value).replace("\\", "") for v in values]


def test_the_page_runs_a_backtest_with_figures_charts_and_downloads(backtest_env, monkeypatch):
    from ml.lifecycle import backtest

    calls = []
    real = backtest.run_backtest
    monkeypatch.setattr(backtest, "run_backtest", lambda *a, **k: calls.append(1) or real(*a, **k))
    at = open_backtest()
    assert not at.exception and not at.error
    assert at.title[0].value == "Backtest"
    assert at.multiselect(key="bt_v").value == [DOWN]  # no champion: the newest version
    assert at.date_input(key="bt_days").value == (date(2026, 10, 31), date(2026, 11, 4))
    at.multiselect(key="bt_v").set_value([UP, DOWN])
    at.date_input(key="bt_days").set_value((date(2026, 11, 4), date(2026, 11, 4)))
    at = submit(at)
    assert not at.exception and not at.error, at.exception
    assert any("2026-11-04 14:30 UTC to 2026-11-04 20:59 UTC" in s for s in texts(at))
    totals = table_with(at, "strategy", "total_return")
    assert list(totals["strategy"]) == [
        UP, DOWN, "baseline: majority", "baseline: logistic", "baseline: gbt", "buy and hold"
    ]  # fmt: skip
    assert {"total_return", "sharpe", "sortino", "max_drawdown", "drawdown_bars", "turnover",
            "hit_rate", "exposure", "costs", "trades"} <= set(totals.columns)  # fmt: skip
    charts = figures(at)
    assert len(charts["bt_equity"]["data"]) == len(totals)
    assert charts["bt_drawdown"]["layout"]["yaxis"]["tickformat"] == ".1%"
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels == ["Download the figures (CSV)", "Download the trades (CSV)"]
    at.selectbox(key="bt_strategy").set_value(UP).run()
    per_ticker = table_with(at, "ticker", "total_return")
    assert list(per_ticker["ticker"]) == sorted(TICKERS)
    assert any("Not financial advice" in s for s in unescaped(at.warning))
    submit(at)  # the same inputs again: served from the cache
    assert len(calls) == 1


def test_an_overlapping_range_is_refused_plainly(backtest_env):
    at = open_backtest()
    at.date_input(key="bt_days").set_value((date(2026, 10, 28), date(2026, 11, 4)))
    at = submit(at)
    assert not at.exception
    [message] = unescaped(at.error)
    assert "Backtest refused" in message
    assert "2026-10-28 00:00 UTC to 2026-11-05 00:00 UTC" in message
    assert "validation data of 20261031T000001Z (2026-10-26 13:30 UTC to 2026-10-30" in message
    assert not at.get("plotly_chart")


@pytest.mark.slow
def test_the_page_in_a_browser_draws_its_charts_and_downloads_the_csv(backtest_env, tmp_path):
    from playwright.sync_api import sync_playwright

    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make browser` (apt-get install chromium)")
    env = {k: os.environ[k] for k in ("MODELS_DIR", "DATA_DIR", "UNIVERSE")}
    env["MODEL_CONFIG_PATH"] = str(get_settings().model_config_path)
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        StreamlitServer(ARTIFACTS / "streamlit-backtest.log", env) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1400})
        page.goto(f"{server.url}/backtest")
        page.get_by_role("button", name="Run backtest").click(timeout=60_000)
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=90_000)  # equity, drawdown
        with page.expect_download() as download:
            page.get_by_role("button", name="Download the figures (CSV)").click()
        saved = tmp_path / "figures.csv"
        download.value.save_as(saved)
        page.screenshot(path=str(ARTIFACTS / "backtest.png"), full_page=True)
        body = page.inner_text("body")
        browser.close()
    figures_csv = pd.read_csv(saved)
    assert {"strategy", "ticker", "total_return", "sharpe"} <= set(figures_csv.columns)
    assert set(figures_csv["ticker"]) == {*TICKERS, "ALL"}
    assert "Traceback" not in body and "buy and hold" in body
