"""The model registry: which model version serves, and the history of every change.

**One source of truth.** What serves is what the registry file says (`config/model_config.json`;
its schema and readers are in `db.registry_store`, which the workers read too). `model_events`
holds the same history for the app's pages and the alerts, and cannot disagree with the file:
every change (promotion, rollback, pin, unpin, and a refused change) runs under the registry's
lock file in three steps,

1. the file is replaced atomically (temporary file, fsync, `os.replace`) with the change made
   and its event appended to the file's queue of events not yet in the table
   (`unrecorded_events`);
2. the whole queue, oldest first, is written to `model_events` in one transaction: each event
   carries a unique id and is stored once however often it is sent, with the time of the change
   (a promotion's or rollback's alert is enqueued in the same transaction);
3. the file is replaced again with the queue emptied.

So the file's history is always the table's plus the file's queue. A failure at step 1 changes
neither store. The database being unreachable at step 2 does not stop a change (serving never
waits for the database): its event stays queued in the file and reaches the table at the next
change that finds the database. A failure at step 3 leaves events queued that the next change
finds stored already. A refused change writes the file only to queue its event or to empty the
queue. Readers never see a half-written file; a malformed file raises `RegistryError` naming
what is wrong.

A change of champion is a compare-and-swap: `promote` and `rollback` take the champion their
caller decided on (`expected_champion`) and, under the lock, refuse with `RegistryConflict` when
another change replaced it since (recorded as a `refused` event), so a decision taken on an old
champion never undoes a newer one; a rollback picks its target under the same lock. Before a
version is recorded (promoted, rolled back to, pinned) its model files are checked against the
checksums its metadata.json recorded at training: a file that differs is refused, nothing is
recorded and the champion keeps serving.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Final, Literal

import pandas as pd

from config.settings import Settings, get_settings
from core.files import write_text_atomic
from core.locks import file_lock
from db.registry_store import Actor, ChampionEntry, ModelEvent, record_model_events, registry_json
from db.registry_store import HistoryEntry as HistoryEntry
from db.registry_store import Registry as Registry
from db.registry_store import RegistryError as RegistryError
from db.registry_store import read_registry as read_registry
from ml.models.metadata import MetadataError, check_version_name, read_metadata_file
from ml.models.metadata import sha256_file as sha256_file

log = logging.getLogger(__name__)

MODEL_FILES = ("lstm.tflite", "transformer.tflite", "metadata.json")


class RegistryConflict(RegistryError):
    """The champion changed between the caller's read and its promotion or rollback."""

    def __init__(
        self, action: str, requested: str | None, expected: str | None, actual: str | None
    ) -> None:
        self.requested, self.expected, self.actual = requested, expected, actual
        super().__init__(
            f"{action} refused: the champion changed since it was read (expected "
            f"{expected or 'no champion'}, now {actual or 'no champion'}); nothing was changed"
        )


class _Unchecked(Enum):
    ANY = "any champion"


# `expected_champion` of a change made whatever the champion is (scripts and tests)
ANY_CHAMPION: Final = _Unchecked.ANY
ExpectedChampion = str | None | Literal[_Unchecked.ANY]


def _now() -> str:
    return str(pd.Timestamp.now(tz="UTC").isoformat())


def write_registry(registry: Registry, path: Path | None = None) -> None:
    """Atomically replace the registry file."""
    path = path or get_settings().model_config_path
    registry.updated_at = _now()
    write_text_atomic(path, registry_json(registry))


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


def verified_checksums(version: str, settings: Settings | None = None) -> dict[str, str]:
    """The SHA-256 of the version's files to record, each model file checked against the
    checksum its metadata.json recorded at training; `RegistryError` names a file that is
    missing or differs (the version is then not recorded)."""
    folder = version_dir(version, settings)
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise RegistryError(f"model version {version} lacks {missing} in {folder}")
    metadata_sum = sha256_file(folder / "metadata.json")
    try:
        metadata = read_metadata_file(folder / "metadata.json")
        check_version_name(metadata, version)
        checksums = metadata.verify_files(folder)
    except MetadataError as exc:
        raise RegistryError(f"model version {version} is not recorded: {exc}") from None
    return {**checksums, "metadata.json": metadata_sum}


