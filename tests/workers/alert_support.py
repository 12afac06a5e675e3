"""Shared pieces of the alert tests: signal rows committed as the scorer commits them, and the
outbox's events."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from db.alerts import enqueue_signals
from db.connections import connect
from db.notify import SIGNALS, notify
from db.reads import read_from_db

Env = Callable[..., None]
T0 = pd.Timestamp("2026-12-08 15:00", tz="UTC")  # a Tuesday, 10:00 in New York


def signal_rows(
    tickers: list[str], action: str = "BUY", bar: str = "2026-12-08 15:31"
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": tickers,
            "bar_ts": pd.Timestamp(bar, tz="UTC"),
            "model_version": "v1",
            "action": action,
            "confidence": 0.8,
            "close": 187.25,
            "reason": "both models say UP",
            "role": "champion",
            "provisional": False,
        }
    )


def commit_signals(rows: pd.DataFrame) -> None:
    """As the scorer commits them: the alerts in the signals' transaction, with its NOTIFY."""
    with connect() as conn:
        enqueue_signals(conn, rows)
        notify(conn, SIGNALS, rows["bar_ts"].max().isoformat())


def event_ids() -> list[int]:
    return [int(i) for i in read_from_db("SELECT id FROM alert_events ORDER BY id")["id"]]
