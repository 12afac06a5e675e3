"""The backtest: `backtest_20x25`.

One trained version (quick training on the 6 sessions before the range) over 20 tickers x 25
simulated sessions with news, the whole run of `ml.lifecycle.backtest.run_backtest`: reading the
bars, the live features advanced through the range, the version's windows and both TFLite models in
padded batches, the dual-model rule, the three baselines fitted on the sessions before the range,
the execution rule and every figure beside buy-and-hold (target <= 15 s on 2 cores).

Baseline, in the same run: the same whole run with the bars scored one call per bar (each bar's
window built alone, each model called on it alone, the recommendation built per bar, as a loop of
the live scorer's step would): the batched scoring's time in the run replaced by the per-bar
scoring's, timed on the same feature state over the first `NAIVE_SESSIONS` sessions' bars and
scaled by bars.

    .venv/bin/python -m benchmarks.run backtest
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_features import TICKERS, TRAINING_ENV, news_rows, simulated_inputs
from benchmarks.common import bench_database, patched_env, result

TRAIN_SESSIONS = 6
SESSIONS = 25
NAIVE_SESSIONS = 2
THRESHOLDS = {"BUY_THRESHOLD": "0.4", "SELL_THRESHOLD": "0.4"}  # so the quick version trades


def _per_bar(models: Any, features: Any, targets: dict[str, np.ndarray], settings: Any) -> int:
    """Score `targets` one bar at a time; returns the bars scored."""
    from ml.models.predict import to_prediction
    from ml.serving.generate_recommendation import get_trade_recommendation
    from ml.serving.live_scoring import version_windows

    scored = 0
    for ticker, stamps in targets.items():
        for ns in stamps:
            keys, X = version_windows(models, features, {ticker: np.array([ns])})
            if not len(keys):
                continue
            lstm, transformer = models.lstm.predict(X), models.transformer.predict(X)
            get_trade_recommendation(
                to_prediction(lstm[0]),
                to_prediction(transformer[0]),
                ticker=ticker,
                bar_ts=keys["ts"].iloc[0],
                model_version=models.version,
                settings=settings,
            )
            scored += 1
    return scored


def _scoring_alone(request: Any, settings: Any) -> tuple[float, float, int, int]:
    """The batched scoring of the run's bars (windows, models, rule) and the per-bar scoring of
    the first sessions' bars, on one feature state: seconds of each and bars of each."""
    from db.bars import read_bars, read_last_bars
    from ml.features.feature_engineering import required_history_bars
    from ml.features.labels import session_codes
    from ml.models.model_loader import load_version
    from ml.serving.range_scoring import features_over, score_range

    models = load_version(request.versions[0], settings)
    tickers = list(request.tickers)
    bars = read_bars(tickers, request.start, request.end)
    warm = read_last_bars(
        tickers, required_history_bars(models.metadata.window_length), request.start
    )
    features = features_over(tickers, models.metadata.feature_params, pd.concat([warm, bars]))
    targets = {
        str(t): pd.DatetimeIndex(g["ts"]).as_unit("ns").asi8 for t, g in bars.groupby("ticker")
    }
    t0 = time.perf_counter()
    batched = score_range(models, features, targets, settings)
    batched_s = time.perf_counter() - t0
    days = np.unique(session_codes(bars["ts"]))[:NAIVE_SESSIONS]
    sample = {
        t: v[np.isin(session_codes(pd.DatetimeIndex(v, tz="UTC")), days)]
        for t, v in targets.items()
    }
    t0 = time.perf_counter()
    naive_bars = _per_bar(models, features, sample, settings)
    naive_s = time.perf_counter() - t0
    return batched_s, naive_s, len(batched.keys), naive_bars


def run() -> list[dict[str, Any]]:
    from config.settings import DEFAULT_UNIVERSE, get_settings
    from db.writes import write_to_db
    from ml.lifecycle.backtest import BacktestRequest, Costs, run_backtest
    from ml.training.train_model import train

    universe = list(DEFAULT_UNIVERSE)[:TICKERS]
    bars, news = simulated_inputs(universe, TRAIN_SESSIONS + SESSIONS)
    days = pd.DatetimeIndex(bars["ts"]).normalize().unique().sort_values()
    start = days[TRAIN_SESSIONS]
    with bench_database("stockpulse_bench_backtest"), tempfile.TemporaryDirectory() as tmp:
        env = {
            "MODELS_DIR": f"{tmp}/models",
            "MODEL_CONFIG_PATH": f"{tmp}/model_config.json",
            "DATA_DIR": f"{tmp}/var",
            "UNIVERSE": ",".join(universe),
            **TRAINING_ENV,
            **THRESHOLDS,
        }
        with patched_env(dict(env)):
            write_to_db(bars.assign(source="simulated"), table="bars_1m")
            write_to_db(news_rows(news), table="news_articles")
            version = train(end=start, quick=True, epochs=1).name
            settings = get_settings()
            request = BacktestRequest(
                versions=(version,),
                tickers=tuple(universe),
                start=start,
                end=days[-1] + pd.Timedelta(days=1),
                costs=Costs(cost_bps=1.0, slippage="fixed", slippage_bps=1.0),
            )
            t0 = time.perf_counter()
            out = run_backtest(request, settings)
            whole_s = time.perf_counter() - t0
            batched_s, naive_s, n_bars, naive_bars = _scoring_alone(request, settings)
    naive_whole = whole_s - batched_s + naive_s * n_bars / naive_bars
    total = out.summary.set_index(["strategy", "ticker"]).loc[(version, "ALL")]
    trades_all = len(out.trades)
    print(
        f"backtest_20x25: {whole_s:.1f} s for {n_bars:,} bars (scoring {batched_s:.1f} s "
        f"batched vs {naive_s:.1f} s per bar for {naive_bars:,} bars); {int(total['trades'])} "
        f"trades, return {total['total_return']:+.2%}"
    )
    cond = (
        f"one version (quick-trained on the {TRAIN_SESSIONS} sessions before), {TICKERS} tickers "
        f"x {SESSIONS} simulated sessions with news ({n_bars:,} bars scored; BUY / SELL "
        "thresholds 0.4 so that the quick-trained version trades), the whole "
        "run_backtest: bars read, live features through the range, windows and both TFLite "
        "models in padded batches, dual-model rule, 3 baselines fitted on the 5 sessions "
        f"before, execution and figures beside buy-and-hold; {int(total['trades'])} trades of "
        f"the version, {trades_all:,} of all strategies; "
        f"the batched scoring inside it {batched_s:.1f} s; target <= 15 s; baseline: the same "
        f"run with the bars scored one call per bar ({naive_s:.1f} s for the {naive_bars:,} bars "
        f"of the first {NAIVE_SESSIONS} sessions, scaled by bars)"
    )
    return [result("backtest_20x25", whole_s, "s", naive_whole, cond, higher_is_better=False)]
