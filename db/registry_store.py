"""The model registry's stores: the registry file and the `model_events` table.

The registry file (`settings.model_config_path`, JSON) says what serves: the champion and its
files' checksums, the versions pinned for comparison, the history of changes, and the events not
yet written to `model_events` (`unrecorded_events`: the database was unreachable when they
happened). Its schema lives here so that every layer reads it the same way: `read_registry` and
`champion_version` validate the whole file. `ml.models.registry` alone changes it, under its lock,
and writes its events to the table with `record_model_events` (see `ml.models.registry` for the
order of the two writes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from config.settings import get_settings
from core.validation import read_json_model
from db.alerts import enqueue_event
from db.connections import connect
from db.notify import REGISTRY, notify

Actor = str  # "validation", "drift_monitor", "analyst:<name>", "cli"
ALERT_KINDS = {"promoted": "promotion", "rolled_back": "rollback"}


class RegistryError(RuntimeError):
    """The registry file is malformed or asks for something impossible."""


class ChampionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1)
    path: str
    files: dict[str, str]  # file name -> sha256
    promoted_at: str
    promoted_by: Actor
    reason: str
    # served although it has not beaten the baselines (no model has shown an edge yet)
    provisional: bool = False
    provisional_reason: str | None = None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: str
    event: Literal["promoted", "rolled_back", "pinned", "unpinned"]
    version: str
    previous: str | None
    by: Actor
    reason: str


class ModelEvent(BaseModel):
    """One row of `model_events`: a change of the history, or a refused change."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)  # unique: an event is stored once, however often it is sent
    at: str
    event: Literal["promoted", "rolled_back", "pinned", "unpinned", "refused"]
    version: str
    previous: str | None
    by: Actor
    reason: str


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    champion: ChampionEntry | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    pinned: list[str] = Field(default_factory=list)  # versions an analyst scores in shadow
    updated_at: str | None = None
    # events of the history (and refusals) not yet in `model_events`, oldest first
    unrecorded_events: list[ModelEvent] = Field(default_factory=list)


def read_registry(path: Path | None = None) -> Registry:
    """The registry (default: `settings.model_config_path`); an empty one when the file does
    not exist yet. `RegistryError` names what is wrong with a file that cannot be used."""
    path = path or get_settings().model_config_path
    if not path.exists():
        return Registry()
    try:
        return read_json_model(path, Registry, RegistryError, "a model registry")
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise RegistryError(f"{path} cannot be read: {exc}") from None


def champion_version(path: Path | None = None) -> str | None:
    """The version the registry names as champion (None: no champion yet); `RegistryError`
    when the file cannot be read or is not a valid registry."""
    champion = read_registry(path).champion
    return champion.version if champion else None


def registry_json(registry: Registry) -> str:
    """The registry file's text."""
    return json.dumps(registry.model_dump(), indent=2) + "\n"


_INSERT_ONCE = text(
    "INSERT INTO model_events (at, event, version, previous_version, actor, reason, details) "
    "SELECT CAST(:at AS timestamptz), CAST(:e AS text), CAST(:v AS text), CAST(:p AS text), "
    "CAST(:a AS text), CAST(:r AS text), CAST(:d AS jsonb) "
    "WHERE NOT EXISTS (SELECT 1 FROM model_events WHERE details ->> 'event_id' = :id) "
    "RETURNING id"
)


def record_model_events(events: Sequence[ModelEvent]) -> int:
    """Store `events` in `model_events`, in order and in one transaction; an event whose id is
    stored already is skipped. Each promotion or rollback stored enqueues its alert
    (`db.alerts`) and each event notifies the scoring worker (`db.notify.REGISTRY`) in the same
    transaction. Returns how many were stored."""
    if not events:
        return 0
    stored = 0
    with connect() as conn:
        for e in events:
            params = {
                "at": e.at,
                "e": e.event,
                "v": e.version,
                "p": e.previous,
                "a": e.by,
                "r": e.reason,
                "d": json.dumps({"event_id": e.id}),
                "id": e.id,
            }
            row_id = conn.execute(_INSERT_ONCE, params).scalar_one_or_none()
            if row_id is None:
                continue
            stored += 1
            kind = ALERT_KINDS.get(e.event)
            if kind is not None:
                payload = {
                    "model_version": e.version,
                    "role": "champion",
                    "previous_version": e.previous,
                    "actor": e.by,
                    "reason": e.reason,
                }
                enqueue_event(conn, kind, payload, f"model_event:{row_id}")
            notify(conn, REGISTRY, f"{e.event} {e.version}")
    return stored
