"""The one metrics vocabulary: what training, the gate, drift and the live scoreboard report.

- `classification_metrics(y, probs)`: `ClassMetrics` (macro-F1, accuracy, log-loss, calibration
  error and curve, per-class precision / recall / support, confusion matrix, mean confidence).
- `macro_f1`, `hit_rate` (directional: the share of UP/DOWN calls on UP/DOWN outcomes that got
  the direction right).
- `equity_curve`: the cost-adjusted equity of following BUY/SELL actions.
- `signal_metrics`: the served BUY/SELL/HOLD signal against realised outcomes (`SignalMetrics`:
  macro-F1, per-action precision / recall, the BUY/SELL hit rate, the P&L after costs), one
  computation for the gate's held-out window and the live scoreboard.
- `block_ids`, `paired_block_bootstrap` (`paired_delta`: the same, typed),
  `block_bootstrap_interval`: resampling whole time blocks shared by all tickers, so the
  intervals respect the dependence between neighbouring bars and between tickers (computed from
  per-block confusion counts, see below).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from ml.labels import CLASSES, DOWN, NEUTRAL, UP

LABELS = list(range(len(CLASSES)))
BINS = 10


class Calibration(BaseModel):
    """Mean confidence and accuracy per confidence bin (bins with no sample left out)."""

    confidence: list[float] = Field(default_factory=list)
    accuracy: list[float] = Field(default_factory=list)
    count: list[int] = Field(default_factory=list)


class ClassMetrics(BaseModel):
    """A classifier's results on labelled samples."""

    model_config = ConfigDict(extra="ignore")

    macro_f1: float
    accuracy: float
    log_loss: float | None = None
    ece: float | None = None
    precision: dict[str, float] = Field(default_factory=dict)
    recall: dict[str, float] = Field(default_factory=dict)
    support: dict[str, int] = Field(default_factory=dict)
    confusion: list[list[int]] = Field(default_factory=list)
    calibration: Calibration = Field(default_factory=Calibration)
    mean_confidence: float | None = None
    n: int = 0


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, labels=LABELS, average="macro", zero_division=0))


def hit_rate(y: np.ndarray, pred: np.ndarray) -> float:
    """Share of the directional calls (UP or DOWN predicted) whose outcome went that way; an
    outcome that stayed NEUTRAL counts as a miss (NaN when no call was made)."""
    y, pred = np.asarray(y), np.asarray(pred)
    directional = np.isin(pred, [DOWN, UP])
    if not directional.any():
        return float("nan")
    return float((pred[directional] == y[directional]).mean())


def _calibration(conf: np.ndarray, correct: np.ndarray, bins: int) -> tuple[Calibration, float]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    cal, ece = Calibration(), 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            cal.confidence.append(float(conf[mask].mean()))
            cal.accuracy.append(float(correct[mask].mean()))
            cal.count.append(int(mask.sum()))
            ece += float(mask.mean() * abs(conf[mask].mean() - correct[mask].mean()))
    return cal, ece


