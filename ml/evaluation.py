"""Evaluation on a held-out window: metrics, baselines, the cost-adjusted equity curve, and the
paired block bootstrap that decides whether a challenger's gain is more than noise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from ml.predict import CLASSES

LABELS = list(range(len(CLASSES)))


def classification_metrics(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """macro-F1, accuracy, log-loss, expected calibration error, per-class precision/recall,
    confusion matrix and the calibration curve, for labels y [n] and probabilities [n, 3]."""
    probs = np.clip(np.asarray(probs, dtype="float64"), 1e-7, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    prec, rec, _, _ = precision_recall_fscore_support(y, pred, labels=LABELS, zero_division=0)
    conf = probs.max(axis=1)
    correct = (pred == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    cal_conf, cal_acc, cal_n, ece = [], [], [], 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            cal_conf.append(float(conf[mask].mean()))
            cal_acc.append(float(correct[mask].mean()))
            cal_n.append(int(mask.sum()))
            ece += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return {
        "macro_f1": float(f1_score(y, pred, labels=LABELS, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "log_loss": float(log_loss(y, probs, labels=LABELS)),
        "ece": float(ece),
        "precision": {c: float(p) for c, p in zip(CLASSES, prec, strict=True)},
        "recall": {c: float(r) for c, r in zip(CLASSES, rec, strict=True)},
        "confusion": confusion_matrix(y, pred, labels=LABELS).tolist(),
        "calibration": {"confidence": cal_conf, "accuracy": cal_acc, "count": cal_n},
        "n": int(len(y)),
    }


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, labels=LABELS, average="macro", zero_division=0))


def dual_actions(lstm: np.ndarray, transformer: np.ndarray, buy: float, sell: float) -> np.ndarray:
    """+1 BUY, -1 SELL, 0 HOLD per sample, by the same rule as generate_recommendation."""
    up, down = CLASSES.index("UP"), CLASSES.index("DOWN")
    la, ta = lstm.argmax(axis=1), transformer.argmax(axis=1)
    buy_mask = (la == up) & (ta == up) & (np.minimum(lstm[:, up], transformer[:, up]) >= buy)
    sell_mask = (
        (la == down) & (ta == down) & (np.minimum(lstm[:, down], transformer[:, down]) >= sell)
    )
    return buy_mask.astype(int) - sell_mask.astype(int)


def equity_curve(
    actions: np.ndarray, fwd_return: np.ndarray, bar_ts: np.ndarray, cost_bps: float
) -> dict[str, Any]:
    """Cost-adjusted equity of following the signals: each BUY/SELL takes the label's realised
    log return (long or short) minus a round-trip cost; equal weight per time step."""
    pnl = actions * fwd_return - np.abs(actions) * cost_bps / 1e4
    frame = pd.DataFrame(
        {"ts": pd.to_datetime(bar_ts, utc=True), "pnl": pnl, "trade": np.abs(actions)}
    )
    per_ts = frame.groupby("ts").agg(pnl=("pnl", "sum"), trades=("trade", "sum"))
    n_tickers = max(1, int(frame.groupby("ts").size().max()))
    equity = np.exp(np.cumsum(per_ts["pnl"].to_numpy() / n_tickers))
    step = max(1, len(per_ts) // 300)  # keep the stored curve small
    points = [
        [ts.isoformat(), float(eq)]
        for ts, eq in zip(per_ts.index[::step], equity[::step], strict=True)
    ]
    return {
        "equity_curve": points,
        "total_return": float(equity[-1] - 1.0) if len(equity) else 0.0,
        "n_trades": int(per_ts["trades"].sum()),
    }


def block_ids(bar_ts: np.ndarray, block_minutes: int) -> np.ndarray:
    """Contiguous time blocks shared by all tickers (keeps cross-sectional dependence)."""
    ts = pd.to_datetime(bar_ts, utc=True)
    return np.asarray(ts.floor(f"{block_minutes}min").astype("int64"))


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

    def score(idx: np.ndarray, preds: np.ndarray) -> float:
        return float(np.mean([macro_f1(y[idx], p[idx]) for p in preds]))

    ids = block_ids(bar_ts, block_minutes)
    uniq, inverse = np.unique(ids, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(uniq))]
    rng = np.random.default_rng(seed)
    full = np.arange(len(y))
    observed = score(full, pa) - score(full, pb)
    deltas = np.empty(samples)
    for s in range(samples):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[i] for i in pick])
        deltas[s] = score(idx, pa) - score(idx, pb)
    return {
        "delta_f1": observed,
        "ci_low": float(np.quantile(deltas, alpha)),
        "ci_high": float(np.quantile(deltas, 1.0 - alpha)),
        "p_not_better": float(np.mean(deltas <= 0.0)),
        "blocks": len(members),
    }
