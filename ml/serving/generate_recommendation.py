"""Dual-model confirmation: turn the LSTM's and the Transformer's outputs into BUY / SELL / HOLD.

The rule is deliberately simple: BUY only if both models say UP with probability at least
`buy_threshold`; SELL only if both say DOWN with probability at least `sell_threshold`; HOLD
otherwise. Confidence is the weaker of the two agreeing probabilities. Every recommendation
carries the disclaimer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings
from db.quality import held_tickers
from ml.features.labels import CLASSES, DOWN, UP
from ml.models.predict import Prediction, to_prediction

ACTIONS = {1: "BUY", -1: "SELL", 0: "HOLD"}

DISCLAIMER = (
    "Not financial advice: a statistical model's output for research only. Models are often "
    "wrong; do your own research before any trade."
)


@dataclass(frozen=True)
class Recommendation:
    ticker: str
    bar_ts: pd.Timestamp
    action: str  # BUY | SELL | HOLD
    confidence: float
    lstm_label: str
    lstm_probabilities: dict[str, float]
    transformer_label: str
    transformer_probabilities: dict[str, float]
    models_agree: bool
    model_version: str
    reason: str
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bar_ts"] = pd.Timestamp(self.bar_ts).isoformat()
        return out

    def to_row(self, close: float | None = None) -> dict[str, Any]:
        """The row stored in the `signals` table."""
        lp, tp = self.lstm_probabilities, self.transformer_probabilities
        return {
            "ticker": self.ticker,
            "bar_ts": self.bar_ts,
            "model_version": self.model_version,
            "action": self.action,
            "confidence": self.confidence,
            "lstm_label": self.lstm_label,
            "lstm_p_down": lp["DOWN"],
            "lstm_p_neutral": lp["NEUTRAL"],
            "lstm_p_up": lp["UP"],
            "transformer_label": self.transformer_label,
            "transformer_p_down": tp["DOWN"],
            "transformer_p_neutral": tp["NEUTRAL"],
            "transformer_p_up": tp["UP"],
            "close": close,
            "reason": self.reason,
        }


def _as_prediction(out: Prediction | Any) -> Prediction:
    if isinstance(out, Prediction):
        return out
    probs = list(out.values()) if isinstance(out, dict) else list(out)
    if len(probs) != len(CLASSES):
        raise ValueError(f"model output needs {len(CLASSES)} probabilities, got {len(probs)}")
    return to_prediction(probs)


def dual_actions(
    lstm: np.ndarray, transformer: np.ndarray, buy_threshold: float, sell_threshold: float
) -> np.ndarray:
    """The dual-model rule, vectorised: +1 BUY, -1 SELL, 0 HOLD for class probabilities [n, 3]
    of both models. BUY only if both say UP with probability >= `buy_threshold`, SELL only if
    both say DOWN with >= `sell_threshold`. Recommendations and every evaluation use it."""
    lstm, transformer = np.atleast_2d(lstm), np.atleast_2d(transformer)
    la, ta = lstm.argmax(axis=1), transformer.argmax(axis=1)
    p_up = np.minimum(lstm[:, UP], transformer[:, UP])
    p_down = np.minimum(lstm[:, DOWN], transformer[:, DOWN])
    buy = (la == UP) & (ta == UP) & (p_up >= buy_threshold)
    sell = (la == DOWN) & (ta == DOWN) & (p_down >= sell_threshold)
    return np.asarray(buy.astype(int) - sell.astype(int))


def _reason(action: int, lstm: Prediction, tf: Prediction, settings: Settings) -> str:
    p_up = min(lstm.probabilities["UP"], tf.probabilities["UP"])
    p_down = min(lstm.probabilities["DOWN"], tf.probabilities["DOWN"])
    if action > 0:
        return f"both models say UP (P >= {settings.buy_threshold:.2f}: {p_up:.2f})"
    if action < 0:
        return f"both models say DOWN (P >= {settings.sell_threshold:.2f}: {p_down:.2f})"
    if lstm.label != tf.label:
        return f"models disagree (LSTM {lstm.label}, Transformer {tf.label})"
    if lstm.label == "NEUTRAL":
        return "both models expect no clear move"
    threshold = settings.buy_threshold if lstm.label == "UP" else settings.sell_threshold
    return f"both models say {lstm.label} but below the {threshold:.2f} threshold"


def get_trade_recommendation(
    lstm_out: Prediction | Any,
    transformer_out: Prediction | Any,
    *,
    ticker: str,
    bar_ts: pd.Timestamp,
    model_version: str,
    settings: Settings | None = None,
) -> Recommendation:
    """Combine both models' outputs into one recommendation (always with the disclaimer)."""
    settings = settings or get_settings()
    lstm, tf = _as_prediction(lstm_out), _as_prediction(transformer_out)
    probs = [[lstm.probabilities[c] for c in CLASSES], [tf.probabilities[c] for c in CLASSES]]
    action = int(
        dual_actions(
            np.array([probs[0]]),
            np.array([probs[1]]),
            settings.buy_threshold,
            settings.sell_threshold,
        )[0]
    )
    agree = lstm.label == tf.label
    if action > 0:
        confidence = min(lstm.probabilities["UP"], tf.probabilities["UP"])
    elif action < 0:
        confidence = min(lstm.probabilities["DOWN"], tf.probabilities["DOWN"])
    elif agree:
        confidence = min(lstm.confidence, tf.confidence)
    else:
        confidence = max(lstm.probabilities["NEUTRAL"], tf.probabilities["NEUTRAL"])
    return Recommendation(
        ticker=ticker,
        bar_ts=pd.Timestamp(bar_ts),
        action=ACTIONS[action],
        confidence=float(confidence),
        lstm_label=lstm.label,
        lstm_probabilities=lstm.probabilities,
        transformer_label=tf.label,
        transformer_probabilities=tf.probabilities,
        models_agree=agree,
        model_version=model_version,
        reason=_reason(action, lstm, tf, settings),
    )


