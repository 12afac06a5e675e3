"""Reads for the model lab and the drift page: registry, evaluations, drift metrics, history."""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd
import streamlit as st

from app import live
from app.data import cached_data, from_db
from config.settings import get_settings
from db import models
from ml.lifecycle.report import ValidationReport, parse_report
from ml.lifecycle.scoreboard import Scoreboard
from ml.lifecycle.scoreboard import scoreboard as live_scoreboard
from ml.models.metadata import MetadataError, ModelMetadata, Provenance, version_metadata
from ml.models.registry import Registry, RegistryError, list_versions, read_registry, version_dir


class LabStamp(NamedTuple):
    """What changes when the lab, history or drift views must be rebuilt."""

    database: models.LabStamp  # the newest evaluation, registry event and drift check
    registry_mtime_ns: int | None


def lab_stamp() -> LabStamp:
    """The newest evaluation, registry event and drift check, and the registry file's mtime.

    The cached reads below are keyed on it, so a retrain, a validation, a promotion or a
    rollback (from any session or process) shows on the next rerun of every page."""
    try:
        mtime: int | None = get_settings().model_config_path.stat().st_mtime_ns
    except FileNotFoundError:
        mtime = None
    return LabStamp(from_db(models.lab_stamp), mtime)


def registry() -> Registry:
    """The model registry file (cheap to read; raises RegistryError when malformed)."""
    return read_registry(get_settings().model_config_path)


def champion_seen(form: str, champion: str | None) -> str | None:
    """The champion the page showed when `form` was last drawn, which a click on it refers to
    (the registry refuses the change when another one replaced it since); `champion`, shown
    now, is remembered for the next click."""
    key = f"champion_seen_{form}"
    seen: str | None = st.session_state.get(key, champion)
    st.session_state[key] = champion
    return seen


def challenger_problems() -> dict[str, str]:
    """Why each challenger that cannot score in shadow is left out (unreadable metadata, a file
    that differs from its checksum); the champion serves on."""
    return dict(live.serving().skipped)


def registry_history() -> pd.DataFrame:
    """Promotions and rollbacks, newest first (`at`: server time), with how each version was
    trained (`trained`: quick or full, and the training kind of every version named)."""
    rows = [h.model_dump() for h in reversed(registry().history)]
    cols = ["at", "event", "version", "previous", "by", "reason"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
    frame["trained"] = [_kind(v) for v in frame["version"]]
    return frame


def _kind(version: str) -> str:
    found = provenance(version)
    if found is None:
        return "not on disk"
    epochs = max(found.epochs.values(), default=None)
    if epochs is None:
        return found.kind
    return f"{found.kind}, {epochs} epoch{'' if epochs == 1 else 's'}"


def provenance(version: str) -> Provenance | None:
    """How `version` was trained; None when it is not on disk (read once per metadata file)."""
    try:
        mtime = (version_dir(version) / "metadata.json").stat().st_mtime_ns
    except (OSError, RegistryError):
        return None
    return _provenance(version, mtime)


@cached_data(ttl=3600, max_entries=256)
def _provenance(version: str, mtime_ns: int) -> Provenance | None:
    del mtime_ns  # the cache key
    try:
        return version_metadata(version).provenance
    except MetadataError:
        return None


def versions() -> pd.DataFrame:
    """Every complete model version with a summary of its metadata, newest first; `problem`
    says why a version cannot serve (its metadata unreadable, or why it does not score as a
    challenger)."""
    rows: list[dict[str, Any]] = []
    problems = challenger_problems()
    for version in reversed(list_versions()):
        try:
            meta = version_metadata(version)
        except MetadataError as exc:
            rows.append({"version": version, "problem": str(exc)})
            continue
        p = meta.provenance
        rows.append(
            {
                "version": version,
                "created_at": meta.created_at,  # server time
                "run": p.kind,
                "epochs": ", ".join(f"{m} {n}" for m, n in p.epochs.items()) or None,
                "train windows": p.train_windows,
                "validation windows": p.val_windows,
                "train": _span(meta.train_range),  # market time
                "validation": _span(meta.val_range),  # market time
                "features": len(meta.features),
                "window": meta.window_length,
                "macro_f1": _mean_f1(meta),
                **({"problem": problems[version]} if version in problems else {}),
            }
        )
    return pd.DataFrame(rows)


def _span(value: tuple[str, str] | None) -> str | None:
    return None if value is None else f"{value[0]} → {value[1]}"


def _mean_f1(meta: ModelMetadata) -> float | None:
    scores = [m.macro_f1 for m in meta.metrics.models.values()]
    return sum(scores) / len(scores) if scores else None


@cached_data(ttl=600, max_entries=4)
def evaluations(stamp: LabStamp, limit: int = 50) -> pd.DataFrame:
    """The newest validation runs: id, at, challenger, champion, promoted (keyed on `stamp`)."""
    del stamp  # the cache key
    return from_db(models.evaluations, limit)


def latest_report(stamp: LabStamp, challenger: str) -> ValidationReport | None:
    """The newest stored gate report of `challenger` (None: never validated); raises
    `ReportError` for a report this version cannot read."""
    runs = evaluations(stamp)
    mine = runs[runs["challenger"] == challenger]
    return None if mine.empty else evaluation_report(int(mine["id"].iloc[0]))


@cached_data(ttl=600, max_entries=16)
def evaluation_report(evaluation_id: int) -> ValidationReport | None:
    """The stored report of one validation run (reports never change once stored); raises
    `ReportError` for a report this version cannot read."""
    raw = from_db(models.evaluation_report, evaluation_id)
    return None if raw is None else parse_report(raw)


@cached_data(ttl=600, max_entries=8)
def model_events(stamp: LabStamp, limit: int = 200) -> pd.DataFrame:
    """Registry events as recorded in the database (newest first; keyed on `stamp`)."""
    del stamp  # the cache key
    return from_db(models.model_events, limit)


@cached_data(ttl=600, max_entries=8)
def drift_metrics(stamp: LabStamp, since: pd.Timestamp) -> pd.DataFrame:
    """Drift checks since `since`: checked_at, model_version, metric, feature, value, ...
    (keyed on `stamp`)."""
    del stamp  # the cache key
    return from_db(models.drift_metrics, since)


@cached_data(ttl=600, max_entries=8)
def live_confidence(
    signal_ts: pd.Timestamp | None, version: str, since: pd.Timestamp, bucket: str = "1 hour"
) -> pd.DataFrame:
    """Mean top-class probability of each model per time bucket, from the signals log (keyed on
    the version's newest signal, `signal_ts`)."""
    del signal_ts  # the cache key
    return from_db(models.live_confidence, version, since, bucket)


@cached_data(ttl=600, max_entries=8)
def scoreboard(
    signal_ts: pd.Timestamp | None, champion: str, challengers: tuple[str, ...]
) -> Scoreboard:
    """The live scoreboard of `champion` against `challengers` (keyed on the champion's newest
    signal: outcomes are stored in the scoring pass that writes it)."""
    del signal_ts  # the cache key
    champ = version_metadata(champion)
    others = [version_metadata(v) for v in challengers]
    return from_db(live_scoreboard, champ, others)
