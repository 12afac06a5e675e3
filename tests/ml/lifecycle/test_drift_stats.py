from __future__ import annotations

import numpy as np
import pytest

from ml.features.drift import AlarmState, data_drift, ks_pvalue, psi, step_alarm

pytestmark = pytest.mark.no_db


def reference(sample: np.ndarray) -> dict:
    edges = np.quantile(sample, np.linspace(0, 1, 11)).tolist()
    return {"edges": edges, "proportions": [0.1] * 10, "sample": sample[:2000].tolist()}


def test_psi_and_ks_see_a_shift_but_not_a_resample():
    rng = np.random.default_rng(1)
    ref = reference(rng.normal(0, 1, 20_000))
    same = rng.normal(0, 1, 2_000)
    shifted = rng.normal(0.8, 1.5, 2_000)
    assert psi(same, ref["edges"], ref["proportions"]) < 0.05
    assert psi(shifted, ref["edges"], ref["proportions"]) > 0.25
    assert ks_pvalue(same, ref) > 0.01
    assert ks_pvalue(shifted, ref) < 1e-6
    no_sample = {k: v for k, v in ref.items() if k != "sample"}
    assert ks_pvalue(shifted, no_sample) < 1e-6
    out = data_drift({"a": same, "b": shifted}, {"a": ref, "b": ref}, 0.25, 0.001)
    assert out["a"]["drifted"] == 0.0 and out["b"]["drifted"] == 1.0


def test_alarm_needs_persistence_and_clears_with_hysteresis():
    s = AlarmState()
    for v in (0.5, 0.5):
        s = step_alarm(s, v, 0.3, persistence=3)
    assert not s.raised
    s = step_alarm(s, 0.1, 0.3, 3)  # a calm check resets the streak
    for v in (0.5, 0.5, 0.5):
        s = step_alarm(s, v, 0.3, 3)
    assert s.raised
    s = step_alarm(s, 0.2, 0.3, 3)  # below threshold but above half: still raised
    assert s.raised
    s = step_alarm(s, 0.1, 0.3, 3)
    assert not s.raised
    assert step_alarm(s, float("nan"), 0.3, 3) == s
