"""The live scoreboard: champion and challengers on the same bars since the challenger was
trained, judged by the outcomes that have since been realised.

Every serving version scores every new bar (`ml.serving.live_scoring`: the champion's rows are the
signals, the challengers' are shadow predictions), and `ml.serving.outcomes` stores each scored
bar's triple-barrier outcome once its horizon has passed. `scoreboard()` joins the two on the bars
every compared version has scored and whose outcomes are known (each version judged by its own
label definition), and reports per version:

- macro-F1 of the LSTM and of the Transformer, with block-bootstrap intervals;
- the served signal's figures (`ml.lifecycle.signal_metrics.signal_metrics`, the computation the
  gate's report uses): macro-F1 and per-action precision / recall of BUY / SELL / HOLD as calls of
  UP / DOWN / NEUTRAL, the directional hit rate (BUY and SELL calls whose outcome went that way; an
  outcome that stayed NEUTRAL is a miss) with its interval, and the cost-adjusted P&L curve of
  following the signals (costs from settings);

and, for each challenger, how often its signal agrees with the champion's and the paired
bootstrap of its gain on the served signal, on each network and on both networks' mean.
Every figure comes from `ml.models.metrics`, `ml.lifecycle.signal_metrics` and
`ml.lifecycle.bootstrap`, as in the gate's report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from config.settings import Settings, get_settings
from core.timeutil import iso
from db.signals import scored_with_outcomes
from ml.features.labels import CLASSES
from ml.lifecycle.bootstrap import Interval, PairedDelta, block_bootstrap_interval, paired_delta
from ml.lifecycle.signal_metrics import EquityCurve, SignalMetrics, signal_classes, signal_metrics
from ml.models.metadata import MODEL_NAMES, ModelMetadata
from ml.serving.outcomes import label_key

ACTION_SIGN = {"BUY": 1, "SELL": -1, "HOLD": 0}
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
MIN_BARS = 30  # below this the scoreboard says it is too early


class VersionScore(BaseModel):
    """One version on the scoreboard's bars."""

    version: str
    role: str  # champion | challenger
    label_key: str
    macro_f1: dict[str, Interval] = Field(default_factory=dict)  # per model
    signal: SignalMetrics | None = None  # the served signal

    @property
    def hit_rate(self) -> Interval | None:
        """The dual-model signals' directional calls."""
        return None if self.signal is None else self.signal.hit_rate

    @property
    def calls(self) -> int:
        """BUY and SELL signals."""
        return 0 if self.signal is None else self.signal.directional_calls

    @property
    def pnl(self) -> EquityCurve:
        return EquityCurve() if self.signal is None else self.signal.pnl


class Comparison(BaseModel):
    """A challenger against the champion on the same bars."""

    challenger: str
    agreement: float  # share of bars where both give the same signal
    delta_f1: float  # mean macro-F1 of both models, challenger minus champion
    ci_low: float
    ci_high: float
    # challenger minus champion per figure: "signal", "lstm", "transformer", "networks"
    deltas: dict[str, PairedDelta] = Field(default_factory=dict)


class Scoreboard(BaseModel):
    champion: str
    challengers: list[str]
    since: str | None
    n_bars: int  # (ticker, bar) pairs every compared version scored, outcomes known
    n_tickers: int
    n_minutes: int = 0  # distinct bar minutes among them (n_bars / n_minutes: bars a minute)
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
    score.signal = signal_metrics(
        frame["action"].map(ACTION_SIGN).to_numpy(dtype=float),
        y,
        frame["fwd_return"].to_numpy(dtype=float),
        ts,
        cost_bps=settings.cost_bps,
        samples=samples,
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
        n_minutes=int(first["bar_ts"].nunique()),
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
    def labels(frame: pd.DataFrame, model: str) -> np.ndarray:
        return np.asarray(frame[f"{model}_label"].map(CLASS_INDEX).to_numpy(dtype=int))

    def signal(frame: pd.DataFrame) -> np.ndarray:
        return signal_classes(frame["action"].map(ACTION_SIGN).to_numpy(dtype=float))

    y = chall["outcome"].to_numpy(dtype=int)
    ts = chall["bar_ts"].to_numpy("datetime64[ns]")
    preds = {
        "signal": (signal(chall), signal(champ)),
        **{m: (labels(chall, m), labels(champ, m)) for m in MODEL_NAMES},
        "networks": tuple(np.vstack([labels(f, m) for m in MODEL_NAMES]) for f in (chall, champ)),
    }
    deltas = {
        name: paired_delta(
            y, new, old, ts, samples=settings.bootstrap_samples, alpha=settings.bootstrap_alpha
        )
        for name, (new, old) in preds.items()
    }
    mean = deltas["networks"]
    return Comparison(
        challenger=version,
        agreement=float((champ["action"].to_numpy() == chall["action"].to_numpy()).mean()),
        delta_f1=mean.delta,
        ci_low=mean.low,
        ci_high=mean.high,
        deltas=deltas,
    )
