"""Dual-model confirmation: turn the LSTM's and the Transformer's outputs into BUY / SELL / HOLD.

The rule is deliberately simple: BUY only if both models say UP with probability at least
`buy_threshold`; SELL only if both say DOWN with probability at least `sell_threshold`; HOLD
otherwise. Confidence is the weaker of the two agreeing probabilities. Every recommendation
carries the disclaimer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from config.settings import Settings, get_settings
from ml.predict import CLASSES, Prediction, to_prediction

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
    p_up = min(lstm.probabilities["UP"], tf.probabilities["UP"])
    p_down = min(lstm.probabilities["DOWN"], tf.probabilities["DOWN"])
    agree = lstm.label == tf.label
    if lstm.label == tf.label == "UP" and p_up >= settings.buy_threshold:
        action, confidence = "BUY", p_up
        reason = f"both models say UP (P >= {settings.buy_threshold:.2f}: {p_up:.2f})"
    elif lstm.label == tf.label == "DOWN" and p_down >= settings.sell_threshold:
        action, confidence = "SELL", p_down
        reason = f"both models say DOWN (P >= {settings.sell_threshold:.2f}: {p_down:.2f})"
    else:
        action = "HOLD"
        confidence = (
            min(lstm.confidence, tf.confidence)
            if agree
            else max(lstm.probabilities["NEUTRAL"], tf.probabilities["NEUTRAL"])
        )
        if agree and lstm.label != "NEUTRAL":
            reason = (
                f"both models say {lstm.label} but below the "
                f"{settings.buy_threshold if lstm.label == 'UP' else settings.sell_threshold:.2f}"
                " threshold"
            )
        elif agree:
            reason = "both models expect no clear move"
        else:
            reason = f"models disagree (LSTM {lstm.label}, Transformer {tf.label})"
    return Recommendation(
        ticker=ticker,
        bar_ts=pd.Timestamp(bar_ts),
        action=action,
        confidence=float(confidence),
        lstm_label=lstm.label,
        lstm_probabilities=lstm.probabilities,
        transformer_label=tf.label,
        transformer_probabilities=tf.probabilities,
        models_agree=agree,
        model_version=model_version,
        reason=reason,
    )
