"""Champion vs challenger, live: shadow scoring once per bar and version, realised outcomes that
equal the offline labels, and a scoreboard that equals an offline computation."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from config.settings import get_settings
from core.timeutil import iso
from db.reads import read_from_db
from db.writes import write_to_db
from ml.features.labels import LabelParams, triple_barrier_labels
from ml.models.registry import promote
from workers.sources.simulated import SimulatedMarket

from ..conftest import build_feature_version

TICKERS = ["AAPL", "MSFT", "KO"]
ROOT = Path(__file__).resolve().parents[3]
CHAMPION, CHALLENGER = "20261104T000000Z", "20261105T000000Z"


def sim_bars() -> pd.DataFrame:
    market = SimulatedMarket(seed=4, missing_rate=0.0)
    return market.history(
        TICKERS, pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-06", tz="UTC")
    )


@pytest.fixture
def universe(model_env, clean_tables, monkeypatch):
    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_challenger_trained_mid_session_shadow_scores_every_later_bar_once(universe, tmp_path):
    bars = sim_bars()
    minutes = np.sort(bars["ts"].unique())
    start = len(minutes) - 60
    write_to_db(bars[bars["ts"] < minutes[start]].assign(source="test"), table="bars_1m")
    models_dir = get_settings().models_dir
    build_feature_version(models_dir / CHAMPION, bars, seed=1)
    promote(CHAMPION, by="cli", reason="test")

    stop, reports = tmp_path / "stop", [tmp_path / "a.txt", tmp_path / "b.txt"]
    racers = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "tests/ml/serving/shadow_worker.py"), str(stop), str(r)],
            cwd=ROOT,
        )
        for r in reports
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() and r.read_text() for r in reports):  # both have made a pass
            assert time.monotonic() < deadline, "the scoring processes never started"
            assert all(p.poll() is None for p in racers), "a scoring process exited"
            time.sleep(0.1)
        for i, ts in enumerate(minutes[start:]):
            if i == 20:  # training finished mid-session: the challenger appears
                # as training publishes a version: built aside, then moved into place whole
                build_feature_version(tmp_path / CHALLENGER, bars, seed=2)
                (tmp_path / CHALLENGER).rename(models_dir / CHALLENGER)
                appeared = pd.Timestamp(ts)
            write_to_db(bars[bars["ts"] == ts].assign(source="test"), table="bars_1m")
            time.sleep(0.15)
        stop.touch()
        codes = [p.wait(timeout=180) for p in racers]
    finally:
        for p in racers:
            p.kill() if p.poll() is None else None
    assert codes == [0, 0]
    passes = [line.split() for r in reports for line in r.read_text().splitlines()]
    assert sum(int(p[2]) for p in passes) > 0, "the two processes never raced for the lock"

    stored = read_from_db("SELECT ticker, bar_ts, model_version, role, provisional FROM signals")
    stored["bar_ts"] = pd.to_datetime(stored["bar_ts"], utc=True)
    assert not stored.duplicated(["ticker", "bar_ts", "model_version"]).any()
    champ = stored[stored["model_version"] == CHAMPION]
    shadow = stored[stored["model_version"] == CHALLENGER]
    assert set(champ["role"]) == {"champion"} and not champ["provisional"].any()
    assert set(shadow["role"]) == {"shadow"}
    first_seen = shadow["bar_ts"].min()
    assert appeared - pd.Timedelta(minutes=3) <= first_seen <= appeared + pd.Timedelta(minutes=3)
    later = bars[bars["ts"] >= first_seen][["ticker", "ts"]].rename(columns={"ts": "bar_ts"})
    got = shadow[["ticker", "bar_ts"]].sort_values(["ticker", "bar_ts"]).reset_index(drop=True)
    want = later.sort_values(["ticker", "bar_ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)  # every later bar, once
    served = champ[champ["bar_ts"] >= minutes[start]]
    assert len(served) == len(bars[bars["ts"] >= minutes[start]])  # the champion misses none


def test_outcomes_equal_the_offline_labels_and_never_use_a_bar_after_the_horizon(universe):
    from ml.models.model_loader import ModelManager
    from ml.serving.live_scoring import Scorer
    from ml.serving.outcomes import label_key, realised

    bars = sim_bars()
    models_dir = get_settings().models_dir
    build_feature_version(models_dir / CHAMPION, bars, seed=1)
    promote(CHAMPION, by="cli", reason="test")
    params = LabelParams(1.5, 1.5, 15, 30)  # what build_feature_version records
    minutes = np.sort(bars["ts"].unique())
    write_to_db(bars[bars["ts"] <= minutes[-90]].assign(source="test"), table="bars_1m")
    scorer, manager = Scorer(max_backlog=100), ModelManager()
    scorer.score(manager.serving())
    for ts in minutes[-89:]:
        write_to_db(bars[bars["ts"] == ts].assign(source="test"), table="bars_1m")
        if ts in minutes[-89::10]:
            scorer.score(manager.serving())
    scorer.score(manager.serving())

    stored = read_from_db("SELECT * FROM outcomes")
    stored["bar_ts"] = pd.to_datetime(stored["bar_ts"], utc=True)
    assert set(stored["label_key"]) == {label_key(params)}
    offline = triple_barrier_labels(bars, params).rename(columns={"ts": "bar_ts"})
    both = stored.merge(offline, on=["ticker", "bar_ts"], suffixes=("", "_offline"))
    assert len(both) == len(stored) > 100
    labelled = both["label"].notna()
    assert labelled.sum() > 100
    assert (both.loc[labelled, "label"] == both.loc[labelled, "label_offline"]).all()
    np.testing.assert_allclose(
        both.loc[labelled, "fwd_return"], both.loc[labelled, "fwd_return_offline"], atol=1e-12
    )
    # the session's last 15 bars cross the close: stored without a label, once it is over
    assert both.loc[~labelled, "label_offline"].isna().all()
    scored = read_from_db("SELECT DISTINCT ticker, bar_ts FROM signals")
    pending = len(scored) - len(stored)
    assert 0 <= pending <= 15 * len(TICKERS)  # the newest bars: horizon not passed yet

    # causality: bars after a bar's horizon cannot change its outcome
    targets = stored[labelled][["ticker", "bar_ts"]].head(50)
    horizon_end = targets["bar_ts"].max() + pd.Timedelta(minutes=params.horizon_bars)
    shocked = bars.copy()
    after = shocked["ts"] > horizon_end
    shocked.loc[after, ["open", "high", "low", "close"]] *= 3.0
    a = realised(bars, targets, params).reset_index(drop=True)
    b = realised(shocked, targets, params).reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="final"), b.drop(columns="final"))
    # and an outcome whose horizon has not fully arrived is not final
    cut = bars[bars["ts"] <= targets["bar_ts"].max() + pd.Timedelta(minutes=5)]
    partial = realised(cut, targets.tail(1), params)
    assert not partial["final"].iloc[0] and partial["label"].isna().iloc[0]


def _metadata(version: str, trained_until: str):
    from ml.models.metadata import ModelMetadata

    return ModelMetadata(
        version=version,
        features=["ret_1"],
        window_length=8,
        tflite_batch=4,
        files={},
        label_params=LabelParams(1.5, 1.5, 15, 30),
        train_range=("2026-10-01T14:30:00+00:00", "2026-10-20T20:00:00+00:00"),
        val_range=("2026-10-21T14:30:00+00:00", trained_until),
    )


def predictions(
    rng: np.random.Generator, keys: pd.DataFrame, outcome: np.ndarray, version: str, skill: float
) -> pd.DataFrame:
    """`version`'s signals on every key: each network right with probability `skill`, the
    action BUY / SELL where both agree on UP / DOWN."""
    from ml.features.labels import CLASSES

    n = len(keys)
    cols = {}
    for model in ("lstm", "transformer"):
        label = np.where(rng.random(n) < skill, outcome, rng.integers(0, 3, n))
        probs = np.full((n, 3), 0.15)
        probs[np.arange(n), label] = 0.7
        cols[f"{model}_label"] = np.asarray(CLASSES)[label]
        for i, c in enumerate(("down", "neutral", "up")):
            cols[f"{model}_p_{c}"] = probs[:, i]
    agree = cols["lstm_label"] == cols["transformer_label"]
    action = np.where(
        agree & (cols["lstm_label"] == "UP"),
        "BUY",
        np.where(agree & (cols["lstm_label"] == "DOWN"), "SELL", "HOLD"),
    )
    return keys.assign(model_version=version, action=action, confidence=0.7, **cols)


def write_a_champion_bar_the_challenger_never_scored(keys: pd.DataFrame) -> None:
    write_to_db(
        keys.head(1).assign(
            bar_ts=pd.Timestamp("2026-11-02 21:00", tz="UTC"), model_version=CHAMPION,
            action="HOLD", confidence=0.5, role="champion",
            **{f"{m}_{c}": v for m in ("lstm", "transformer")
               for c, v in (("label", "UP"), ("p_down", 0.2), ("p_neutral", 0.2), ("p_up", 0.6))},
        ),
        table="signals",
    )  # fmt: skip


def test_the_scoreboard_equals_an_offline_computation(clean_tables, monkeypatch):
    from ml.features.labels import CLASSES
    from ml.lifecycle.scoreboard import scoreboard
    from ml.serving.outcomes import label_key

    monkeypatch.setenv("BOOTSTRAP_SAMPLES", "200")
    get_settings.cache_clear()
    rng = np.random.default_rng(7)
    stamps = pd.date_range("2026-11-02 14:30", periods=390, freq="min", tz="UTC")
    keys = pd.MultiIndex.from_product([TICKERS, stamps], names=["ticker", "bar_ts"]).to_frame(
        index=False
    )
    n = len(keys)
    outcome = rng.integers(0, 3, n)
    fwd = rng.normal(0, 0.002, n)

    champ = predictions(rng, keys, outcome, CHAMPION, 0.3)
    chall = predictions(rng, keys, outcome, CHALLENGER, 0.5)
    write_to_db(champ.assign(role="champion"), table="signals")
    write_to_db(chall.assign(role="shadow"), table="signals")
    params = LabelParams(1.5, 1.5, 15, 30)
    rows = keys.assign(label_key=label_key(params), label=outcome, fwd_return=fwd)
    rows.loc[rows.index % 97 == 0, "label"] = None  # horizon crossed the close: not judged
    write_to_db(rows.assign(exit_ts=rows["bar_ts"] + pd.Timedelta(minutes=15)), table="outcomes")
    # a bar the challenger never scored, and one before it was trained, are left out
    write_a_champion_bar_the_challenger_never_scored(keys)

    board = scoreboard(
        _metadata(CHAMPION, "2026-10-30T20:00:00+00:00"),
        [_metadata(CHALLENGER, "2026-11-02T14:59:00+00:00")],
    )
    judged = (rows["label"].notna()) & (keys["bar_ts"] > pd.Timestamp("2026-11-02 14:59", tz="UTC"))
    y = outcome[judged]
    assert board.n_bars == judged.sum() and not board.too_early
    assert board.first_bar == iso(keys["bar_ts"][judged].min())  # the span of the common bars
    assert board.last_bar == iso(keys["bar_ts"][judged].max())
    for version, frame in ((CHAMPION, champ), (CHALLENGER, chall)):
        score = board.versions[version]
        for model in ("lstm", "transformer"):
            pred = pd.Series(frame[f"{model}_label"]).map(CLASSES.index).to_numpy()[judged]
            offline = f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0)
            assert score.macro_f1[model].value == pytest.approx(offline)
            assert score.macro_f1[model].low <= offline <= score.macro_f1[model].high
        action = frame["action"].to_numpy()[judged]
        calls = action != "HOLD"
        direction = np.where(action == "BUY", 2, 0)
        assert score.calls == calls.sum()
        assert score.hit_rate is not None
        assert score.hit_rate.value == pytest.approx((direction[calls] == y[calls]).mean())
        sign = np.select([action == "BUY", action == "SELL"], [1.0, -1.0], 0.0)
        pnl = sign * fwd[judged] - np.abs(sign) * get_settings().cost_bps / 1e4
        per_minute = pd.Series(pnl).groupby(keys["bar_ts"].to_numpy()[judged]).sum()
        expected = np.exp(np.cumsum(per_minute.to_numpy() / len(TICKERS)))[-1] - 1
        assert score.pnl.total_return == pytest.approx(expected)
    [comparison] = board.comparisons
    agree = (champ["action"].to_numpy() == chall["action"].to_numpy())[judged].mean()
    assert comparison.agreement == pytest.approx(agree)
    assert comparison.delta_f1 > 0.1 and comparison.ci_low > 0  # the better one shows it
