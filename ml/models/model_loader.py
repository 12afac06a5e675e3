"""Load model versions as ready TFLite models; follow the registry as it changes.

`load_version(version)` reads the version's typed metadata, verifies each file's SHA-256 against
the metadata (and the registry's record when given), and returns the LSTM and Transformer
interpreters with the metadata that rebuilds their inputs. `ModelManager` keeps the versions that
serve: the champion (whose signals are shown) and the challengers that score every new bar in
shadow (the newest other version, and any version an analyst pins); when the registry or the
model folder changes it loads what is new and swaps it in atomically; if a new file is bad it
keeps what was serving and reports why in `last_error`. A challenger that cannot be loaded
(unreadable metadata, a file that differs from its checksum) does not score in shadow; the
champion serves on, and `Serving.skipped` says why for each such challenger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from config.settings import Settings, get_settings
from core.timeutil import utc_now
from ml.models.metadata import (
    MetadataError,
    ModelMetadata,
    check_version_name,
    read_metadata_file,
    sha256_file,
)
from ml.models.predict import TFLiteModel
from ml.models.registry import Registry, RegistryError, list_versions, read_registry, version_dir

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model version cannot be served (missing file, checksum mismatch, bad model)."""


@dataclass
class LoadedModels:
    version: str
    metadata: ModelMetadata
    lstm: TFLiteModel
    transformer: TFLiteModel
    registry_files: dict[str, str] = field(default_factory=dict)
    loaded_at: pd.Timestamp = field(default_factory=utc_now)

    @property
    def invocations(self) -> int:
        return self.lstm.invocations + self.transformer.invocations


def load_version(
    version: str, settings: Settings | None = None, expected: dict[str, str] | None = None
) -> LoadedModels:
    """Load one version, verifying checksums (from `expected`, else from its metadata)."""
    settings = settings or get_settings()
    try:
        return _load_version(version, settings, expected)
    except (RegistryError, MetadataError) as exc:
        raise ModelLoadError(str(exc)) from None
    except OSError as exc:
        raise ModelLoadError(f"{version}: a file cannot be read: {exc}") from None


def _load_version(
    version: str, settings: Settings, expected: dict[str, str] | None
) -> LoadedModels:
    """`load_version` itself; the errors of reading the files are left to it to word."""
    folder = version_dir(version, settings)
    metadata = read_metadata_file(folder / "metadata.json")
    check_version_name(metadata, version)
    if expected:
        meta_sum = expected.get("metadata.json")
        if meta_sum and sha256_file(folder / "metadata.json") != meta_sum:
            raise ModelLoadError(f"{version}: metadata.json checksum does not match the registry")
    models = {}
    for name in ("lstm", "transformer"):
        path = folder / f"{name}.tflite"
        if not path.is_file():
            raise ModelLoadError(f"{version}: {path.name} is missing")
        wanted = {metadata.files.get(path.name), (expected or {}).get(path.name)} - {None}
        if not wanted:
            raise ModelLoadError(f"{version}: no checksum recorded for {path.name}")
        if {sha256_file(path)} != wanted:
            raise ModelLoadError(f"{version}: {path.name} checksum mismatch (file changed?)")
        try:
            models[name] = TFLiteModel(path)
        except Exception as exc:
            raise ModelLoadError(f"{version}: {path.name} cannot be loaded: {exc}") from None
    window, features = metadata.window_length, len(metadata.features)
    for name, model in models.items():
        if (model.window, model.n_features) != (window, features):
            raise ModelLoadError(
                f"{version}: {name} input {model.window}x{model.n_features} "
                f"does not match metadata {window}x{features}"
            )
    return LoadedModels(
        version, metadata, models["lstm"], models["transformer"], dict(expected or {})
    )


