from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix

from ml.lifecycle.bootstrap import (
    block_bootstrap_interval,
    block_index,
    f1_from_confusion,
    hits_from_confusion,
    paired_block_bootstrap,
)
from ml.lifecycle.signal_metrics import equity_curve
from ml.models.metrics import classification_metrics, hit_rate, macro_f1
from ml.serving.generate_recommendation import dual_actions

pytestmark = pytest.mark.no_db


def onehot(labels, p=0.8):
    out = np.full((len(labels), 3), (1 - p) / 2)
    out[np.arange(len(labels)), labels] = p
    return out


def test_perfect_and_wrong_predictions():
    y = np.array([0, 1, 2, 2, 1, 0])
    good = classification_metrics(y, onehot(y))
    assert good.macro_f1 == 1.0 and good.accuracy == 1.0
    assert np.trace(np.array(good.confusion)) == 6
    assert good.ece == pytest.approx(0.2)  # always 0.8 confident, always right
    bad = classification_metrics(y, onehot((y + 1) % 3))
    assert bad.macro_f1 == 0.0 and bad.log_loss > good.log_loss
    assert sum(bad.calibration.count) == 6 and bad.n == 6


def test_dual_actions_follow_the_recommendation_rule():
    up, down, flat = [0.1, 0.2, 0.7], [0.7, 0.2, 0.1], [0.2, 0.6, 0.2]
    lstm = np.array([up, down, up, flat])
    tf = np.array([up, down, down, flat])
    assert dual_actions(lstm, tf, 0.6, 0.6).tolist() == [1, -1, 0, 0]
    assert dual_actions(lstm, tf, 0.75, 0.75).tolist() == [0, 0, 0, 0]


def test_equity_curve_charges_costs():
    ts = pd.date_range("2026-11-02 15:00", periods=4, freq="min", tz="UTC").to_numpy()
    curve = equity_curve(np.array([1, -1, 0, 1]), np.array([0.01, -0.02, 0.5, 0.0]), ts, 10.0)
    expected = np.exp(0.01 + 0.02 + 0.0 + 0.0 - 3 * 0.001) - 1
    assert curve.total_return == pytest.approx(expected)
    assert curve.n_trades == 3 and len(curve.equity_curve) == 4


def test_bootstrap_separates_a_better_model_from_an_equal_one():
    rng = np.random.default_rng(0)
    n = 6000
    y = rng.integers(0, 3, n)
    ts = pd.date_range("2026-11-02 14:30", periods=n // 20, freq="min", tz="UTC").repeat(20)
    noise = rng.integers(0, 3, n)
    better = np.where(rng.random(n) < 0.5, y, noise)
    worse = np.where(rng.random(n) < 0.3, y, noise)
    same = np.where(rng.random(n) < 0.3, y, rng.integers(0, 3, n))
    gain = paired_block_bootstrap(y, better, worse, ts.to_numpy(), samples=200)
    assert gain["delta_f1"] > 0.1 and gain["ci_low"] > 0
    tie = paired_block_bootstrap(y, same, worse, ts.to_numpy(), samples=200)
    assert tie["ci_low"] < 0 < tie["ci_high"]


def test_hit_rate_counts_directional_calls_only():
    y = np.array([0, 2, 2, 1, 0])  # DOWN, UP, UP, NEUTRAL, DOWN
    pred = np.array([0, 2, 0, 2, 1])  # right, right, wrong, wrong, no call
    assert hit_rate(y, pred) == pytest.approx(2 / 4)
    assert np.isnan(hit_rate(y, np.ones(5, dtype=int)))  # no directional call at all


def test_blocks_as_long_as_the_dependence_give_the_wider_honest_interval():
    rng = np.random.default_rng(1)
    n = 4800
    ts = pd.date_range("2026-11-02 14:30", periods=n, freq="min", tz="UTC").to_numpy()
    skill = np.repeat(rng.choice([0.9, 0.2], n // 240), 240)  # regimes of four hours
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < skill, y, (y + rng.integers(1, 3, n)) % 3)
    wide = block_bootstrap_interval(y, pred, ts, stat="f1", samples=300, block_minutes=240)
    narrow = block_bootstrap_interval(y, pred, ts, stat="f1", samples=300, block_minutes=10)
    assert wide.low < wide.value < wide.high and narrow.low < narrow.value < narrow.high
    assert wide.value == pytest.approx(macro_f1(y, pred))
    assert narrow.blocks > wide.blocks
    # short blocks treat correlated neighbours as independent and understate the uncertainty
    assert (wide.high - wide.low) > 2 * (narrow.high - narrow.low)


def _naive_draws(statistic, ts, samples, seed=0, minutes=30):
    """Resampling by row indices, one metric call per resample (the definition)."""
    block, n_blocks = block_index(ts, minutes)
    members = [np.flatnonzero(block == b) for b in range(n_blocks)]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(samples):
        pick = rng.integers(0, n_blocks, n_blocks)
        out.append(statistic(np.concatenate([members[b] for b in pick])))
    return np.array(out)


def _skewed(rng, n):
    """Labels and predictions where a class is rare, so some resamples lack it entirely."""
    y = rng.choice(3, n, p=[0.45, 0.53, 0.02])
    pred = np.where(rng.random(n) < 0.5, y, rng.choice(3, n, p=[0.2, 0.79, 0.01]))
    return y, pred


@pytest.mark.parametrize("seed", [0, 3])
def test_confusion_resampling_equals_resampling_the_rows(seed):
    rng = np.random.default_rng(seed)
    n = 1800
    y, pred = _skewed(rng, n)
    _, other = _skewed(rng, n)
    ts = pd.date_range("2026-11-02 14:30", periods=n // 6, freq="min", tz="UTC").repeat(6)
    ts = ts.to_numpy()
    samples, level = 150, 0.9
    for stat, metric in (("f1", macro_f1), ("hits", hit_rate)):
        fast = block_bootstrap_interval(y, pred, ts, stat=stat, samples=samples, seed=seed)
        draws = _naive_draws(lambda i, m=metric: m(y[i], pred[i]), ts, samples, seed)
        assert fast.value == pytest.approx(metric(y, pred), abs=1e-12)
        assert fast.low == pytest.approx(np.nanquantile(draws, (1 - level) / 2), abs=1e-12)
        assert fast.high == pytest.approx(np.nanquantile(draws, (1 + level) / 2), abs=1e-12)
    gain = paired_block_bootstrap(y, pred, other, ts, samples=samples, seed=seed, alpha=0.05)
    deltas = _naive_draws(lambda i: macro_f1(y[i], pred[i]) - macro_f1(y[i], other[i]), ts,
                          samples, seed)  # fmt: skip
    assert gain["delta_f1"] == pytest.approx(macro_f1(y, pred) - macro_f1(y, other), abs=1e-12)
    assert gain["ci_low"] == pytest.approx(np.quantile(deltas, 0.05), abs=1e-12)
    assert gain["ci_high"] == pytest.approx(np.quantile(deltas, 0.95), abs=1e-12)
    assert gain["p_not_better"] == pytest.approx(np.mean(deltas <= 0))


def test_f1_from_confusion_is_sklearns_macro_f1_even_with_absent_classes():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        y, pred = rng.integers(0, 2, n) * 2, rng.integers(0, 3, n)  # NEUTRAL never true
        conf = confusion_matrix(y, pred, labels=[0, 1, 2])
        assert f1_from_confusion(conf) == pytest.approx(macro_f1(y, pred), abs=1e-12)
        expected = hit_rate(y, pred)
        got = hits_from_confusion(conf)
        assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected)
