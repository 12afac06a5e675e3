"""The feature pipeline and the live path, through the code that serves.

- features_full: bars/s of `create_features` over 20 tickers x 25 simulated sessions (the batch
  path of training).
- features_live: ms from a new bar of 20 tickers stored in the database to the scaled input
  windows of the serving version, through `ml.serving.live_scoring.Scorer` (read the new bars,
  advance the incremental feature state, build the windows of the bars not scored yet); baseline:
  the same database read of the bounded history (`required_history_bars` per ticker) with the
  features recomputed on it by `create_features`, then scaled and windowed. The two results
  are compared (max |diff|) in the conditions.
- The whole path from a stored bar to its stored signals, through the scoring worker, is
  `bench_serving` (bar_to_signal_20, bar_to_signal_500).

    .venv/bin/python -m benchmarks.run features
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import bench_database, patched_env, result, timed

TICKERS = 20
SESSIONS = 25
NEW_BARS = 15
WIDE = 500  # tickers of the live_500 universe
WIDE_NEW_BARS = 8
POLL_S = 1.0
TRAINING_ENV = {"TRAIN_MAX_WINDOWS": "3000", "TRAIN_EPOCHS": "1", "TRAIN_LOOKBACK_DAYS": "30"}


def simulated_inputs(
    tickers: list[str], sessions: int, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from config.market_calendar import sessions_between
    from workers.sources.simulated import SimulatedMarket

    market = SimulatedMarket(seed, planted_signal=0.0, missing_rate=0.0)
    days = sessions_between("2026-01-02", "2026-03-31")[:sessions]
    start = pd.Timestamp(days[0], tz="UTC")
    end = pd.Timestamp(days[-1], tz="UTC") + pd.Timedelta(days=1)
    bars = market.history(tickers, start, end)
    news = pd.concat([market.news_events(t, d) for t in tickers for d in days], ignore_index=True)
    news["sentiment"] = 0.6 * news["sign"]
    news["available_at"] = news["published_at"] + pd.Timedelta(minutes=5)
    return bars, news


def news_rows(news: pd.DataFrame) -> pd.DataFrame:
    """Simulated scored news as `news_articles` rows."""
    return pd.DataFrame(
        {
            "article_key": [f"sim-{i}" for i in range(len(news))],
            "ticker": news["ticker"],
            "published_at": news["published_at"],
            "source": "simulated",
            "title": news["headline"],
            "url": [f"https://news.example/{i}" for i in range(len(news))],
            "sentiment": news["sentiment"],
            "sentiment_model": "simulated",
            "available_at": news["available_at"],
        }
    )


@contextmanager
def serving_environment(universe: list[str], history: pd.DataFrame) -> Iterator[Any]:
    """A bench database with `history` stored, one quick-trained champion (trained on the first
    20 tickers), and `universe` as the settings' universe. Yields the ModelManager."""
    from config.settings import get_settings
    from db.writes import write_to_db
    from ml.models.model_loader import ModelManager
    from ml.models.registry import promote
    from ml.training.train_model import train

    with bench_database("stockpulse_bench_live"), tempfile.TemporaryDirectory() as tmp:
        env = {
            "MODELS_DIR": f"{tmp}/models",
            "MODEL_CONFIG_PATH": f"{tmp}/model_config.json",
            "DATA_DIR": f"{tmp}/var",
            "UNIVERSE": ",".join(universe[:TICKERS]),
            **TRAINING_ENV,
        }
        with patched_env(dict(env)):
            write_to_db(history.assign(source="simulated"), table="bars_1m")
            end = history["ts"].max() - pd.Timedelta(hours=2)
            version = train(end=end, quick=True, epochs=1).name
            promote(version, by="cli", reason="benchmark")
            with patched_env({"UNIVERSE": ",".join(universe)}):
                yield ModelManager(get_settings())


