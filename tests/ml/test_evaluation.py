from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.generate_recommendation import dual_actions
from ml.metrics import (
    block_bootstrap_interval,
    classification_metrics,
    equity_curve,
    hit_rate,
    paired_block_bootstrap,
)

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


def test_block_bootstrap_interval_widens_with_fewer_blocks():
    rng = np.random.default_rng(1)
    n = 2400
    correct = rng.random(n) < 0.6
    ts = pd.date_range("2026-11-02 14:30", periods=n, freq="min", tz="UTC").to_numpy()

    def accuracy(idx: np.ndarray) -> float:
        return float(correct[idx].mean())

    wide = block_bootstrap_interval(accuracy, ts, samples=300, block_minutes=240)
    narrow = block_bootstrap_interval(accuracy, ts, samples=300, block_minutes=10)
    assert wide.low < wide.value < wide.high and narrow.low < narrow.value < narrow.high
    assert wide.value == pytest.approx(correct.mean())
    assert narrow.blocks > wide.blocks
    assert (wide.high - wide.low) > (narrow.high - narrow.low) * 0.8