def classification_metrics(y: np.ndarray, probs: np.ndarray, bins: int = BINS) -> ClassMetrics:
    """Metrics of class probabilities `probs` [n, 3] against labels `y` [n] (0 DOWN, 1 NEUTRAL,
    2 UP); the predicted class is the most probable one."""
    y = np.asarray(y).astype(np.int64)
    probs = np.clip(np.asarray(probs, dtype="float64"), 1e-7, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    prec, rec, _, support = precision_recall_fscore_support(y, pred, labels=LABELS, zero_division=0)
    conf = probs.max(axis=1)
    calibration, ece = _calibration(conf, (pred == y).astype(float), bins)
    return ClassMetrics(
        macro_f1=macro_f1(y, pred),
        accuracy=float(accuracy_score(y, pred)) if len(y) else 0.0,
        log_loss=float(log_loss(y, probs, labels=LABELS)) if len(y) else None,
        ece=float(ece),
        precision={c: float(p) for c, p in zip(CLASSES, prec, strict=True)},
        recall={c: float(r) for c, r in zip(CLASSES, rec, strict=True)},
        support={c: int(s) for c, s in zip(CLASSES, support, strict=True)},
        confusion=confusion_matrix(y, pred, labels=LABELS).tolist(),
        calibration=calibration,
        mean_confidence=float(conf.mean()) if len(conf) else None,
        n=int(len(y)),
    )


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


# --------------------------------------------------------------------------- resampling
#
# A resample draws whole time blocks with replacement. macro-F1 and the hit rate depend on the
# rows only through their confusion counts, so each block's confusion matrix is counted once
# and a resample's matrix is the pick-count-weighted sum of its blocks' matrices: one matrix
# product for all resamples instead of a metric call per resample (the draws, and so the
# intervals, are those of drawing row indices block by block with the same seed).


def block_ids(bar_ts: np.ndarray, block_minutes: int = 30) -> np.ndarray:
    """Contiguous time blocks shared by all tickers (keeps cross-sectional dependence)."""
    ts = pd.to_datetime(bar_ts, utc=True)
    return np.asarray(ts.floor(f"{block_minutes}min").astype("int64"))


def block_index(bar_ts: np.ndarray, block_minutes: int = 30) -> tuple[np.ndarray, int]:
    """Each row's block number (0..n_blocks-1, in time order) and the number of blocks."""
    _, inverse = np.unique(block_ids(bar_ts, block_minutes), return_inverse=True)
    return inverse.reshape(-1), int(inverse.max(initial=-1)) + 1


def pick_counts(n_blocks: int, samples: int, seed: int) -> np.ndarray:
    """[samples, n_blocks]: how often each block is drawn in each resample (`n_blocks` draws
    with replacement per resample)."""
    rng = np.random.default_rng(seed)
    out = np.empty((samples, n_blocks), dtype=np.int64)
    for s in range(samples):
        out[s] = np.bincount(rng.integers(0, n_blocks, n_blocks), minlength=n_blocks)
    return out


def block_confusions(
    y: np.ndarray, preds: np.ndarray, block: np.ndarray, n_blocks: int
) -> np.ndarray:
    """[n_blocks, k, 3, 3] confusion counts (true x predicted) of `preds` [k, n] per block."""
    preds = np.atleast_2d(np.asarray(preds, dtype=np.int64))
    y = np.asarray(y, dtype=np.int64)
    k, n_cls = len(preds), len(LABELS)
    cell = ((block[None, :] * k + np.arange(k)[:, None]) * n_cls + y[None, :]) * n_cls + preds
    counts = np.bincount(cell.ravel(), minlength=n_blocks * k * n_cls * n_cls)
    return counts.reshape(n_blocks, k, n_cls, n_cls)


def f1_from_confusion(conf: np.ndarray) -> np.ndarray:
    """macro-F1 of confusion matrices [..., 3, 3] (a class with no true and no predicted row
    scores 0, as `macro_f1`'s zero_division=0)."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1).astype(float)
    denom = conf.sum(axis=-1) + conf.sum(axis=-2)  # 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return np.asarray(f1.mean(axis=-1))


def hits_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Directional hit rate of confusion matrices [..., 3, 3] (NaN where no call was made)."""
    calls = conf[..., :, DOWN].sum(axis=-1) + conf[..., :, UP].sum(axis=-1)
    right = (conf[..., DOWN, DOWN] + conf[..., UP, UP]).astype(float)
    return np.asarray(np.divide(right, calls, out=np.full(right.shape, np.nan), where=calls > 0))


def _resampled_confusions(
    y: np.ndarray, preds: np.ndarray, bar_ts: np.ndarray, samples: int, seed: int, minutes: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The confusion matrices [k, 3, 3] on all rows, [samples, k, 3, 3] on each resample, and
    the number of blocks."""
    block, n_blocks = block_index(bar_ts, minutes)
    per_block = block_confusions(y, preds, block, n_blocks)
    full = per_block.sum(axis=0)
    if n_blocks < 2:
        return full, np.empty((0, *full.shape), dtype=np.int64), n_blocks
    weights = pick_counts(n_blocks, samples, seed)
    draws = (weights @ per_block.reshape(n_blocks, -1)).reshape(samples, *full.shape)
    return full, draws, n_blocks


class Interval(BaseModel):
    """An observed statistic with its block-bootstrap interval."""

    value: float
    low: float
    high: float
    blocks: int


def block_bootstrap_interval(
    y: np.ndarray,
    pred: np.ndarray,
    bar_ts: np.ndarray,
    *,
    stat: Literal["f1", "hits"],
    samples: int,
    level: float = 0.9,
    block_minutes: int = 30,
    seed: int = 0,
) -> Interval:
    """macro-F1 (`stat="f1"`) or the directional hit rate (`"hits"`) of `pred` against `y` on
    all rows, and its central `level` interval when whole time blocks are resampled."""
    of = f1_from_confusion if stat == "f1" else hits_from_confusion
    full, draws, n_blocks = _resampled_confusions(y, pred, bar_ts, samples, seed, block_minutes)
    value = float(of(full[0]))
    if n_blocks < 2:
        return Interval(value=value, low=float("nan"), high=float("nan"), blocks=n_blocks)
    values = of(draws[:, 0])
    tail = (1.0 - level) / 2
    if np.isnan(values).all():
        return Interval(value=value, low=float("nan"), high=float("nan"), blocks=n_blocks)
    return Interval(
        value=value,
        low=float(np.nanquantile(values, tail)),
        high=float(np.nanquantile(values, 1.0 - tail)),
        blocks=n_blocks,
    )


def paired_block_bootstrap(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    bar_ts: np.ndarray,
    *,
    samples: int,
    alpha: float = 0.05,
    block_minutes: int = 30,
    seed: int = 0,
) -> dict[str, float]:
    """Distribution of macro-F1(a) - macro-F1(b) under resampling of whole time blocks.

    `pred_a`/`pred_b` may be [n] labels or [k, n] (k models per version, scores averaged)."""
    pa, pb = np.atleast_2d(pred_a), np.atleast_2d(pred_b)
    both = np.vstack([pa, pb])
    full, draws, n_blocks = _resampled_confusions(y, both, bar_ts, samples, seed, block_minutes)

    def delta(conf: np.ndarray) -> np.ndarray:
        f1 = f1_from_confusion(conf)
        return np.asarray(f1[..., : len(pa)].mean(axis=-1) - f1[..., len(pa) :].mean(axis=-1))

    deltas = delta(draws) if n_blocks >= 2 else np.full(samples, float(delta(full)))
    return {
        "delta_f1": float(delta(full)),
        "ci_low": float(np.quantile(deltas, alpha)),
        "ci_high": float(np.quantile(deltas, 1.0 - alpha)),
        "p_not_better": float(np.mean(deltas <= 0.0)),
        "blocks": n_blocks,
    }


class PairedDelta(BaseModel):
    """macro-F1 of `a` minus that of `b` on the same rows, with the (alpha, 1 - alpha) quantiles
    of its paired block bootstrap (`low`, `high`: a 1 - 2 alpha central interval)."""

    delta: float
    low: float
    high: float
    p_not_better: float
    blocks: int
    n: int = 0  # rows compared


def paired_delta(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    bar_ts: np.ndarray,
    *,
    samples: int,
    alpha: float = 0.05,
    block_minutes: int = 30,
) -> PairedDelta:
    """`paired_block_bootstrap` as a `PairedDelta`."""
    out = paired_block_bootstrap(
        y, pred_a, pred_b, bar_ts, samples=samples, alpha=alpha, block_minutes=block_minutes
    )
    return PairedDelta(
        delta=out["delta_f1"],
        low=out["ci_low"],
        high=out["ci_high"],
        p_not_better=out["p_not_better"],
        blocks=int(out["blocks"]),
        n=len(np.asarray(y)),
    )


# --------------------------------------------------------------------------- the served signal
#
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
    actions : [n] +1 BUY, -1 SELL, 0 HOLD (`ml.generate_recommendation.dual_actions`).
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