@dataclass(frozen=True)
class _Change:
    """A change of champion: what is recorded in the history."""

    event: Literal["promoted", "rolled_back"]
    action: str  # "promotion of <v>", "rollback to ...": how a refusal names it
    by: Actor
    reason: str
    provisional_reason: str | None = None


def promote(
    version: str,
    *,
    by: Actor,
    reason: str,
    expected_champion: ExpectedChampion = ANY_CHAMPION,
    settings: Settings | None = None,
    provisional_reason: str | None = None,
) -> Registry:
    """Make `version` the champion (recording the previous one in the history). With
    `provisional_reason` it serves marked unproven: it has not beaten the baselines.

    `expected_champion` is the champion the decision was taken on (None: none served); when
    another change has replaced it, `RegistryConflict` is raised and nothing changes. The
    version's model files must match the checksums in its metadata.json."""
    change = _Change("promoted", f"promotion of {version}", by, reason, provisional_reason)
    return _change_champion(
        lambda _: version, version, change, expected_champion, settings or get_settings()
    )


def rollback(
    *,
    by: Actor,
    reason: str,
    to: str | None = None,
    expected_champion: ExpectedChampion = ANY_CHAMPION,
    settings: Settings | None = None,
) -> Registry:
    """Roll the champion back to `to` (default: the previous stable champion, chosen under the
    registry's lock). `expected_champion` as for `promote`: the champion the caller measured or
    showed; `RegistryConflict` when it has been replaced since."""
    action = f"rollback to {to}" if to else "rollback to the previous stable champion"
    change = _Change("rolled_back", action, by, reason)
    target = partial(_rollback_target, to)
    return _change_champion(target, to, change, expected_champion, settings or get_settings())


def _rollback_target(to: str | None, registry: Registry) -> str:
    if registry.champion is None:
        raise RegistryError("there is no champion to roll back")
    target = to or previous_champion(registry)
    if target is None:
        raise RegistryError("no earlier champion to roll back to")
    return target


def _change_champion(
    target: Callable[[Registry], str],
    requested: str | None,
    change: _Change,
    expected: ExpectedChampion,
    settings: Settings,
) -> Registry:
    """Under the lock: check the champion is still `expected`, choose the version, verify its
    files, and record the change in the file and in `model_events`."""
    if not change.reason.strip():
        raise RegistryError("a promotion or rollback needs a reason")
    path = settings.model_config_path
    with _locked(path):
        registry = read_registry(path)
        previous = registry.champion.version if registry.champion else None
        if expected is not ANY_CHAMPION and expected != previous:
            conflict = RegistryConflict(change.action, requested, expected, previous)
            _refuse(path, registry, conflict, change.by)
            raise conflict
        version = target(registry)
        _set_champion(registry, version, change, settings)
        _record(path, registry, _event(change.event, version, previous, change.by, change.reason))
    log.info(
        "%s %s (previous %s) by %s: %s", change.event, version, previous, change.by, change.reason
    )
    return registry


def _refuse(path: Path, registry: Registry, conflict: RegistryConflict, by: Actor) -> None:
    """Record a refused change as a `refused` event (the registry itself is unchanged)."""
    log.warning("%s (by %s)", conflict, by)
    recorded = conflict.requested or conflict.expected or conflict.actual or ""
    refused = _event("refused", recorded, conflict.actual, by, str(conflict))
    _save(path, registry, [refused], changed=False)


def _set_champion(registry: Registry, version: str, change: _Change, settings: Settings) -> None:
    """`version` (its files verified) as the champion, no longer pinned."""
    checksums = verified_checksums(version, settings)
    registry.champion = ChampionEntry(
        version=version,
        path=str(version_dir(version, settings)),
        files=checksums,
        promoted_at=_now(),
        promoted_by=change.by,
        reason=change.reason,
        provisional=change.provisional_reason is not None,
        provisional_reason=change.provisional_reason,
    )
    registry.pinned = [v for v in registry.pinned if v != version]


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


def _event(
    event: Literal["promoted", "rolled_back", "pinned", "unpinned", "refused"],
    version: str,
    previous: str | None,
    by: Actor,
    reason: str,
) -> ModelEvent:
    return ModelEvent(
        id=uuid.uuid4().hex,
        at=_now(),
        event=event,
        version=version,
        previous=previous,
        by=by,
        reason=reason,
    )


