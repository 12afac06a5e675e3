"""Block-bootstrap intervals: resampling whole time blocks shared by all tickers, so the
intervals respect the dependence between neighbouring bars and between tickers.

- `block_ids`, `block_index`, `pick_counts`: the time blocks and the draws of a resample.
- `block_confusions`, `f1_from_confusion`, `hits_from_confusion`: macro-F1 and the directional
  hit rate from per-block confusion counts (see below).
- `block_bootstrap_interval`: a statistic with its interval (`Interval`).
- `paired_block_bootstrap` (`paired_delta`: the same, typed as `PairedDelta`): the difference of
  two predictions' macro-F1 on the same rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ml.features.labels import DOWN, UP
from ml.models.metrics import LABELS

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
