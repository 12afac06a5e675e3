"""The live scoreboard: champion and challengers on the same bars since the challenger was
trained, judged by the outcomes that have since been realised.

Every serving version scores every new bar (`ml.live_scoring`: the champion's rows are the
signals, the challengers' are shadow predictions), and `ml.outcomes` stores each scored bar's
triple-barrier outcome once its horizon has passed. `scoreboard()` joins the two on the bars
every compared version has scored and whose outcomes are known (each version judged by its own
label definition), and reports per version:

- macro-F1 of the LSTM and of the Transformer, with block-bootstrap intervals;
- the directional hit rate of the dual-model signals (BUY and SELL calls whose outcome went that
  way; an outcome that stayed NEUTRAL is a miss), with its interval;
- the cost-adjusted P&L curve of following those signals (`ml.metrics.equity_curve`, costs from
  settings);

and, for each challenger, how often its signal agrees with the champion's and the paired
bootstrap of its macro-F1 gain. Every figure comes from `ml.metrics`, as in the gate's report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from config.settings import Settings, get_settings
from core.timeutil import iso
from db.signals import scored_with_outcomes
from ml.labels import CLASSES, DOWN, NEUTRAL, UP
from ml.metadata import MODEL_NAMES, ModelMetadata
from ml.metrics import (
    EquityCurve,
    Interval,
    block_bootstrap_interval,
    equity_curve,
    paired_block_bootstrap,
)
from ml.outcomes import label_key

ACTION_CLASS = {"BUY": UP, "SELL": DOWN, "HOLD": NEUTRAL}
ACTION_SIGN = {"BUY": 1, "SELL": -1, "HOLD": 0}
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
MIN_BARS = 30  # below this the scoreboard says it is too early


class VersionScore(BaseModel):
    """One version on the scoreboard's bars."""

    version: str
    role: str  # champion | challenger
    label_key: str
    macro_f1: dict[str, Interval] = Field(default_factory=dict)  # per model
    hit_rate: Interval | None = None  # the dual-model signals' directional calls
    calls: int = 0  # BUY and SELL signals
    pnl: EquityCurve = Field(default_factory=EquityCurve)


class Comparison(BaseModel):
    """A challenger against the champion on the same bars."""

    challenger: str
    agreement: float  # share of bars where both give the same signal
    delta_f1: float  # mean macro-F1 of both models, challenger minus champion
    ci_low: float
    ci_high: float


class Scoreboard(BaseModel):
    champion: str
    challengers: list[str]
    since: str | None
    n_bars: int  # (ticker, bar) pairs every compared version scored, outcomes known
    n_tickers: int
    first_bar: str | None = None  # the span of those bars (the challenger may start scoring
    last_bar: str | None = None  # well after it was trained: a retrain lands mid-session)
    versions: dict[str, VersionScore] = Field(default_factory=dict)
    comparisons: list[Comparison] = Field(default_factory=list)
    too_early: bool = False  # fewer than MIN_BARS: the figures are not shown yet


def since_trained(challengers: list[ModelMetadata]) -> pd.Timestamp | None:
    """The first bar no compared challenger has seen in training or validation."""
    ends = [m.trained_until for m in challengers if m.trained_until is not None]
    return max(ends) if ends else None


def _common(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each version's rows on the (ticker, bar) pairs all versions have, in one order."""
    keys: pd.MultiIndex | None = None
    for frame in frames.values():
        idx = pd.MultiIndex.from_frame(frame[["ticker", "bar_ts"]])
        keys = idx if keys is None else keys.intersection(idx)
    assert keys is not None
    keys = keys.sort_values()
    return {v: f.set_index(["ticker", "bar_ts"]).loc[keys].reset_index() for v, f in frames.items()}


def score_version(
    frame: pd.DataFrame, version: str, role: str, key: str, settings: Settings
) -> VersionScore:
    """A version's figures on its rows (signals columns, outcome, fwd_return)."""
    y = frame["outcome"].to_numpy(dtype=int)
    ts = frame["bar_ts"].to_numpy("datetime64[ns]")  # UTC; an object array parses slowly
    samples = settings.bootstrap_samples
    score = VersionScore(version=version, role=role, label_key=key)
    for model in MODEL_NAMES:
        pred = frame[f"{model}_label"].map(CLASS_INDEX).to_numpy(dtype=int)
        score.macro_f1[model] = block_bootstrap_interval(y, pred, ts, stat="f1", samples=samples)
    action_class = frame["action"].map(ACTION_CLASS).to_numpy(dtype=int)
    score.calls = int(np.isin(action_class, [UP, DOWN]).sum())
    if score.calls:
        score.hit_rate = block_bootstrap_interval(y, action_class, ts, stat="hits", samples=samples)
    signs = frame["action"].map(ACTION_SIGN).to_numpy(dtype=float)
    score.pnl = equity_curve(
        signs, frame["fwd_return"].to_numpy(dtype=float), ts, settings.cost_bps
    )
    return score


def scoreboard(
    champion: ModelMetadata,
    challengers: list[ModelMetadata],
    since: pd.Timestamp | None = None,
    settings: Settings | None = None,
) -> Scoreboard:
    """The scoreboard of `champion` against `challengers` on the bars since `since` (default:
    since the challengers were trained)."""
    settings = settings or get_settings()
    since = since if since is not None else since_trained(challengers)
    start = since if since is not None else pd.Timestamp("1970-01-01", tz="UTC")
    metas = [champion, *challengers]
    frames = {}
    for meta in metas:
        key = label_key(meta.labels)
        rows = scored_with_outcomes([meta.version], key, start)
        frames[meta.version] = rows[rows["bar_ts"] > start] if since is not None else rows
    common = _common(frames)
    first = common[champion.version]
    board = Scoreboard(
        champion=champion.version,
        challengers=[m.version for m in challengers],
        since=None if since is None else iso(since),
        n_bars=len(first),
        n_tickers=int(first["ticker"].nunique()),
        first_bar=iso(first["bar_ts"].min()) if len(first) else None,
        last_bar=iso(first["bar_ts"].max()) if len(first) else None,
        too_early=len(first) < MIN_BARS,
    )
    if board.too_early:
        return board
    for meta in metas:
        role = "champion" if meta is champion else "challenger"
        key = label_key(meta.labels)
        board.versions[meta.version] = score_version(
            common[meta.version], meta.version, role, key, settings
        )
    for meta in challengers:
        board.comparisons.append(
            _compare(common[champion.version], common[meta.version], meta.version, settings)
        )
    return board


def _compare(
    champ: pd.DataFrame, chall: pd.DataFrame, version: str, settings: Settings
) -> Comparison:
    def preds(frame: pd.DataFrame) -> np.ndarray:
        return np.vstack(
            [frame[f"{m}_label"].map(CLASS_INDEX).to_numpy(dtype=int) for m in MODEL_NAMES]
        )

    y = chall["outcome"].to_numpy(dtype=int)
    gain = paired_block_bootstrap(
        y,
        preds(chall),
        preds(champ),
        chall["bar_ts"].to_numpy("datetime64[ns]"),
        samples=settings.bootstrap_samples,
        alpha=settings.bootstrap_alpha,
    )
    return Comparison(
        challenger=version,
        agreement=float((champ["action"].to_numpy() == chall["action"].to_numpy()).mean()),
        delta_f1=gain["delta_f1"],
        ci_low=gain["ci_low"],
        ci_high=gain["ci_high"],
    )