@dataclass(frozen=True)
class DataHold:
    """A ticker held by the data-quality guard (`db.quality`): from `onset` on, its signals are
    HOLD whatever the models say, until an analyst decides."""

    onset: pd.Timestamp
    detail: str


def data_holds() -> dict[str, DataHold]:
    """The open holds by ticker (the earliest onset of each)."""
    holds: dict[str, DataHold] = {}
    for row in held_tickers().itertuples(index=False):
        holds.setdefault(str(row.ticker), DataHold(pd.Timestamp(row.onset_ts), str(row.detail)))
    return holds


def hold_for_data(rec: Recommendation, hold: DataHold) -> Recommendation:
    """`rec` as HOLD with the guard's reason when its bar is at or after the hold's onset."""
    if pd.Timestamp(rec.bar_ts) < hold.onset:
        return rec
    said = "" if rec.action == "HOLD" else f" (the models said {rec.action})"
    reason = (
        f"held by the data-quality guard since {hold.onset:%Y-%m-%d %H:%M} UTC: {hold.detail}; "
        f"an analyst decides on the data-health page{said}"
    )
    return replace(rec, action="HOLD", reason=reason)


@dataclass(frozen=True)
class TriggerDistance:
    """How far the dual-model rule is from firing, for rows of both models' probabilities.

    For a trigger (BUY: class UP at `buy_threshold`; SELL: class DOWN at `sell_threshold`) the
    distance is the weaker of the two networks' probabilities of its class minus its threshold:
    ``min(P_lstm(c), P_transformer(c)) - threshold``. The trigger shown per row is the one of
    the models' shared lean when both networks' most probable class is UP (BUY) or DOWN (SELL);
    otherwise (both lean NEUTRAL, or they disagree) the nearer of the two (larger distance, BUY
    on a tie). The rule fires exactly when both lean that trigger's class and the distance is
    >= 0, so a negative distance is how much the weaker probability must still rise.
    """

    side: np.ndarray  # "BUY" or "SELL" per row
    threshold: np.ndarray  # that trigger's level
    weaker: np.ndarray  # the weaker network's probability of the trigger's class
    distance: np.ndarray  # weaker - threshold
    shared_lean: np.ndarray  # both networks' most probable class is the trigger's class


def trigger_distance(
    lstm: np.ndarray, transformer: np.ndarray, buy_threshold: float, sell_threshold: float
) -> TriggerDistance:
    """The trigger distance (see `TriggerDistance`) of class probabilities [n, 3] of both
    models, columns in `CLASSES` order."""
    lstm, transformer = np.atleast_2d(lstm), np.atleast_2d(transformer)
    la, ta = lstm.argmax(axis=1), transformer.argmax(axis=1)
    weak_up = np.minimum(lstm[:, UP], transformer[:, UP])
    weak_down = np.minimum(lstm[:, DOWN], transformer[:, DOWN])
    up_gap, down_gap = weak_up - buy_threshold, weak_down - sell_threshold
    both_up, both_down = (la == UP) & (ta == UP), (la == DOWN) & (ta == DOWN)
    sell = both_down | (~both_up & (down_gap > up_gap))
    return TriggerDistance(
        side=np.where(sell, "SELL", "BUY"),
        threshold=np.where(sell, sell_threshold, buy_threshold),
        weaker=np.where(sell, weak_down, weak_up),
        distance=np.where(sell, down_gap, up_gap),
        shared_lean=np.where(sell, both_down, both_up),
    )
