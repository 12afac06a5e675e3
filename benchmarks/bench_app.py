"""The Streamlit workbench under load, on the simulated market with a real trained model.

- app_rerun_live: a warm rerun of the live page for the 20 tickers (script run under AppTest)
  against the same page with st.cache_data / st.cache_resource turned off (every query hits the
  database, the models load on every rerun). Target <= 150 ms and >= 10x.
- app_sessions_20: CPU seconds per minute of the Streamlit server while 20 browser sessions
  (headless chromium) auto-refresh every 5 s and a new bar arrives every 5 s; baseline: one
  session. app_sessions_20_predictions: model predictions in that minute (2 per scored window)
  against 2 x the new bars: equal means each bar was scored once, not once per session.
- app_soak_rss_mb: the live page open in the browser, auto-refreshing every 5 s for APP_SOAK_S
  seconds (default 1800) with a new bar every 5 s; the server's RSS at the start and the end.

    .venv/bin/python -m benchmarks.run app      (APP_SOAK_S=120 for a short soak)
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from benchmarks.common import bench_database, patched_env, result

ROOT = Path(__file__).resolve().parent.parent
SOAK_S = float(os.environ.get("APP_SOAK_S", "1800"))
MEASURE_S = float(os.environ.get("APP_SESSIONS_MEASURE_S", "60"))
REFRESH_S = 5.0
FEED_EVERY_S = 5.0
RERUNS = 30
NAIVE_MS: list[float] = []
TRAINING_ENV = {"TRAIN_MAX_WINDOWS": "3000", "TRAIN_EPOCHS": "1", "TRAIN_LOOKBACK_DAYS": "30"}


@contextmanager
def app_environment() -> Iterator[dict[str, Any]]:
    """A bench database with simulated bars, one quick-trained champion, settings in env."""
    from config.settings import get_settings
    from ml.models.registry import promote
    from ml.training.train_model import train
    from tests.app.support import MarketFeed

    with bench_database(), tempfile.TemporaryDirectory(prefix="bench_app_") as tmp:
        env = {
            "MODELS_DIR": f"{tmp}/models",
            "MODEL_CONFIG_PATH": f"{tmp}/model_config.json",
            "DATA_DIR": f"{tmp}/var",
            "APP_REFRESH_S": str(REFRESH_S),
            **TRAINING_ENV,
        }
        with patched_env(dict(env)):
            feed = MarketFeed(get_settings().universe, sessions=6)
            seeded = feed.seed(hold_back=min(700, 60 + int(SOAK_S / FEED_EVERY_S)))
            version = train(quick=True, epochs=1).name
            promote(version, by="cli", reason="benchmark")
            _challenger(version, seeded)
            yield {"feed": feed, "env": env, "tmp": Path(tmp), "version": version}


def _challenger(version: str, trained_until: Any) -> str:
    """A challenger scoring in shadow: the champion's files under a newer name, trained (as
    its metadata says) up to `trained_until`, so the scoreboard counts every bar after it."""
    import shutil

    from config.settings import get_settings
    from ml.models.metadata import read_metadata_file

    models = get_settings().models_dir
    name = "20991231T000000Z"
    shutil.copytree(models / version, models / name)
    meta = read_metadata_file(models / name / "metadata.json")
    start = (trained_until - pd.Timedelta(days=1)).isoformat()
    meta.model_copy(
        update={"version": name, "val_range": (start, trained_until.isoformat())}
    ).write(models / name / "metadata.json")
    return name


def _timed_reruns(at: Any, n: int, before: Any = None) -> list[float]:
    """Server time (ms) of the live board in `n` reruns, as the page reports it in its caption
    ("Refreshed .. in N ms")."""
    out = []
    for _ in range(n):
        if before is not None:
            before()
        at.run()
        assert not at.exception, at.exception
        caption = next(c.value for c in at.caption if c.value.startswith("Refreshed "))
        out.append(float(caption.split(" in ", 1)[1].split(" ms", 1)[0]))
    return out


def naive_live_page() -> None:
    """The live page computing its signals in every rerun, as a page without st.cache_* and
    without the shared scorer would: models loaded, the bounded history read, features built,
    both models run on the 20 newest windows, the same price table read and drawn."""
    import time

    import streamlit as st

    from app import live_data
    from benchmarks import bench_app
    from config.settings import get_settings
    from db.bars import adjustment_stamp
    from ml.models.model_loader import ModelManager
    from ml.models.predict import predict_batch
    from ml.serving.generate_recommendation import get_trade_recommendation
    from ml.serving.live_scoring import Scorer

    started = time.perf_counter()
    settings = get_settings()
    serving = ModelManager(settings).serving()
    models = serving.champion
    assert models is not None
    meta = models.metadata
    features = Scorer(settings).features(meta.feature_params, serving, adjustment_stamp())
    targets = {t: [ts] for t in settings.universe if (ts := features.last_ts(t)) is not None}
    keys, x = features.windows(targets, meta.features, meta.window_length, meta.feature_scaler)
    pairs = zip(predict_batch(models.lstm, x), predict_batch(models.transformer, x), strict=True)
    recs = {
        t: get_trade_recommendation(a, b, ticker=t, bar_ts=ts, model_version=models.version)
        for (a, b), t, ts in zip(pairs, keys["ticker"], keys["ts"], strict=True)
    }
    frame = live_data._live_frame(None, tuple(settings.universe))
    frame["action"] = frame["ticker"].map(lambda t: recs[t].action if t in recs else None)
    frame["confidence"] = frame["ticker"].map(lambda t: recs[t].confidence if t in recs else None)
    st.title("Live signals")
    st.dataframe(frame[["ticker", "last", "change_pct", "spark", "action", "confidence"]])
    bench_app.NAIVE_MS.append((time.perf_counter() - started) * 1000)


def _clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def rerun_live() -> list[dict[str, Any]]:
    from streamlit.testing.v1 import AppTest

    from ml.serving.scoring_worker import ScoringWorker
    from tests.app.support import open_page

    ScoringWorker().run_pass()  # the newest bars scored, as the scoring worker keeps them
    at = open_page("home")
    assert not at.exception and len(at.dataframe) == 1
    warm = statistics.median(_timed_reruns(at, RERUNS))
    uncached = statistics.median(_timed_reruns(at, RERUNS, before=_clear_caches))
    naive = AppTest.from_function(naive_live_page, default_timeout=120)
    NAIVE_MS.clear()
    for _ in range(RERUNS):
        naive.run()
        assert not naive.exception, naive.exception
    scoring = statistics.median(NAIVE_MS)
    base = (
        f"median server time of the live board over {RERUNS} warm reruns of the live page "
        "(stamp query, cached table, render; as the page reports it), 20 tickers, 6 sessions "
        "of 1-minute bars, trained LSTM+Transformer"
    )
    return [
        result(
            "app_rerun_live",
            warm,
            "ms",
            scoring,
            f"{base}; baseline: the page without st.cache_* and without the shared scorer, "
            "computing its signals each rerun (load models, read the bounded history, build "
            "features, run both models on 20 windows, read and draw the table)",
            higher_is_better=False,
        ),
        result(
            "app_rerun_live_cache_off",
            warm,
            "ms",
            uncached,
            f"{base}; baseline: the same page with every st.cache_data and st.cache_resource "
            "cleared before each rerun (queries and the serving versions' loading each rerun)",
            higher_is_better=False,
        ),
    ]


class Feeder:
    """Writes the next simulated minute every `every_s` seconds in a thread."""

    def __init__(self, feed: Any, every_s: float) -> None:
        self.feed, self.every_s = feed, every_s
        self.bars = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.feed.written >= len(self.feed.minutes):
                return
            _, n = self.feed.next_minute()
            self.bars += n

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _scorer_counts() -> tuple[int, int]:
    """Rows stored and model calls made by the scoring worker so far (its heartbeat)."""
    from db.reads import read_from_db
    from ml.serving.scoring_worker import WORKER

    frame = read_from_db("SELECT details FROM worker_heartbeats WHERE worker = :w", {"w": WORKER})
    if frame.empty:
        return 0, 0
    details = frame.iloc[0]["details"]
    rows = int(details["signals"]) + int(details.get("shadow", 0))
    return rows, int(details["invocations"])


def _open_sessions(browser: Any, url: str, n: int, lab: int = 0) -> list[Any]:
    """`n` sessions on the live page and `lab` on the model lab (its scoreboard open)."""
    pages = []
    for i in range(n + lab):
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(url if i < n else f"{url}/model_lab")
        pages.append(page)
    for page in pages[:n]:
        page.locator('[data-testid="stMetric"]', has_text="Newest signal").wait_for(timeout=120_000)
    for page in pages[n:]:
        page.get_by_role("heading", name="Live scoreboard").wait_for(timeout=120_000)
    return pages


def _refreshing(pages: list[Any]) -> int:
    """How many sessions redrew the live table within the last three refresh periods."""
    import pandas as pd

    now = pd.Timestamp.now(tz="UTC")
    fresh = 0
    for page in pages:
        text = page.get_by_text("Refreshed ").first.inner_text()
        stamp = pd.Timestamp(f"{now:%Y-%m-%d} {text.split()[1]}", tz="UTC")
        fresh += (now - stamp).total_seconds() < 3 * REFRESH_S
    return fresh


def _measure_sessions(ctx: dict[str, Any], browser: Any, n: int, lab: int = 0) -> dict[str, float]:
    from tests.app.support import ScoringWorkerProcess, StreamlitServer

    log = ctx["tmp"] / f"streamlit_sessions_{n}_{lab}.log"
    worker_log = ctx["tmp"] / f"scoring_worker_{n}_{lab}.log"
    with (
        ScoringWorkerProcess(worker_log, ctx["env"]),
        StreamlitServer(log, ctx["env"]) as server,
    ):
        proc = psutil.Process(server.proc.pid)
        pages = _open_sessions(browser, server.url, n, lab)
        time.sleep(2 * REFRESH_S)
        bars0, calls0 = _scorer_counts()
        cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
        with Feeder(ctx["feed"], FEED_EVERY_S) as feeder:
            time.sleep(MEASURE_S)
        time.sleep(2 * REFRESH_S)  # the last bar's scoring
        cpu1, t1 = sum(proc.cpu_times()[:2]), time.monotonic()
        bars1, calls1 = _scorer_counts()
        fresh = _refreshing(pages[:n])
        boards = sum(page.get_by_text("vs champion: Δ macro-F1").count() > 0 for page in pages[n:])
        for page in pages:
            page.context.close()
    return {
        "cpu_per_min": (cpu1 - cpu0) / ((t1 - t0) / 60),
        "new_bars": feeder.bars,
        "predictions": 2 * (bars1 - bars0),
        "tflite_calls": calls1 - calls0,
        "refreshing": fresh,
        "scoreboards": boards,
    }


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    from tests.app.support import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sessions_20(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    with chromium() as browser:
        one = _measure_sessions(ctx, browser, 1)
        many = _measure_sessions(ctx, browser, 10, lab=10)
    cond = (
        f"Streamlit server CPU over {MEASURE_S:.0f} s (+{2 * REFRESH_S:.0f} s to score the last "
        f"bar; the scoring worker runs beside it in its own process and is not counted), 20 "
        f"sessions auto-refreshing every {REFRESH_S:g} s: 10 on the live page, 10 on "
        f"the model lab with the live scoreboard open; champion + a challenger in shadow; a new "
        f"minute of 20 bars every {FEED_EVERY_S:g} s; {many['refreshing']}/10 live sessions seen "
        f"refreshing and {many['scoreboards']}/10 lab sessions showing the scoreboard's figures "
        f"at the end; baseline: 1 live session ({one['cpu_per_min']:.2f} CPU s/min)"
    )
    pred_cond = (
        f"20 sessions: {many['new_bars']} new bars, {many['predictions']} predictions "
        f"(2 models x 2 versions per scored bar), {many['tflite_calls']} TFLite calls "
        "(batches of 20); baseline: 4 x new bars; ratio 1.0 = each bar scored once per version"
    )
    return [
        result(
            "app_sessions_20",
            many["cpu_per_min"],
            "CPU s/min",
            one["cpu_per_min"],
            cond,
            higher_is_better=False,
        ),
        result(
            "app_sessions_20_predictions",
            many["predictions"],
            "predictions",
            4 * many["new_bars"],
            pred_cond,
            higher_is_better=False,
        ),
    ]


def soak(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    from tests.app.support import ScoringWorkerProcess, StreamlitServer

    samples: list[tuple[float, float]] = []
    with (
        chromium() as browser,
        ScoringWorkerProcess(ctx["tmp"] / "soak_scoring_worker.log", ctx["env"]),
        StreamlitServer(ctx["tmp"] / "soak.log", ctx["env"]) as server,
    ):
        proc = psutil.Process(server.proc.pid)
        page = _open_sessions(browser, server.url, 1)[0]
        time.sleep(6 * REFRESH_S)  # warm: models loaded, caches filled
        start = time.monotonic()
        with Feeder(ctx["feed"], FEED_EVERY_S) as feeder:
            while time.monotonic() - start < SOAK_S:
                samples.append((time.monotonic() - start, proc.memory_info().rss / 2**20))
                time.sleep(min(30.0, SOAK_S / 20))
        samples.append((time.monotonic() - start, proc.memory_info().rss / 2**20))
        refreshed = _refreshing([page])
    first, last = samples[0][1], samples[-1][1]
    peak = max(rss for _, rss in samples)
    cond = (
        f"live page open in headless chromium for {SOAK_S / 60:.1f} min, refresh every "
        f"{REFRESH_S:g} s, {feeder.bars} new bars; RSS start {first:.0f} MB, end {last:.0f} MB, "
        f"peak {peak:.0f} MB, growth {100 * (last / first - 1):+.1f}% (target < 20%); "
        f"page still refreshing: {bool(refreshed)}; baseline: RSS at the start"
    )
    return [result("app_soak_rss_mb", last, "MB", first, cond, higher_is_better=False)]


def run() -> list[dict[str, Any]]:
    with app_environment() as ctx:
        out = rerun_live()
        from tests.app.conftest import clear_streamlit_caches

        clear_streamlit_caches()
        out += sessions_20(ctx)
        out += soak(ctx)
    return out
