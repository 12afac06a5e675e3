"""What the live board and the detail chart say about signals, on a fixture of stored signals:
each network's lean, the trigger distance, the reason line, when the current signal began, the
feed of changes, and the markers where runs start with their realised outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app import data, live_data
from app.chart_data import marker_verdicts
from db.signals import signal_markers
from db.writes import write_to_db
from ml.serving.generate_recommendation import get_trade_recommendation
from tests.app.support import MarketFeed

VERSION = "v-fixture"
TICKERS = ("AAPL", "MSFT", "JPM", "KO")
# class probabilities (DOWN, NEUTRAL, UP) of the LSTM and the Transformer
BUY = ((0.10, 0.20, 0.70), (0.05, 0.30, 0.65))
SELL = ((0.70, 0.20, 0.10), (0.60, 0.30, 0.10))
FLAT = ((0.20, 0.60, 0.20), (0.25, 0.50, 0.25))
UP_SHORT = ((0.10, 0.38, 0.52), (0.15, 0.35, 0.50))  # both lean UP, below the 0.55 trigger
SPLIT = ((0.10, 0.40, 0.50), (0.20, 0.60, 0.20))  # LSTM UP, Transformer NEUTRAL


def store(ticker: str, ts: pd.Timestamp, probs: tuple[tuple[float, ...], ...]) -> str:
    """One signal from the real recommendation rule; returns its action."""
    rec = get_trade_recommendation(
        list(probs[0]), list(probs[1]), ticker=ticker, bar_ts=ts, model_version=VERSION
    )
    write_to_db(pd.DataFrame([rec.to_row(close=100.0)]), table="signals")
    return rec.action


@pytest.fixture
def board(app_env):
    """Two sessions of bars for four tickers and a history of signals ending at the newest
    bar `t`: AAPL HOLD, BUY from t-2; MSFT SELL, HOLD from t-1 (both lean UP, short of the
    trigger); JPM one HOLD five days back and HOLDs since (models split at t); KO one BUY
    at t, its first signal."""
    feed = MarketFeed(TICKERS, sessions=2)
    t = feed.seed()
    minute = pd.Timedelta(minutes=1)
    plan = {
        "AAPL": [(t - 4 * minute, FLAT), (t - 3 * minute, FLAT)]
        + [(t - k * minute, BUY) for k in (2, 1, 0)],
        "MSFT": [(t - 3 * minute, SELL), (t - 2 * minute, SELL), (t - minute, FLAT)]
        + [(t, UP_SHORT)],
        "JPM": [(t - pd.Timedelta(days=5), FLAT), (t - minute, FLAT), (t, SPLIT)],
        "KO": [(t, BUY)],
    }
    for ticker, rows in plan.items():
        for ts, probs in rows:
            store(ticker, ts, probs)
    return t


def test_the_board_explains_each_signal(board):
    t = board
    stamp = data.live_stamp(VERSION)
    assert stamp.signal_ts == t
    frame = live_data.live_table(stamp, VERSION, TICKERS).set_index("ticker")
    minute = pd.Timedelta(minutes=1)

    aapl = frame.loc["AAPL"]
    assert aapl["action"] == "BUY" and aapl["lean"] == "both UP"
    assert aapl["reason"] == "both models say UP (P >= 0.55: 0.65)"
    assert aapl["trigger_side"] == "BUY" and aapl["trigger_distance"] == pytest.approx(0.10)
    assert aapl["trigger_text"] == "0.10 past BUY ≥ 0.55"
    assert aapl["class_confidence"] == pytest.approx(0.65)
    assert aapl["signal_since"] == t - 2 * minute and not aapl["since_before"]

    msft = frame.loc["MSFT"]
    assert msft["action"] == "HOLD" and msft["lean"] == "both UP"
    assert msft["reason"] == "both models say UP but below the 0.55 threshold"
    assert msft["trigger_distance"] == pytest.approx(0.50 - 0.55)
    assert msft["trigger_text"] == "0.05 short of BUY ≥ 0.55"
    assert np.isnan(msft["class_confidence"])  # no probability stands for this HOLD
    assert msft["signal_since"] == t - minute and not msft["since_before"]

    jpm = frame.loc["JPM"]
    assert jpm["lean"] == "split" and jpm["reason"].startswith("models disagree")
    # split: the nearer trigger, BUY (weaker P(UP) 0.20) over SELL (weaker P(DOWN) 0.10)
    assert jpm["trigger_text"] == "0.35 short of BUY ≥ 0.55"
    # HOLD through the whole search window: it began before the window's start
    assert jpm["since_before"] and jpm["signal_since"] == t - live_data.SIGNAL_LOOKBACK

    ko = frame.loc["KO"]
    assert ko["signal_since"] == t and not ko["since_before"]  # its first signal

    feed = live_data.signal_feed(live_data.signal_changes(stamp, VERSION, TICKERS))
    assert list(zip(feed["ticker"], feed["previous"], feed["action"], strict=True)) == [
        ("MSFT", "SELL", "HOLD"),
        ("AAPL", "HOLD", "BUY"),
    ]
    assert list(feed["bar_ts"]) == [t - minute, t - 2 * minute]


def test_markers_are_run_starts_with_their_outcomes(board):
    t = board
    minute = pd.Timedelta(minutes=1)
    key = "tb-test"
    outcome = {"ticker": "AAPL", "label_key": key, "exit_ts": t, "computed_at": t}
    write_to_db(
        pd.DataFrame([outcome | {"bar_ts": t - 2 * minute, "label": 2, "fwd_return": 0.002}]),
        table="outcomes",
    )
    start, end = t - pd.Timedelta(hours=1), t + minute
    aapl = signal_markers("AAPL", start, end, VERSION, key)
    # one marker for the run of three BUYs, at its first bar, right (UP followed)
    assert list(aapl["bar_ts"]) == [t - 2 * minute] and aapl["run_bars"].tolist() == [3]
    assert marker_verdicts(aapl).tolist() == ["right"]
    # a range starting inside the run: no marker (the run began before it)
    assert signal_markers("AAPL", t - minute, end, VERSION, key).empty
    msft = signal_markers("MSFT", start, end, VERSION, key)
    assert list(msft["action"]) == ["SELL"] and marker_verdicts(msft).tolist() == ["pending"]
    write_to_db(
        pd.DataFrame([outcome | {"ticker": "MSFT", "bar_ts": t - 3 * minute, "label": 1}]),
        table="outcomes",
    )
    msft = signal_markers("MSFT", start, end, VERSION, key)
    assert marker_verdicts(msft).tolist() == ["wrong"]  # NEUTRAL: no clear move