def load_active_models(settings: Settings | None = None) -> LoadedModels | None:
    """The champion pair, or None when no model has been promoted yet."""
    settings = settings or get_settings()
    try:
        registry = read_registry(settings.model_config_path)
    except RegistryError as exc:
        raise ModelLoadError(str(exc)) from None
    if registry.champion is None:
        return None
    return load_version(registry.champion.version, settings, expected=registry.champion.files)


def challenger_versions(registry: Registry, settings: Settings) -> list[str]:
    """The versions scoring in shadow: the newest trained version that is not the champion,
    and every version an analyst pinned for comparison (oldest first, no duplicates)."""
    champion = registry.champion.version if registry.champion else None
    on_disk = list_versions(settings)
    others = [v for v in on_disk if v != champion]
    wanted = [v for v in registry.pinned if v in on_disk and v != champion]
    if others:
        wanted.append(others[-1])
    return sorted(dict.fromkeys(wanted))


@dataclass(frozen=True)
class Serving:
    """What serves now: the champion (or none) and the shadow challengers."""

    champion: LoadedModels | None
    challengers: tuple[LoadedModels, ...] = ()
    provisional: bool = False
    provisional_reason: str | None = None
    skipped: Mapping[str, str] = field(default_factory=dict)  # challenger -> why it cannot score

    @property
    def versions(self) -> tuple[LoadedModels, ...]:
        head = (self.champion,) if self.champion is not None else ()
        return head + self.challengers


class ModelManager:
    """Serves the champion pair and the shadow challengers; `current()` and `serving()` reload
    when the registry file or the set of versions on disk changes."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._lock = threading.Lock()
        self._serving = Serving(None)
        self._stamp: tuple[object, ...] | None = None
        self._cache: dict[str, LoadedModels] = {}
        self.last_error: str | None = None
        self.reloads = 0

    def _disk_stamp(self) -> tuple[object, ...]:
        try:
            st = self.settings.model_config_path.stat()
            registry: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            registry = None
        return (registry, tuple(list_versions(self.settings)))

    def current(self) -> LoadedModels | None:
        """The champion pair (checking the registry for a change first)."""
        return self.serving().champion

    def serving(self) -> Serving:
        """The champion and the challengers, reloaded when something changed on disk."""
        stamp = self._disk_stamp()
        if stamp == self._stamp:
            return self._serving
        with self._lock:
            if stamp != self._stamp:
                self._reload(stamp)
            return self._serving

    def _load(self, version: str, expected: dict[str, str] | None) -> LoadedModels:
        cached = self._cache.get(version)
        if cached is not None and (not expected or cached.registry_files == expected):
            return cached
        loaded = load_version(version, self.settings, expected=expected)
        self._cache[version] = loaded
        return loaded

    def _reload(self, stamp: tuple[object, ...]) -> None:
        old = self._serving
        try:
            registry = read_registry(self.settings.model_config_path)
            champ = registry.champion
            champion = self._load(champ.version, champ.files) if champ else None
        except (ModelLoadError, RegistryError) as exc:
            self.last_error = str(exc)
            log.error(
                "model reload failed, keeping %s: %s",
                old.champion.version if old.champion else "no model",
                exc,
            )
            self._stamp = stamp  # do not retry the same bad file on every call
            return
        challengers, skipped = [], {}
        for version in challenger_versions(registry, self.settings):
            try:
                challengers.append(self._load(version, None))
            except ModelLoadError as exc:
                skipped[version] = str(exc)
                log.warning("challenger %s cannot score in shadow: %s", version, exc)
        serving_now = {m.version for m in (champion, *challengers) if m is not None}
        self._cache = {v: m for v, m in self._cache.items() if v in serving_now}
        if (champion.version if champion else None) != (
            old.champion.version if old.champion else None
        ):
            self.reloads += 1
        self._serving = Serving(
            champion,
            tuple(challengers),
            bool(champ and champ.provisional),
            champ.provisional_reason if champ else None,
            skipped,
        )
        self._stamp, self.last_error = stamp, None
