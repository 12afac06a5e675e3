"""Dual-model confirmation: turn the LSTM's and the Transformer's outputs into BUY / SELL / HOLD.

The rule is deliberately simple: BUY only if both models say UP with probability at least
`buy_threshold`; SELL only if both say DOWN with probability at least `sell_threshold`; HOLD
otherwise. Confidence is the weaker of the two agreeing probabilities. Every recommendation
carries the disclaimer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings
from ml.labels import CLASSES, DOWN, UP
from ml.predict import Prediction, to_prediction

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
