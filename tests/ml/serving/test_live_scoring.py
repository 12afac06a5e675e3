from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from config.settings import get_settings
from db.reads import read_from_db
from db.writes import write_to_db
from ml.models.model_loader import load_active_models
from ml.models.registry import promote
from workers.sources.simulated import SimulatedMarket

from ..conftest import build_feature_version

TICKERS = ["AAPL", "MSFT", "KO"]


def sim_bars() -> pd.DataFrame:
    m = SimulatedMarket(seed=3)
    return m.history(
        TICKERS, pd.Timestamp("2026-11-02", tz="UTC"), pd.Timestamp("2026-11-05", tz="UTC")
    )


def setup_models(model_env, bars):
    version = "20261104T000000Z"
    build_feature_version(get_settings().models_dir / version, bars)
    promote(version, by="cli", reason="test")
    return load_active_models()


def signal_count() -> int:
    return int(read_from_db("SELECT count(*) AS n FROM signals")["n"][0])


def test_each_new_bar_is_scored_exactly_once(model_env, clean_tables, monkeypatch):
    from ml.serving.live_scoring import score_new_bars

    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    bars = sim_bars()
    cut = bars["ts"].max() - pd.Timedelta(minutes=5)
    write_to_db(bars[bars["ts"] <= cut].assign(source="test"), table="bars_1m")
    models = setup_models(model_env, bars)

    first = score_new_bars(models)
    assert sorted(r.ticker for r in first.recommendations) == sorted(TICKERS)  # newest only
    assert all(r.bar_ts == cut for r in first.recommendations)
    assert first.invocations == 2  # 3 windows in one padded batch of 4, two models
    assert score_new_bars(models).invocations == 0  # nothing new: no model call

    new = bars[(bars["ts"] > cut)]
    write_to_db(new.assign(source="test"), table="bars_1m")
    second = score_new_bars(models)
    assert len(second.recommendations) == len(new)
    assert signal_count() == 3 + len(new)
    stored = read_from_db("SELECT * FROM signals ORDER BY ticker, bar_ts")
    assert set(stored["action"]) <= {"BUY", "SELL", "HOLD"}
    assert stored.groupby(["ticker", "bar_ts"]).size().max() == 1


def test_concurrent_scorers_never_duplicate(model_env, clean_tables, monkeypatch):
    from ml.serving.live_scoring import score_new_bars

    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    bars = sim_bars()
    cut = bars["ts"].max() - pd.Timedelta(minutes=10)
    write_to_db(bars[bars["ts"] <= cut].assign(source="test"), table="bars_1m")
    models = setup_models(model_env, bars)
    score_new_bars(models)
    write_to_db(bars[bars["ts"] > cut].assign(source="test"), table="bars_1m")
    results = []

    def run() -> None:
        results.append(score_new_bars(models))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    added = sum(len(r.recommendations) for r in results)
    assert added == len(bars[bars["ts"] > cut])
    stored = read_from_db("SELECT ticker, bar_ts FROM signals")
    assert not stored.duplicated().any()


def test_a_ticker_the_data_guard_holds_serves_hold_with_the_reason(
    model_env, clean_tables, monkeypatch
):
    from db.connections import connect
    from db.quality import hold_tickers
    from db.quality_decisions import decide_hold
    from ml.serving.live_scoring import score_new_bars

    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    bars = sim_bars()
    cut = bars["ts"].max() - pd.Timedelta(minutes=5)
    write_to_db(bars[bars["ts"] <= cut].assign(source="test"), table="bars_1m")
    models = setup_models(model_env, bars)
    score_new_bars(models)
    onset = cut + pd.Timedelta(minutes=2)
    hold = pd.DataFrame(
        {
            "ticker": ["KO"],
            "onset_ts": [onset],
            "reason": ["level_shift"],
            "detail": ["the close level moved 0.5x; the ledger has nothing"],
            "source": ["test"],
        }
    )
    with connect() as conn:
        assert hold_tickers(conn, hold) == 1
    write_to_db(bars[bars["ts"] > cut].assign(source="test"), table="bars_1m")
    score_new_bars(models)
    ko = read_from_db(
        "SELECT bar_ts, action, reason FROM signals WHERE ticker = 'KO' AND bar_ts > :cut "
        "ORDER BY bar_ts",
        {"cut": cut.to_pydatetime()},
    )
    ko["bar_ts"] = pd.to_datetime(ko["bar_ts"], utc=True)
    held = ko[ko["bar_ts"] >= onset]
    assert len(held) == 4 and set(held["action"]) == {"HOLD"}
    assert all("held by the data-quality guard" in r and "0.5x" in r for r in held["reason"])
    assert not ko.loc[ko["bar_ts"] < onset, "reason"].str.contains("data-quality").any()
    others = read_from_db("SELECT reason FROM signals WHERE ticker <> 'KO'")
    assert not others["reason"].str.contains("data-quality").any()

    hold_id = int(read_from_db("SELECT id FROM ticker_holds")["id"][0])
    decide_hold(hold_id, "accepted", "analyst:ann", "a real 2:1 split the feed missed")
    write_to_db(  # a later bar of KO is scored by the models again
        bars[bars["ticker"] == "KO"]
        .tail(1)
        .assign(ts=bars["ts"].max() + pd.Timedelta(minutes=1))
        .assign(source="test"),
        table="bars_1m",
    )
    score_new_bars(models)
    last = read_from_db(
        "SELECT reason FROM signals WHERE ticker = 'KO' ORDER BY bar_ts DESC LIMIT 1"
    )
    assert "data-quality" not in last["reason"][0]


