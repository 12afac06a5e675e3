"""The served signal's figures: one computation for the gate's held-out window and the live
scoreboard.

- `equity_curve`: the cost-adjusted equity of following BUY/SELL actions.
- `signal_metrics`: the served BUY/SELL/HOLD signal against realised outcomes (`SignalMetrics`:
  macro-F1, per-action precision / recall, the BUY/SELL hit rate with its block-bootstrap
  interval, the P&L after costs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import confusion_matrix

from ml.features.labels import DOWN, NEUTRAL, UP
from ml.lifecycle.bootstrap import Interval, block_bootstrap_interval, f1_from_confusion
from ml.models.metrics import LABELS


class EquityCurve(BaseModel):
    """Following the dual-model signals: equity over time after costs."""

    equity_curve: list[tuple[str, float]] = Field(default_factory=list)
    total_return: float = 0.0
    n_trades: int = 0


def equity_curve(
    actions: np.ndarray, fwd_return: np.ndarray, bar_ts: np.ndarray, cost_bps: float
) -> EquityCurve:
    """Cost-adjusted equity of following the signals: each BUY/SELL (+1/-1) takes the label's
    realised log return (long or short) minus a round-trip cost; equal weight per time step."""
    actions = np.asarray(actions, dtype=float)
    pnl = actions * np.asarray(fwd_return, dtype=float) - np.abs(actions) * cost_bps / 1e4
    frame = pd.DataFrame(
        {"ts": pd.to_datetime(bar_ts, utc=True), "pnl": pnl, "trade": np.abs(actions)}
    )
    if frame.empty:
        return EquityCurve()
    per_ts = frame.groupby("ts").agg(pnl=("pnl", "sum"), trades=("trade", "sum"))
    n_tickers = max(1, int(frame.groupby("ts").size().max()))
    equity = np.exp(np.cumsum(per_ts["pnl"].to_numpy() / n_tickers))
    step = max(1, len(per_ts) // 300)  # keep the stored curve small
    points = [
        (ts.isoformat(), float(eq))
        for ts, eq in zip(per_ts.index[::step], equity[::step], strict=True)
    ]
    return EquityCurve(
        equity_curve=points,
        total_return=float(equity[-1] - 1.0),
        n_trades=int(per_ts["trades"].sum()),
    )


# The signal that serves is an action per bar: BUY (+1), SELL (-1) or HOLD (0). It is judged as
# a call of the class it stands for (BUY: UP, SELL: DOWN, HOLD: NEUTRAL) against the realised
# triple-barrier outcome, so its macro-F1, precision and recall are those of a three-class
# prediction, and its bootstrap uses the same per-block confusion counts as the networks'.

SIGNAL_ACTIONS = ("SELL", "HOLD", "BUY")  # the action calling each class, in CLASSES order


def signal_classes(actions: np.ndarray) -> np.ndarray:
    """The class each action calls: SELL (< 0) DOWN, HOLD (0) NEUTRAL, BUY (> 0) UP."""
    signs = np.sign(np.asarray(actions, dtype=float))
    return np.asarray(np.select([signs > 0, signs < 0], [UP, DOWN], NEUTRAL), dtype=np.int64)


class SignalMetrics(BaseModel):
    """The served signal against realised outcomes."""

    model_config = ConfigDict(extra="ignore")

    macro_f1: float  # of the actions as calls of UP / DOWN / NEUTRAL
    precision: dict[str, float] = Field(default_factory=dict)  # per action: calls that came true
    recall: dict[str, float] = Field(default_factory=dict)  # per action: outcomes it called
    calls: dict[str, int] = Field(default_factory=dict)  # bars per action
    confusion: list[list[int]] = Field(default_factory=list)  # outcome x action, CLASSES order
    hit_rate: Interval | None = None  # BUY / SELL calls whose outcome went that way
    pnl: EquityCurve = Field(default_factory=EquityCurve)
    n: int = 0

    @property
    def directional_calls(self) -> int:
        return self.calls.get("BUY", 0) + self.calls.get("SELL", 0)

    def call_share(self, action: str) -> float:
        """Share of the bars on which the signal was `action`."""
        return self.calls.get(action, 0) / self.n if self.n else float("nan")

    def wrong_way(self, action: str) -> float:
        """Share of the BUY (or SELL) calls whose outcome went the other way (NaN: no call)."""
        col = SIGNAL_ACTIONS.index(action)
        other = DOWN if action == "BUY" else UP
        made = sum(row[col] for row in self.confusion)
        return self.confusion[other][col] / made if made else float("nan")


def signal_metrics(
    actions: np.ndarray,
    y: np.ndarray,
    fwd_return: np.ndarray,
    bar_ts: np.ndarray,
    *,
    cost_bps: float,
    samples: int,
) -> SignalMetrics:
    """The served signal's figures.

    Parameters
    ----------
    actions : [n] +1 BUY, -1 SELL, 0 HOLD (`ml.serving.generate_recommendation.dual_actions`).
    y : [n] realised outcomes (0 DOWN, 1 NEUTRAL, 2 UP), known only after each bar's horizon.
    fwd_return : [n] the outcome's log return from the bar's close to the label's exit.
    bar_ts : [n] bar times (UTC), for the time blocks of the hit rate's interval and the P&L.
    cost_bps, samples : round-trip cost of a trade; bootstrap resamples.

    Returns
    -------
    `SignalMetrics`: macro-F1 and per-action precision / recall of the actions as calls of UP,
    DOWN and NEUTRAL; the hit rate of the BUY / SELL calls with its block-bootstrap interval;
    the cost-adjusted equity of following them (`equity_curve`).
    """
    y = np.asarray(y, dtype=np.int64)
    pred = signal_classes(actions)
    conf = confusion_matrix(y, pred, labels=LABELS) if len(y) else np.zeros((3, 3), np.int64)
    tp = np.diag(conf).astype(float)
    called, happened = conf.sum(axis=0), conf.sum(axis=1)
    precision = np.divide(tp, called, out=np.zeros(3), where=called > 0)
    recall = np.divide(tp, happened, out=np.zeros(3), where=happened > 0)
    directional = bool(np.isin(pred, [DOWN, UP]).any())
    hits = (
        block_bootstrap_interval(y, pred, bar_ts, stat="hits", samples=samples)
        if directional
        else None
    )
    return SignalMetrics(
        macro_f1=float(f1_from_confusion(conf)),
        precision={a: float(p) for a, p in zip(SIGNAL_ACTIONS, precision, strict=True)},
        recall={a: float(r) for a, r in zip(SIGNAL_ACTIONS, recall, strict=True)},
        calls={a: int(c) for a, c in zip(SIGNAL_ACTIONS, called, strict=True)},
        confusion=conf.tolist(),
        hit_rate=hits,
        pnl=equity_curve(actions, fwd_return, bar_ts, cost_bps),
        n=int(len(y)),
    )
