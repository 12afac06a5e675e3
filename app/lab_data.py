"""Reads for the model lab and the drift page: registry, evaluations, drift metrics, history."""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd

from app.data import cached_data, query
from config.settings import get_settings
from ml.registry import Registry, RegistryError, list_versions, read_metadata, read_registry


class LabStamp(NamedTuple):
    """What changes when the lab, history or drift views must be rebuilt (one cheap query)."""

    evaluation_id: int | None
    event_id: int | None
    drift_checked_at: pd.Timestamp | None
    registry_mtime_ns: int | None


def _int_or_none(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def lab_stamp() -> LabStamp:
    """The newest evaluation, registry event and drift check, and the registry file's mtime.

    The cached reads below are keyed on it, so a retrain, a validation, a promotion or a
    rollback (from any session or process) shows on the next rerun of every page."""
    row = query(
        "SELECT (SELECT max(id) FROM model_evaluations) AS evaluation_id, "
        "(SELECT max(id) FROM model_events) AS event_id, "
        "(SELECT max(checked_at) FROM drift_metrics) AS drift_checked_at"
    ).iloc[0]
    try:
        mtime: int | None = get_settings().model_config_path.stat().st_mtime_ns
    except FileNotFoundError:
        mtime = None
    checked = row["drift_checked_at"]
    return LabStamp(
        _int_or_none(row["evaluation_id"]),
        _int_or_none(row["event_id"]),
        None if checked is None or pd.isna(checked) else pd.Timestamp(checked),
        mtime,
    )


def registry() -> Registry:
    """The model registry file (cheap to read; raises RegistryError when malformed)."""
    return read_registry(get_settings().model_config_path)


def registry_history() -> pd.DataFrame:
    """Promotions and rollbacks, newest first."""
    rows = [h.model_dump() for h in reversed(registry().history)]
    cols = ["at", "event", "version", "previous", "by", "reason"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
    return frame


def versions() -> pd.DataFrame:
    """Every complete model version with a summary of its metadata, newest first."""
    rows: list[dict[str, Any]] = []
    for version in reversed(list_versions()):
        try:
            meta = read_metadata(version)
        except RegistryError as exc:
            rows.append({"version": version, "problem": str(exc)})
            continue
        rows.append(
            {
                "version": version,
                "created_at": meta.get("created_at"),
                "train": _span(meta.get("train_range")),
                "validation": _span(meta.get("val_range") or meta.get("validation_range")),
                "features": len(meta.get("features", [])),
                "window": meta.get("window_length"),
            }
        )
    return pd.DataFrame(rows)


def _span(value: Any) -> str | None:
    if isinstance(value, dict):
        return f"{value.get('start', '?')} → {value.get('end', '?')}"
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]} → {value[1]}"
    return None if value is None else str(value)


@cached_data(ttl=600, max_entries=4)
def evaluations(stamp: LabStamp, limit: int = 50) -> pd.DataFrame:
    """The newest validation runs: id, at, challenger, champion, promoted (keyed on `stamp`)."""
    del stamp  # the cache key
    return query(
        "SELECT id, at, challenger, champion, promoted FROM model_evaluations "
        "ORDER BY at DESC, id DESC LIMIT :n",
        {"n": limit},
    )


@cached_data(ttl=600, max_entries=16)
def evaluation_report(evaluation_id: int) -> dict[str, Any] | None:
    """The stored report of one validation run."""
    frame = query("SELECT report FROM model_evaluations WHERE id = :i", {"i": int(evaluation_id)})
    if frame.empty:
        return None
    report = frame.iloc[0]["report"]
    return dict(report) if isinstance(report, dict) else None


@cached_data(ttl=600, max_entries=8)
def model_events(stamp: LabStamp, limit: int = 200) -> pd.DataFrame:
    """Registry events as recorded in the database (newest first; keyed on `stamp`)."""
    del stamp  # the cache key
    return query(
        "SELECT at, event, version, previous_version, actor, reason FROM model_events "
        "ORDER BY at DESC, id DESC LIMIT :n",
        {"n": limit},
    )


@cached_data(ttl=600, max_entries=8)
def drift_metrics(stamp: LabStamp, since: pd.Timestamp) -> pd.DataFrame:
    """Drift checks since `since`: checked_at, model_version, metric, feature, value, ...
    (keyed on `stamp`)."""
    del stamp  # the cache key
    frame = query(
        "SELECT checked_at, model_version, metric, feature, value, threshold, alarm "
        "FROM drift_metrics WHERE checked_at >= :since ORDER BY checked_at",
        {"since": since},
    )
    frame["checked_at"] = pd.to_datetime(frame["checked_at"], utc=True)
    return frame


@cached_data(ttl=600, max_entries=8)
def live_confidence(
    signal_ts: pd.Timestamp | None, version: str, since: pd.Timestamp, bucket: str = "1 hour"
) -> pd.DataFrame:
    """Mean top-class probability of each model per time bucket, from the signals log (keyed on
    the version's newest signal, `signal_ts`)."""
    del signal_ts  # the cache key
    frame = query(
        "SELECT date_bin(CAST(:bucket AS interval), bar_ts, CAST(:origin AS timestamptz)) AS ts, "
        "avg(GREATEST(lstm_p_down, lstm_p_neutral, lstm_p_up)) AS lstm, "
        "avg(GREATEST(transformer_p_down, transformer_p_neutral, transformer_p_up)) "
        "AS transformer, avg(CASE WHEN lstm_label = transformer_label THEN 1.0 ELSE 0.0 END) "
        "AS agreement, count(*) AS signals "
        "FROM signals WHERE model_version = :v AND bar_ts >= :since GROUP BY 1 ORDER BY 1",
        {"bucket": bucket, "origin": "2000-01-03T00:00:00+00:00", "v": version, "since": since},
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame
