"""The live signals as the pages show them: the live board, the feed of signal changes, and
each signal's explanation (how confident, how far from its trigger, since when it holds).

Reads are cached (`app.data.cached_data`) and keyed on the live stamp (`app.data.live_stamp`):
every session shares one copy until a bar or a signal is added.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from app.data import cached_data, from_db
from config.settings import Settings, get_settings
from db import signals as db_signals
from db.signals import LiveStamp
from ml.serving.generate_recommendation import trigger_distance

CHANCE = 1.0 / 3.0  # three classes: a network guessing at random
SIGNAL_LOOKBACK = pd.Timedelta(days=3)  # market time searched back for signal changes
FEED_LENGTH = 15  # signal changes in the live page's feed
PROBS = ("p_down", "p_neutral", "p_up")  # the signals' probability columns, in CLASSES order


def _probabilities(frame: pd.DataFrame, model: str) -> np.ndarray:
    return np.asarray(frame[[f"{model}_{p}" for p in PROBS]].to_numpy(dtype=float))


def explain(frame: pd.DataFrame, settings: Settings | None = None) -> pd.DataFrame:
    """What the live board says about each signal row (the signals' columns: action, both
    networks' labels and probabilities), index aligned with `frame`:

    - `class_confidence`: the weaker network's probability of the class the signal stands
      for (BUY: UP, SELL: DOWN, HOLD: NEUTRAL when both networks lean NEUTRAL); NaN for a
      HOLD where the networks lean to a move without triggering it, or disagree, since no
      probability stands for that HOLD. Chance is 1/3 (`CHANCE`).
    - `lean`: "both UP" / "both NEUTRAL" / "both DOWN" / "split".
    - `trigger_side`, `trigger_level`, `trigger_weaker`, `trigger_distance`: the trigger
      (BUY or SELL) the rule is judged against, its threshold, the weaker network's
      probability of its class and their difference (`ml.serving.generate_recommendation
      .trigger_distance`: >= 0 with a shared lean is exactly when the rule fires).
    - `trigger_text`: e.g. "0.04 short of BUY ≥ 0.55".
    """
    settings = settings or get_settings()
    out = pd.DataFrame(index=frame.index)
    scored = frame["action"].notna() & frame["lstm_p_up"].notna()
    rows = frame[scored]
    shared = rows["lstm_label"] == rows["transformer_label"]
    out["lean"] = None
    out.loc[rows.index, "lean"] = np.where(shared, "both " + rows["lstm_label"], "split")
    weaker_of = pd.Series(np.nan, index=rows.index)
    for action, cls in (("BUY", "up"), ("SELL", "down"), ("HOLD", "neutral")):
        pick = rows["action"] == action
        if action == "HOLD":
            pick &= shared & (rows["lstm_label"] == "NEUTRAL")
        weaker = np.minimum(rows[f"lstm_p_{cls}"], rows[f"transformer_p_{cls}"])
        weaker_of = weaker_of.where(~pick, weaker)
    out["class_confidence"] = weaker_of.reindex(frame.index)
    trig = trigger_distance(
        _probabilities(rows, "lstm"),
        _probabilities(rows, "transformer"),
        settings.buy_threshold,
        settings.sell_threshold,
    )
    columns = {
        "trigger_side": trig.side,
        "trigger_level": trig.threshold,
        "trigger_weaker": trig.weaker,
        "trigger_distance": trig.distance,
    }
    for name, values in columns.items():
        out[name] = pd.Series(values, index=rows.index).reindex(frame.index)
    out["trigger_text"] = [
        trigger_text(side, level, distance)
        for side, level, distance in zip(
            out["trigger_side"], out["trigger_level"], out["trigger_distance"], strict=True
        )
    ]
    return out


def trigger_text(side: object, level: float, distance: float) -> str:
    """'0.04 short of BUY ≥ 0.55' or '0.07 past SELL ≥ 0.55' ('—' without a signal)."""
    if not isinstance(side, str) or pd.isna(distance):
        return "—"
    where = "short of" if distance < 0 else "past"
    return f"{abs(distance):.2f} {where} {side} ≥ {level:.2f}"


def pct_of(values: object, base: float) -> list[float]:
    """Prices as % change from `base` (empty without a base)."""
    if not isinstance(values, list | np.ndarray) or base is None or not np.isfinite(base):
        return []
    return [(float(v) / base - 1.0) * 100.0 for v in values]


def changes_since(stamp: LiveStamp) -> pd.Timestamp | None:
    """Where the search for signal changes starts: `SIGNAL_LOOKBACK` before the newest signal."""
    return None if stamp.signal_ts is None else stamp.signal_ts - SIGNAL_LOOKBACK


@cached_data(ttl=300, max_entries=16)
def signal_changes(stamp: LiveStamp, version: str | None, tickers: tuple[str, ...]) -> pd.DataFrame:
    """The starts of runs of one action in the signals of `version` (`db.signals
    .signal_changes`) over `SIGNAL_LOOKBACK` of market time, newest first; keyed on `stamp`."""
    since = changes_since(stamp)
    if version is None or since is None:
        columns = ["previous", *db_signals.SIGNAL_COLUMNS.split(", ")]
        return pd.DataFrame(columns=columns)
    return from_db(db_signals.signal_changes, version, tickers, since)


def signal_feed(changes: pd.DataFrame, n: int = FEED_LENGTH) -> pd.DataFrame:
    """The latest `n` changes of action (first signals of a ticker left out), newest first."""
    return changes[changes["previous"].notna()].head(n).reset_index(drop=True)


def signal_began(
    frame: pd.DataFrame, changes: pd.DataFrame, since: pd.Timestamp | None
) -> pd.DataFrame:
    """Per row of the board: `signal_since`, the bar from which its current action has held
    unbroken, and `since_before` (True: it held through the whole search window, so it began
    before `signal_since`, which is then the window's start)."""
    began = changes.groupby("ticker")["bar_ts"].max() if not changes.empty else pd.Series()
    found = frame["ticker"].map(began)
    held = frame["action"].notna() & found.isna() & (since is not None)
    return pd.DataFrame(
        {
            "signal_since": found.where(~held, since),
            "since_before": held,
        },
        index=frame.index,
    )


def _live_frame(
    version: str | None,
    tickers: tuple[str, ...],
    changes: pd.DataFrame,
    since: pd.Timestamp | None,
) -> pd.DataFrame:
    frame = from_db(db_signals.live_board, version, tickers)
    frame["change_pct"] = (frame["last"] / frame["prev_close"] - 1.0) * 100.0
    frame["spark"] = [
        pct_of(closes, base)
        for closes, base in zip(frame["spark"], frame["prev_close"], strict=True)
    ]
    return pd.concat([frame, explain(frame), signal_began(frame, changes, since)], axis=1)


@cached_data(ttl=300, max_entries=8)
def live_table(stamp: LiveStamp, version: str | None, tickers: tuple[str, ...]) -> pd.DataFrame:
    """Per ticker: last price, change since the previous session's close, the last 90 minutes
    as % change since that close, the newest signal with its explanation (`explain`) and when
    its action began (`signal_began`).

    Cached on `stamp`: every session shares one copy until a bar or a signal is added.
    """
    changes = signal_changes(stamp, version, tickers)
    return _live_frame(version, tickers, changes, changes_since(stamp))


def explained_signal(ticker: str, version: str | None, stamp: LiveStamp) -> dict[str, Any] | None:
    """The newest signal of `ticker` from `version` with its explanation (`explain`) and when
    its action began (`signal_began`), as a dict, or None."""
    signal = latest_signal(ticker, version, stamp) if version else None
    if signal is None:
        return None
    frame = pd.DataFrame([signal]).assign(ticker=ticker)
    began = signal_began(frame, signal_changes(stamp, version, (ticker,)), changes_since(stamp))
    return dict(pd.concat([frame, explain(frame), began], axis=1).iloc[0])


@cached_data(ttl=600, max_entries=64)
def latest_signal(ticker: str, version: str | None, stamp: LiveStamp) -> dict[str, Any] | None:
    """The newest signal of `ticker` from `version`, as a dict, or None."""
    del stamp  # the cache key
    return from_db(db_signals.latest_signal, ticker, version)