def _recomputed_windows(models: Any, need: int) -> tuple[np.ndarray, np.ndarray]:
    """The naive live path: read the bounded history, recompute every feature, window it.
    Returns each window's ticker and the windows."""
    from config.settings import get_settings
    from db.bars import read_last_bars
    from db.context import macro_for_features, news_for_features
    from ml.features.feature_engineering import MACRO_SERIES, create_features
    from ml.features.windows import gather_windows

    meta = models.metadata
    bars = read_last_bars(get_settings().universe, need, pd.Timestamp("2262-01-01", tz="UTC"))
    start, end = bars["ts"].min(), bars["ts"].max() + pd.Timedelta(minutes=1)
    lookback = pd.Timedelta(minutes=meta.feature_params.news_lookback_min)
    news = news_for_features(get_settings().universe, start - lookback, end)
    macro = macro_for_features(MACRO_SERIES, start, end)
    feats = create_features(bars, news, macro, params=meta.feature_params)
    last = np.flatnonzero(
        np.r_[feats["ticker"].to_numpy()[1:] != feats["ticker"].to_numpy()[:-1], True]
    )
    scaled = meta.feature_scaler.transform(feats[meta.features])
    return feats["ticker"].to_numpy()[last], gather_windows(scaled, last, meta.window_length)


def features_live() -> dict[str, Any]:
    from config.settings import DEFAULT_UNIVERSE
    from db.bars import adjustment_stamp
    from db.signals import last_scored
    from db.writes import write_to_db
    from ml.features.feature_engineering import required_history_bars
    from ml.serving.live_scoring import Scorer

    universe = list(DEFAULT_UNIVERSE)[:TICKERS]
    bars, news = simulated_inputs(universe, 8)
    stamps = np.sort(bars["ts"].unique())
    held = stamps[-NEW_BARS:]
    with serving_environment(universe, bars[bars["ts"] < held[0]]) as manager:
        write_to_db(news_rows(news), table="news_articles")
        serving = manager.serving()
        models = serving.champion
        assert models is not None and not last_scored([models.version], universe)[models.version]
        scorer = Scorer()
        params = models.metadata.feature_params
        scorer.features(params, serving, adjustment_stamp())  # the state of a running server
        need = required_history_bars(models.metadata.window_length)
        live_ms, naive_ms, diffs = [], [], []
        for ts in held:  # each step: a new bar of every ticker has been stored
            write_to_db(bars[bars["ts"] == ts].assign(source="simulated"), table="bars_1m")
            t0 = time.perf_counter()
            features = scorer.features(params, serving, adjustment_stamp())
            keys, live = scorer.inputs(models, features)
            live_ms.append((time.perf_counter() - t0) * 1000)
            assert len(keys) == TICKERS and (keys["ts"] == ts).all()
            t0 = time.perf_counter()
            tickers, naive = _recomputed_windows(models, need)
            naive_ms.append((time.perf_counter() - t0) * 1000)
            # the same ticker's windows compared (the scorer keeps the universe's order)
            position = {t: i for i, t in enumerate(tickers)}
            aligned = naive[[position[t] for t in keys["ticker"]]]
            diffs.append(float(np.abs(live - aligned).max()))
    live_m, naive_m = statistics.median(live_ms), statistics.median(naive_ms)
    print(
        f"features_live {live_m:.1f} ms vs recomputation {naive_m:.1f} ms "
        f"({naive_m / live_m:.1f}x), max |diff| {max(diffs):.1e}"
    )
    return result(
        "features_live",
        live_m,
        "ms",
        naive_m,
        f"{TICKERS} tickers with news, trained champion (window {models.metadata.window_length}); "
        f"a new bar of every ticker stored, then the serving scorer reads it, advances the "
        f"incremental features and builds the scaled windows; median of {NEW_BARS} new bars; "
        f"max |diff| vs the baseline {max(diffs):.1e}; baseline: read the last {need} bars per "
        "ticker, recompute the features (create_features), scale, window",
        higher_is_better=False,
    )


def run() -> list[dict[str, Any]]:
    from config.settings import DEFAULT_UNIVERSE
    from ml.features.feature_engineering import create_features

    bars, news = simulated_inputs(list(DEFAULT_UNIVERSE)[:TICKERS], SESSIONS)
    create_features(bars.head(5000), news)  # warm imports and caches
    runs = [timed(lambda: create_features(bars, news)) for _ in range(3)]
    full_s = statistics.median(r[0] for r in runs)
    n = len(bars)
    print(f"features_full {n / full_s:,.0f} bars/s ({n:,} bars in {full_s:.2f} s)")
    cond = f"{TICKERS} tickers x {SESSIONS} simulated sessions ({n:,} bars), with news"
    return [
        result("features_full", n / full_s, "bars/s", None, cond + "; median of 3 runs"),
        features_live(),
    ]