# --------------------------------------------------------------------------- ranges of bars
ACTIONS = {"BUY": 1, "SELL": -1, "HOLD": 0}


def per_bar_signals(models, bars: pd.DataFrame, scored_from: pd.Timestamp, settings):
    """The scorer's step, a minute at a time: the feature state advanced by the minute's bars,
    then each of that minute's bars from `scored_from` on scored alone (its window, each model
    called on it, the recommendation). Returns (ticker, ts) -> (action, lstm, transformer)."""
    from ml.features.live_features import LiveFeatures
    from ml.models.predict import to_prediction
    from ml.serving.generate_recommendation import get_trade_recommendation
    from ml.serving.live_scoring import feature_context, version_windows

    tickers = sorted(bars["ticker"].unique())
    features = LiveFeatures(tickers, models.metadata.feature_params, capacity=len(bars))
    feature_context(features, tickers, bars["ts"].min(), bars["ts"].max() + pd.Timedelta("1min"))
    out = {}
    for ts, minute in bars.sort_values("ts").groupby("ts"):
        features.update(minute)
        if ts < scored_from:
            continue
        for ticker in minute["ticker"]:
            keys, X = version_windows(models, features, {ticker: [ts]})
            if not len(keys):
                continue
            lstm, transformer = models.lstm.predict(X)[0], models.transformer.predict(X)[0]
            rec = get_trade_recommendation(
                to_prediction(lstm),
                to_prediction(transformer),
                ticker=ticker,
                bar_ts=ts,
                model_version=models.version,
                settings=settings,
            )
            out[(ticker, ts)] = (ACTIONS[rec.action], lstm, transformer)
    return out


@pytest.mark.no_db
def test_feature_rows_do_not_depend_on_how_bars_are_grouped() -> None:
    """A session at a time (the backtest), minute by minute (the scorer) and in uneven chunks
    mixing tickers, with gaps: the same rows and the same state, bit for bit."""
    from ml.features.feature_engineering import FeatureParams
    from ml.features.live_features import LiveFeatures

    bars = sim_bars()
    bars = bars[np.random.default_rng(5).random(len(bars)) > 0.05].sort_values("ts")
    cuts = np.r_[0, np.sort(np.random.default_rng(6).choice(len(bars), 25, replace=False))]
    groupings = {
        "at once": [bars],
        "by session": [g for _, g in bars.groupby(bars["ts"].dt.date)],
        "by minute": [g for _, g in bars.groupby("ts")],
        "in chunks": [bars.iloc[a:b] for a, b in zip(cuts, [*cuts[1:], len(bars)], strict=True)],
    }
    frames, states = {}, {}
    for name, parts in groupings.items():
        live = LiveFeatures(TICKERS, FeatureParams(), capacity=len(bars))
        frames[name] = pd.concat([live.update(p).frame() for p in parts]).sort_values(
            ["ticker", "ts"], ignore_index=True
        )
        states[name] = live.state
    reference = frames.pop("at once")
    assert len(reference) == len(bars)
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame, reference, check_exact=True, obj=name)
        for attr in ("k", "closes", "rsi_pos", "fast", "signal", "atr", "cum_pv", "last"):
            np.testing.assert_array_equal(
                getattr(states[name], attr), getattr(states["at once"], attr), err_msg=attr
            )


def test_a_range_scored_in_batches_gives_the_per_bar_signals(
    model_env, clean_tables, monkeypatch
) -> None:
    """`features_over` + `score_range` (the backtest's path: a session of features at a time,
    windows and both models in chunks of padded batches, the vectorised rule) give every bar
    the scorer's signal: the same bars, actions and probabilities as scoring each bar alone
    after a minute-by-minute feature update."""
    from ml.models.model_loader import load_version
    from ml.serving.range_scoring import features_over, score_range

    monkeypatch.setenv("BUY_THRESHOLD", "0.34")  # so the small random models trade
    monkeypatch.setenv("SELL_THRESHOLD", "0.34")
    get_settings.cache_clear()
    settings = get_settings()
    bars = sim_bars()
    build_feature_version(settings.models_dir / "20261104T000000Z", bars, seed=4)
    models = load_version("20261104T000000Z", settings)
    scored_from = pd.Timestamp("2026-11-04T14:30Z")  # the last session
    expected = per_bar_signals(models, bars, scored_from, settings)

    state = features_over(TICKERS, models.metadata.feature_params, bars)
    fresh = bars[bars["ts"] >= scored_from]
    targets = {t: pd.DatetimeIndex(g["ts"]).as_unit("ns").asi8 for t, g in fresh.groupby("ticker")}
    got = score_range(models, state, targets, settings, chunk=100)

    keys = list(zip(got.keys["ticker"], got.keys["ts"], strict=True))
    assert sorted(keys) == sorted(expected) and len(keys) == len(fresh)
    actions = np.array([expected[k][0] for k in keys])
    np.testing.assert_array_equal(got.action, actions)
    assert {-1, 0, 1} <= set(actions.tolist())  # buys, sells and holds to compare
    np.testing.assert_allclose(got.lstm, [expected[k][1] for k in keys], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.transformer, [expected[k][2] for k in keys], rtol=0, atol=1e-6)