def _record(path: Path, registry: Registry, event: ModelEvent) -> None:
    """Append `event` (a change of the history) to the history, then save both stores."""
    registry.history.append(HistoryEntry.model_validate(event.model_dump(exclude={"id"})))
    _save(path, registry, [event])


def _save(
    path: Path, registry: Registry, events: list[ModelEvent], *, changed: bool = True
) -> None:
    """Under the lock: the file (when `changed`) with `events` queued, then the queue in
    `model_events`, then the file with the queue emptied (the module docstring says why)."""
    had_queue = bool(registry.unrecorded_events)
    registry.unrecorded_events = [*registry.unrecorded_events, *events]
    if changed:
        write_registry(registry, path)
    try:
        record_model_events(registry.unrecorded_events)
    except Exception as exc:  # the database is unreachable (or refused): the events wait
        log.warning(
            "model_events cannot be written (%s): %d registry event(s) stay queued in %s "
            "and are written at the next change",
            exc,
            len(registry.unrecorded_events),
            path,
        )
        if not changed:
            write_registry(registry, path)
        return
    if not (changed or had_queue):
        return
    registry.unrecorded_events = []
    try:
        write_registry(registry, path)
    except OSError as exc:  # stored once: the next change finds them in the table already
        log.warning("%s keeps events stored in model_events queued: %s", path, exc)


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
            verified_checksums(version, settings)  # complete, its files as trained
            if version not in registry.pinned:
                registry.pinned.append(version)
        else:
            registry.pinned = [v for v in registry.pinned if v != version]
        champion = registry.champion.version if registry.champion else None
        why = "scores in shadow for comparison" if pinned else "no longer compared"
        event = _event("pinned" if pinned else "unpinned", version, champion, by, why)
        _record(path, registry, event)
    return registry


EXIT_ERROR = 2  # the registry cannot be read, or the change is impossible (message on stderr)
EXIT_CONFLICT = 3  # the champion changed since the one given with --expected-champion


def main(argv: list[str] | None = None) -> int:
    """`python -m ml.models.registry status | promote VERSION --reason R | rollback [VERSION] --reason R`
    (with `--expected-champion V`: only while V is still the champion)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m ml.models.registry", description="Show or change the champion model."
    )
    parser.add_argument("action", choices=["status", "promote", "rollback"])
    parser.add_argument("version", nargs="?", help="version to promote (or roll back to)")
    parser.add_argument("--reason", default="", help="why (recorded in the history)")
    parser.add_argument("--by", default="cli", help="who or what acts (recorded)")
    parser.add_argument(
        "--expected-champion",
        metavar="VERSION",
        help="change only while VERSION is still the champion, as `status` showed it ('none': "
        "no champion); a change made meanwhile is then not overwritten",
    )
    args = parser.parse_args(argv)
    if args.action == "promote" and not args.version:
        parser.error("promote needs a VERSION")
    expected: ExpectedChampion = ANY_CHAMPION
    if args.expected_champion is not None:
        expected = None if args.expected_champion == "none" else args.expected_champion
    try:
        if args.action == "promote":
            promote(args.version, by=args.by, reason=args.reason, expected_champion=expected)
        elif args.action == "rollback":
            rollback(by=args.by, reason=args.reason, to=args.version, expected_champion=expected)
        registry = read_registry()
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFLICT if isinstance(exc, RegistryConflict) else EXIT_ERROR
    _print_status(registry)
    return 0


def _print_status(registry: Registry) -> None:
    champ = registry.champion
    print(
        f"champion: {champ.version if champ else 'none'}"
        + (f" (by {champ.promoted_by}: {champ.reason})" if champ else "")
    )
    print(f"versions on disk: {', '.join(list_versions()) or 'none'}")
    for h in registry.history[-10:]:
        print(f"  {h.at}  {h.event:11} {h.version}  by {h.by}: {h.reason}")
    if registry.unrecorded_events:
        print(f"not yet in model_events: {len(registry.unrecorded_events)} event(s)")


if __name__ == "__main__":
    raise SystemExit(main())
