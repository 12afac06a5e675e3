"""Reads and writes of the models' history: registry events, validation reports, drift checks.

The registry file (`config/model_config.json`) is the source of truth for which version serves;
`model_events` mirrors its changes for the history page, `model_evaluations` keeps every gate
report, `drift_metrics` every drift figure and alarm state.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pandas as pd
from sqlalchemy import text

from core.timeutil import utc
from db.alerts import enqueue_event
from db.connections import connect, execute
from db.notify import REGISTRY, notify
from db.reads import read_from_db

ORIGIN = "2000-01-03T00:00:00+00:00"


def record_model_event(
    event: str, version: str, previous: str | None, actor: str, reason: str
) -> None:
    """Append a promotion, rollback or pin to `model_events` and notify the scoring worker;
    a promotion or rollback also enqueues its alert (`db.alerts`) in the same transaction."""
    with connect() as conn:
        event_id = conn.execute(
            text(
                "INSERT INTO model_events (event, version, previous_version, actor, reason) "
                "VALUES (:e, :v, :p, :a, :r) RETURNING id"
            ),
            {"e": event, "v": version, "p": previous, "a": actor, "r": reason},
        ).scalar_one()
        kind = {"promoted": "promotion", "rolled_back": "rollback"}.get(event)
        if kind is not None:
            payload = {
                "model_version": version,
                "role": "champion",
                "previous_version": previous,
                "actor": actor,
                "reason": reason,
            }
            enqueue_event(conn, kind, payload, f"model_event:{event_id}")
        notify(conn, REGISTRY, f"{event} {version}")


def model_events(limit: int = 200) -> pd.DataFrame:
    """Registry events as recorded in the database, newest first."""
    return read_from_db(
        "SELECT at, event, version, previous_version, actor, reason FROM model_events "
        "ORDER BY at DESC, id DESC LIMIT :n",
        {"n": limit},
    )


def store_evaluation(
    challenger: str, champion: str | None, promoted: bool, report: dict[str, Any]
) -> None:
    """Keep a gate report in `model_evaluations`."""
    execute(
        "INSERT INTO model_evaluations (challenger, champion, promoted, report) "
        "VALUES (:c, :h, :p, CAST(:r AS jsonb))",
        {
            "c": challenger,
            "h": champion,
            "p": promoted,
            "r": json.dumps(report, default=str),
        },
    )


def evaluations(limit: int = 50) -> pd.DataFrame:
    """The newest validation runs: id, at, challenger, champion, promoted."""
    return read_from_db(
        "SELECT id, at, challenger, champion, promoted FROM model_evaluations "
        "ORDER BY at DESC, id DESC LIMIT :n",
        {"n": limit},
    )


def evaluation_report(evaluation_id: int) -> dict[str, Any] | None:
    """The stored report of one validation run."""
    frame = read_from_db(
        "SELECT report FROM model_evaluations WHERE id = :i", {"i": int(evaluation_id)}
    )
    if frame.empty:
        return None
    report = frame.iloc[0]["report"]
    return dict(report) if isinstance(report, dict) else None


def latest_evaluation_of(challenger: str) -> dict[str, Any] | None:
    """The newest gate report of `challenger`."""
    frame = read_from_db(
        "SELECT report FROM model_evaluations WHERE challenger = :c "
        "ORDER BY at DESC, id DESC LIMIT 1",
        {"c": challenger},
    )
    if frame.empty:
        return None
    report = frame.iloc[0]["report"]
    return dict(report) if isinstance(report, dict) else None


class LabStamp(NamedTuple):
    """What changes when the lab, history or drift views must be rebuilt (one cheap query)."""

    evaluation_id: int | None
    event_id: int | None
    drift_checked_at: pd.Timestamp | None


def _int_or_none(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def lab_stamp() -> LabStamp:
    """The newest evaluation, registry event and drift check (index lookups)."""
    row = read_from_db(
        "SELECT (SELECT max(id) FROM model_evaluations) AS evaluation_id, "
        "(SELECT max(id) FROM model_events) AS event_id, "
        "(SELECT max(checked_at) FROM drift_metrics) AS drift_checked_at"
    ).iloc[0]
    checked = row["drift_checked_at"]
    return LabStamp(
        _int_or_none(row["evaluation_id"]),
        _int_or_none(row["event_id"]),
        None if checked is None or pd.isna(checked) else utc(checked),
    )


# --------------------------------------------------------------------------- drift


def drift_metrics(since: Any) -> pd.DataFrame:
    """Drift checks since `since`: checked_at, model_version, metric, feature, value,
    threshold, alarm (oldest first)."""
    frame = read_from_db(
        "SELECT checked_at, model_version, metric, feature, value, threshold, alarm "
        "FROM drift_metrics WHERE checked_at >= :since ORDER BY checked_at",
        {"since": utc(since)},
    )
    frame["checked_at"] = pd.to_datetime(frame["checked_at"], utc=True)
    return frame


def alarm_states(version: str, prefix: str) -> pd.DataFrame:
    """The newest value and alarm flag of each metric of `version` named `<prefix>...`."""
    return read_from_db(
        "SELECT DISTINCT ON (metric) metric, value, alarm FROM drift_metrics "
        "WHERE model_version = :v AND metric LIKE :p ORDER BY metric, checked_at DESC",
        {"v": version, "p": f"{prefix}%"},
    )


def live_confidence(version: str, since: Any, bucket: str = "1 hour") -> pd.DataFrame:
    """Mean top-class probability of each model of `version` per time bucket, from its scored
    bars (champion or shadow), with how often its two models agreed."""
    frame = read_from_db(
        "SELECT date_bin(CAST(:bucket AS interval), bar_ts, CAST(:origin AS timestamptz)) AS ts, "
        "avg(GREATEST(lstm_p_down, lstm_p_neutral, lstm_p_up)) AS lstm, "
        "avg(GREATEST(transformer_p_down, transformer_p_neutral, transformer_p_up)) "
        "AS transformer, avg(CASE WHEN lstm_label = transformer_label THEN 1.0 ELSE 0.0 END) "
        "AS agreement, count(*) AS signals "
        "FROM signals WHERE model_version = :v AND bar_ts >= :since GROUP BY 1 ORDER BY 1",
        {"bucket": bucket, "origin": ORIGIN, "v": version, "since": utc(since)},
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame
