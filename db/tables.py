"""What `write_to_db` knows of each table: columns, natural key and per-row rules.

The DDL lives in `db/migrations/`; `tests/db/test_migrations.py` checks these specs against the
migrated schema so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from db.bar_rule import BAR_COLUMNS, require_valid_bars
from db.errors import DataValidationError


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    finite: tuple[str, ...] = ()
    non_negative: tuple[str, ...] = ()
    check: Callable[[pd.DataFrame], None] | None = field(default=None, compare=False)
    timestamps: tuple[str, ...] = ()  # the timestamptz columns: values must carry a timezone


def naive_timestamps(df: pd.DataFrame, spec: TableSpec) -> dict[str, object]:
    """The timestamp columns of `df` holding a timezone-naive value, each with its first such
    value. A naive time names no instant (the database would read it in its session's time
    zone), so `write_to_db` refuses it rather than guess."""
    out: dict[str, object] = {}
    for col in spec.timestamps:
        if col not in df.columns:
            continue
        values = df[col]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            continue
        if pd.api.types.is_datetime64_dtype(values.dtype):
            given = values.dropna()
            if len(given):
                out[col] = given.iloc[0]
        elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            for value in values:
                if _naive(value):
                    out[col] = value
                    break
    return out


def _naive(value: object) -> bool:
    """A datetime (or a timestamp string) without a timezone; None, NaT and aware ones pass."""
    if isinstance(value, str):
        try:
            value = pd.Timestamp(value)
        except ValueError:
            return False  # not a time: the database says so itself
    return isinstance(value, datetime) and value is not pd.NaT and value.tzinfo is None


def _check_sentiment(df: pd.DataFrame) -> None:
    if "sentiment" in df.columns:
        s = pd.to_numeric(df["sentiment"], errors="coerce")
        if ((s < -1) | (s > 1)).any():
            raise DataValidationError("news_articles: sentiment outside [-1, 1]")


BARS = TableSpec(
    "bars_1m",
    (*BAR_COLUMNS, "source", "ingested_at"),
    ("ticker", "ts"),
    check=require_valid_bars,  # what makes a bar valid: db.bar_rule
    timestamps=("ts", "ingested_at"),
)
NEWS = TableSpec(
    "news_articles",
    (
        "article_key",
        "ticker",
        "published_at",
        "source",
        "title",
        "url",
        "summary",
        "sentiment",
        "sentiment_model",
        "ingested_at",
        "available_at",
    ),
    ("article_key", "ticker"),
    finite=("sentiment",),
    check=_check_sentiment,
    timestamps=("published_at", "ingested_at", "available_at"),
)
MACRO = TableSpec(
    "macro_observations",
    ("series_id", "obs_date", "realtime_start", "value", "source", "ingested_at"),
    ("series_id", "obs_date", "realtime_start"),
    finite=("value",),
    timestamps=("realtime_start", "ingested_at"),
)
CORPORATE_ACTIONS = TableSpec(
    "corporate_actions",
    ("ticker", "ex_date", "action_type", "value", "source", "detected_at", "applied_at", "factor"),
    ("ticker", "ex_date", "action_type"),
    finite=("value",),
    non_negative=("value",),
    timestamps=("detected_at", "applied_at"),
)
BACKFILL = TableSpec(
    "backfill_queue",
    (
        "ticker",
        "gap_start",
        "gap_end",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "updated_at",
    ),
    ("ticker", "gap_start"),
    timestamps=("gap_start", "gap_end", "created_at", "updated_at"),
)
SIGNALS = TableSpec(
    "signals",
    (
        "ticker",
        "bar_ts",
        "model_version",
        "action",
        "confidence",
        "lstm_label",
        "lstm_p_down",
        "lstm_p_neutral",
        "lstm_p_up",
        "transformer_label",
        "transformer_p_down",
        "transformer_p_neutral",
        "transformer_p_up",
        "close",
        "reason",
        "created_at",
        "role",
        "provisional",
    ),
    ("ticker", "bar_ts", "model_version"),
    finite=(
        "confidence",
        "lstm_p_down",
        "lstm_p_neutral",
        "lstm_p_up",
        "transformer_p_down",
        "transformer_p_neutral",
        "transformer_p_up",
    ),
    timestamps=("bar_ts", "created_at"),
)
OUTCOMES = TableSpec(
    "outcomes",
    ("ticker", "bar_ts", "label_key", "label", "fwd_return", "exit_ts", "computed_at"),
    ("ticker", "bar_ts", "label_key"),
    timestamps=("bar_ts", "exit_ts", "computed_at"),
)
HEARTBEATS = TableSpec(
    "worker_heartbeats",
    ("worker", "last_beat", "pid", "status", "details"),
    ("worker",),
    timestamps=("last_beat",),
)
DRIFT = TableSpec(
    "drift_metrics",
    ("checked_at", "model_version", "metric", "feature", "value", "threshold", "alarm"),
    ("checked_at", "model_version", "metric", "feature"),
    timestamps=("checked_at",),
)

QUARANTINED_BARS = TableSpec(
    "quarantined_bars",
    (
        "id",
        "ticker",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "source",
        "reason",
        "detail",
        "status",
        "flagged_at",
        "decided_at",
        "decided_by",
        "decision_reason",
    ),
    ("id",),
    timestamps=("ts", "flagged_at", "decided_at"),
)
TICKER_HOLDS = TableSpec(
    "ticker_holds",
    (
        "id",
        "ticker",
        "onset_ts",
        "reason",
        "detail",
        "source",
        "status",
        "flagged_at",
        "decided_at",
        "decided_by",
        "decision_reason",
    ),
    ("ticker", "onset_ts"),
    timestamps=("onset_ts", "flagged_at", "decided_at"),
)
RECONCILIATION = TableSpec(
    "daily_reconciliation",
    (
        "ticker",
        "session_date",
        "source",
        "status",
        *(
            f"{side}_{field}"
            for side in ("stored", "source")
            for field in ("open", "high", "low", "close", "volume")
        ),
        "max_price_diff",
        "detail",
        "checked_at",
    ),
    ("ticker", "session_date"),
    timestamps=("checked_at",),
)
INPUT_FLAGS = TableSpec(
    "input_flags",
    ("id", "feed", "item_key", "action", "reason", "detail", "flagged_at"),
    ("id",),
    timestamps=("flagged_at",),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        BARS,
        NEWS,
        MACRO,
        CORPORATE_ACTIONS,
        BACKFILL,
        SIGNALS,
        OUTCOMES,
        HEARTBEATS,
        DRIFT,
        QUARANTINED_BARS,
        TICKER_HOLDS,
        RECONCILIATION,
        INPUT_FLAGS,
    )
}

ALERT_EVENTS = TableSpec(
    "alert_events",
    ("id", "kind", "fingerprint", "payload", "created_at", "routed_at"),
    ("fingerprint",),
    timestamps=("created_at", "routed_at"),
)
ALERT_DELIVERIES = TableSpec(
    "alert_deliveries",
    (
        "event_id",
        "channel",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "waiting_reason",
        "last_error",
        "sent_at",
        "created_at",
        "updated_at",
    ),
    ("event_id", "channel"),
    timestamps=("next_attempt_at", "claimed_until", "sent_at", "created_at", "updated_at"),
)
ALERT_CHANNELS = TableSpec(
    "alert_channels",
    (
        "id",
        "name",
        "url",
        "enabled",
        "quiet_hours",
        "max_per_minute",
        "created_by",
        "created_at",
        "updated_by",
        "updated_at",
    ),
    ("name",),
    timestamps=("created_at", "updated_at"),
)
ALERT_RULES = TableSpec(
    "alert_rules",
    (
        "id",
        "channel",
        "kinds",
        "tickers",
        "min_confidence",
        "enabled",
        "created_by",
        "created_at",
        "updated_by",
        "updated_at",
    ),
    ("id",),
    timestamps=("created_at", "updated_at"),
)
TABLES.update(
    {spec.name: spec for spec in (ALERT_EVENTS, ALERT_DELIVERIES, ALERT_CHANNELS, ALERT_RULES)}
)
