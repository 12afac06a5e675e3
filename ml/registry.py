"""The model registry, `config/model_config.json`: the champion and the history of champions.

Every write is atomic (temporary file in the same folder, fsync, `os.replace`), serialised by a
lock file, and schema-checked; readers never see a half-written file. A malformed file raises
`RegistryError` naming what is wrong. Events are also appended to the `model_events` table (for
the app's history page) when the database is reachable.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from config.settings import Settings, get_settings
from core.files import write_text_atomic
from core.locks import file_lock
from core.validation import read_json_model

log = logging.getLogger(__name__)

MODEL_FILES = ("lstm.tflite", "transformer.tflite", "metadata.json")
Actor = str  # "validation", "drift_monitor", "analyst:<name>", "cli"


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


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    champion: ChampionEntry | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    pinned: list[str] = Field(default_factory=list)  # versions an analyst scores in shadow
    updated_at: str | None = None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return str(pd.Timestamp.now(tz="UTC").isoformat())


def read_registry(path: Path | None = None) -> Registry:
    """The registry; an empty one when the file does not exist yet."""
    path = path or get_settings().model_config_path
    if not path.exists():
        return Registry()
    return read_json_model(path, Registry, RegistryError, "a model registry")


def write_registry(registry: Registry, path: Path | None = None) -> None:
    """Atomically replace the registry file."""
    path = path or get_settings().model_config_path
    registry.updated_at = _now()
    write_text_atomic(path, json.dumps(registry.model_dump(), indent=2) + "\n")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise registry changes (every writer waits its turn)."""
    with file_lock(path.with_suffix(".lock"), "a registry change", wait=True):
        yield


def version_dir(version: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    if not version or "/" in version or version.startswith("."):
        raise RegistryError(f"invalid model version name {version!r}")
    return settings.models_dir / version


def list_versions(settings: Settings | None = None) -> list[str]:
    """Complete model versions (with metadata.json), oldest first."""
    settings = settings or get_settings()
    if not settings.models_dir.exists():
        return []
    return sorted(p.name for p in settings.models_dir.iterdir() if (p / "metadata.json").is_file())


def file_checksums(version: str, settings: Settings | None = None) -> dict[str, str]:
    folder = version_dir(version, settings)
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise RegistryError(f"model version {version} lacks {missing} in {folder}")
    return {name: sha256_file(folder / name) for name in MODEL_FILES}


def promote(
    version: str,
    *,
    by: Actor,
    reason: str,
    settings: Settings | None = None,
    event: Literal["promoted", "rolled_back"] = "promoted",
    provisional_reason: str | None = None,
) -> Registry:
    """Make `version` the champion (recording the previous one in the history). With
    `provisional_reason` it serves marked unproven: it has not beaten the baselines."""
    settings = settings or get_settings()
    path = settings.model_config_path
    if not reason.strip():
        raise RegistryError("a promotion or rollback needs a reason")
    with _locked(path):
        registry = read_registry(path)
        checksums = file_checksums(version, settings)
        previous = registry.champion.version if registry.champion else None
        registry.champion = ChampionEntry(
            version=version,
            path=str(version_dir(version, settings)),
            files=checksums,
            promoted_at=_now(),
            promoted_by=by,
            reason=reason,
            provisional=provisional_reason is not None,
            provisional_reason=provisional_reason,
        )
        registry.pinned = [v for v in registry.pinned if v != version]
        registry.history.append(
            HistoryEntry(
                at=_now(),
                event=event,
                version=version,
                previous=previous,
                by=by,
                reason=reason,
            )
        )
        write_registry(registry, path)
    _record_event(event, version, previous, by, reason)
    log.info("%s %s (previous %s) by %s: %s", event, version, previous, by, reason)
    return registry


def previous_champion(registry: Registry) -> str | None:
    """The champion before the current one that was not itself rolled back from."""
    current = registry.champion.version if registry.champion else None
    changes = [h for h in registry.history if h.event in ("promoted", "rolled_back")]
    rolled_back_from = {h.previous for h in changes if h.event == "rolled_back"}
    for entry in reversed(changes):
        candidate = entry.previous
        if candidate and candidate != current and candidate not in rolled_back_from:
            return candidate
    return None


def rollback(
    *, by: Actor, reason: str, to: str | None = None, settings: Settings | None = None
) -> Registry:
    """Roll the champion back to `to` (default: the previous stable champion)."""
    settings = settings or get_settings()
    registry = read_registry(settings.model_config_path)
    if registry.champion is None:
        raise RegistryError("there is no champion to roll back")
    target = to or previous_champion(registry)
    if target is None:
        raise RegistryError("no earlier champion to roll back to")
    return promote(target, by=by, reason=reason, settings=settings, event="rolled_back")


def _record_event(event: str, version: str, previous: str | None, by: str, reason: str) -> None:
    try:
        from db.models import record_model_event

        record_model_event(event, version, previous, by, reason)
    except Exception as exc:  # the registry file is the source of truth
        log.warning("could not record %s of %s in model_events: %s", event, version, exc)


def pin(
    version: str, *, by: Actor, pinned: bool = True, settings: Settings | None = None
) -> Registry:
    """Pin (or unpin) a version for comparison: a pinned version scores every new bar in shadow
    beside the champion and the newest challenger."""
    settings = settings or get_settings()
    path = settings.model_config_path
    with _locked(path):
        registry = read_registry(path)
        if pinned:
            file_checksums(version, settings)  # a complete version only
            if version not in registry.pinned:
                registry.pinned.append(version)
        else:
            registry.pinned = [v for v in registry.pinned if v != version]
        champion = registry.champion.version if registry.champion else None
        registry.history.append(
            HistoryEntry(
                at=_now(),
                event="pinned" if pinned else "unpinned",
                version=version,
                previous=champion,
                by=by,
                reason="scores in shadow for comparison" if pinned else "no longer compared",
            )
        )
        write_registry(registry, path)
    return registry


def main(argv: list[str] | None = None) -> int:
    """`python -m ml.registry status | promote VERSION --reason R | rollback --reason R`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m ml.registry", description="Show or change the champion model."
    )
    parser.add_argument("action", choices=["status", "promote", "rollback"])
    parser.add_argument("version", nargs="?", help="version to promote (or roll back to)")
    parser.add_argument("--reason", default="", help="why (recorded in the history)")
    parser.add_argument("--by", default="cli", help="who or what acts (recorded)")
    args = parser.parse_args(argv)
    try:
        if args.action == "promote":
            if not args.version:
                parser.error("promote needs a VERSION")
            promote(args.version, by=args.by, reason=args.reason)
        elif args.action == "rollback":
            rollback(by=args.by, reason=args.reason, to=args.version)
        registry = read_registry()
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    champ = registry.champion
    print(
        f"champion: {champ.version if champ else 'none'}"
        + (f" (by {champ.promoted_by}: {champ.reason})" if champ else "")
    )
    print(f"versions on disk: {', '.join(list_versions()) or 'none'}")
    for h in registry.history[-10:]:
        print(f"  {h.at}  {h.event:11} {h.version}  by {h.by}: {h.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
