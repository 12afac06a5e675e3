"""Feature pipeline speed on 20 tickers x 25 simulated sessions of 1-minute bars.

- features_full: bars/s of `create_features` over the full history (indicators, session time,
  as-of news), the batch path of training.
- features_incremental: ms to build the scaled input windows of all 20 tickers when a new bar
  arrives, through `latest_windows` on the bounded recent history (the live path); baseline:
  recomputing the features of the full history and taking the newest windows. The two results
  are compared (max |diff|) in the conditions.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import result, timed

TICKERS = 20
SESSIONS = 25
NEW_BARS = 15


def simulated_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    from config.market_calendar import sessions_between
    from config.settings import DEFAULT_UNIVERSE
    from workers.sources.simulated import SimulatedMarket

    market = SimulatedMarket(42, planted_signal=0.0)
    days = sessions_between("2026-01-02", "2026-03-31")[:SESSIONS]
    tickers = list(DEFAULT_UNIVERSE)[:TICKERS]
    start = pd.Timestamp(days[0], tz="UTC")
    end = pd.Timestamp(days[-1], tz="UTC") + pd.Timedelta(days=1)
    bars = market.history(tickers, start, end)
    news = pd.concat([market.news_events(t, d) for t in tickers for d in days], ignore_index=True)
    news["sentiment"] = 0.6 * news["sign"]
    news["available_at"] = news["published_at"] + pd.Timedelta(minutes=5)
    return bars, news


def _metadata(features: pd.DataFrame) -> dict[str, Any]:
    from ml.feature_engineering import FEATURE_COLUMNS, FeatureParams
    from ml.windows import FeatureScaler

    return {
        "features": list(FEATURE_COLUMNS),
        "window_length": 32,
        "scaler": FeatureScaler.fit(features, list(FEATURE_COLUMNS)).to_dict(),
        "feature_params": FeatureParams().to_dict(),
    }


def _full_recompute(bars: pd.DataFrame, news: pd.DataFrame, meta: dict[str, Any]) -> np.ndarray:
    from ml.feature_engineering import FeatureParams, create_features
    from ml.windows import FeatureScaler, gather_windows

    feats = create_features(bars, news, params=FeatureParams.from_dict(meta["feature_params"]))
    last = np.flatnonzero(
        np.r_[feats["ticker"].to_numpy()[1:] != feats["ticker"].to_numpy()[:-1], True]
    )
    scaled = FeatureScaler.from_dict(meta["scaler"]).transform(feats[meta["features"]])
    return gather_windows(scaled, last, meta["window_length"])


def run() -> list[dict[str, Any]]:
    from ml.feature_engineering import create_features, latest_windows, required_history_bars

    bars, news = simulated_inputs()
    create_features(bars.head(5000), news)  # warm imports and caches
    runs = [timed(lambda: create_features(bars, news)) for _ in range(3)]
    full_s = statistics.median(r[0] for r in runs)
    meta = _metadata(runs[0][1])
    need = required_history_bars(meta)
    stamps = np.sort(bars["ts"].unique())[-NEW_BARS:]
    live_ms, batch_ms, diffs = [], [], []
    for ts in stamps:  # each step: a new bar of every ticker has arrived
        known = bars[bars["ts"] <= ts]
        recent = known.groupby("ticker").tail(need)
        t0 = time.perf_counter()
        _, _, live = latest_windows(recent, news, None, meta)
        live_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        batch = _full_recompute(known, news, meta)
        batch_ms.append((time.perf_counter() - t0) * 1000)
        diffs.append(float(np.abs(live - batch).max()))
    live, batch = statistics.median(live_ms), statistics.median(batch_ms)
    n = len(bars)
    print(
        f"features_full {n / full_s:,.0f} bars/s ({n:,} bars in {full_s:.2f} s) | incremental "
        f"{live:.1f} ms vs full recomputation {batch:.1f} ms, max |diff| {max(diffs):.1e}"
    )
    cond = f"{TICKERS} tickers x {SESSIONS} simulated sessions ({n:,} bars), with news"
    return [
        result("features_full", n / full_s, "bars/s", None, cond + "; median of 3 runs"),
        result(
            "features_incremental",
            live,
            "ms",
            batch,
            f"{cond}; scaled 32-bar windows of all {TICKERS} tickers after a new bar, from the "
            f"last {need} bars per ticker; median of {NEW_BARS} new bars; max |diff| vs the "
            f"batch result {max(diffs):.1e}; baseline: full recomputation",
            higher_is_better=False,
        ),
    ]
