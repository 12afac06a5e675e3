from __future__ import annotations

import pandas as pd
import pytest

from ml.serving.generate_recommendation import DISCLAIMER, get_trade_recommendation

pytestmark = pytest.mark.no_db

TS = pd.Timestamp("2026-11-24 15:00", tz="UTC")
UP = (0.1, 0.2, 0.7)
WEAK_UP = (0.2, 0.3, 0.5)
DOWN = (0.7, 0.2, 0.1)
WEAK_DOWN = (0.45, 0.3, 0.25)
FLAT = (0.2, 0.6, 0.2)


def rec(a, b):
    return get_trade_recommendation(a, b, ticker="AAPL", bar_ts=TS, model_version="v1")


@pytest.mark.parametrize(
    "lstm, tf, action",
    [
        (UP, UP, "BUY"),
        (DOWN, DOWN, "SELL"),
        (UP, DOWN, "HOLD"),
        (DOWN, UP, "HOLD"),
        (UP, WEAK_UP, "HOLD"),
        (WEAK_UP, UP, "HOLD"),
        (DOWN, WEAK_DOWN, "HOLD"),
        (FLAT, FLAT, "HOLD"),
        (UP, FLAT, "HOLD"),
        (FLAT, DOWN, "HOLD"),
    ],
)
def test_dual_confirmation_truth_table(lstm, tf, action):
    r = rec(lstm, tf)
    assert r.action == action
    assert r.disclaimer == DISCLAIMER and "Not financial advice" in r.to_dict()["disclaimer"]


def test_confidence_is_the_weaker_agreeing_probability():
    r = rec(UP, (0.05, 0.15, 0.8))
    assert r.action == "BUY" and r.confidence == pytest.approx(0.7)
    assert r.models_agree and "both models say UP" in r.reason


def test_recommendation_names_everything():
    d = rec(UP, DOWN).to_dict()
    assert d["ticker"] == "AAPL" and d["model_version"] == "v1"
    assert d["lstm_label"] == "UP" and d["transformer_label"] == "DOWN"
    assert "disagree" in d["reason"] and d["bar_ts"].startswith("2026-11-24")
    row = rec(UP, UP).to_row(close=101.5)
    assert row["lstm_p_up"] == pytest.approx(0.7) and row["close"] == 101.5


def test_threshold_comes_from_settings(monkeypatch):
    from config.settings import get_settings

    monkeypatch.setenv("BUY_THRESHOLD", "0.8")
    get_settings.cache_clear()
    try:
        assert rec(UP, UP).action == "HOLD"
    finally:
        get_settings.cache_clear()


def test_malformed_model_output_is_rejected():
    with pytest.raises(ValueError, match="3 probabilities"):
        rec((0.5, 0.5), UP)
