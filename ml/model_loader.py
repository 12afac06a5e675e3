"""Load the champion (or any version) as ready TFLite models; reload when the registry changes.

`load_active_models()` reads `config/model_config.json`, verifies each file's SHA-256 against
the registry and the version's metadata, and returns the LSTM and Transformer interpreters with
the metadata needed for features and scaling. `ModelManager` keeps the serving pair: when the
registry changes it loads the new pair and swaps it in atomically; if the new files are bad it
keeps the old pair serving and reports why in `last_error`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from config.settings import Settings, get_settings
from ml.predict import TFLiteModel
from ml.registry import RegistryError, read_metadata, read_registry, sha256_file, version_dir

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model version cannot be served (missing file, checksum mismatch, bad model)."""


@dataclass
class LoadedModels:
    version: str
    metadata: dict[str, Any]
    lstm: TFLiteModel
    transformer: TFLiteModel
    loaded_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))

    @property
    def invocations(self) -> int:
        return self.lstm.invocations + self.transformer.invocations


def load_version(
    version: str, settings: Settings | None = None, expected: dict[str, str] | None = None
) -> LoadedModels:
    """Load one version, verifying checksums (from `expected`, else from its metadata)."""
    settings = settings or get_settings()
    try:
        folder = version_dir(version, settings)
        metadata = read_metadata(version, settings)
    except RegistryError as exc:
        raise ModelLoadError(str(exc)) from None
    recorded = dict(metadata.get("files", {}))
    if expected:
        meta_sum = expected.get("metadata.json")
        if meta_sum and sha256_file(folder / "metadata.json") != meta_sum:
            raise ModelLoadError(f"{version}: metadata.json checksum does not match the registry")
    models = {}
    for name in ("lstm", "transformer"):
        path = folder / f"{name}.tflite"
        if not path.is_file():
            raise ModelLoadError(f"{version}: {path.name} is missing")
        wanted = {recorded.get(path.name), (expected or {}).get(path.name)} - {None}
        if not wanted:
            raise ModelLoadError(f"{version}: no checksum recorded for {path.name}")
        if {sha256_file(path)} != wanted:
            raise ModelLoadError(f"{version}: {path.name} checksum mismatch (file changed?)")
        try:
            models[name] = TFLiteModel(path)
        except Exception as exc:
            raise ModelLoadError(f"{version}: {path.name} cannot be loaded: {exc}") from None
    window, features = int(metadata["window_length"]), len(metadata["features"])
    for name, model in models.items():
        if (model.window, model.n_features) != (window, features):
            raise ModelLoadError(
                f"{version}: {name} input {model.window}x{model.n_features} "
                f"does not match metadata {window}x{features}"
            )
    return LoadedModels(version, metadata, models["lstm"], models["transformer"])


def load_active_models(settings: Settings | None = None) -> LoadedModels | None:
    """The champion pair, or None when no model has been promoted yet."""
    settings = settings or get_settings()
    try:
        registry = read_registry(settings.model_config_path)
    except RegistryError as exc:
        raise ModelLoadError(str(exc)) from None
    if registry.champion is None:
        return None
    loaded = load_version(registry.champion.version, settings, expected=registry.champion.files)
    loaded.metadata["_registry_files"] = dict(registry.champion.files)
    return loaded


class ModelManager:
    """Serves the champion pair; `current()` reloads when the registry file changes."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._lock = threading.Lock()
        self._models: LoadedModels | None = None
        self._stamp: tuple[int, int] | None = None
        self.last_error: str | None = None
        self.reloads = 0

    def _registry_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.settings.model_config_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def _same_champion(self) -> bool:
        """True when the registry still names the pair being served (e.g. only history grew)."""
        registry = read_registry(self.settings.model_config_path)
        champ = registry.champion
        return bool(
            self._models
            and champ
            and champ.version == self._models.version
            and champ.files == self._models.metadata.get("_registry_files")
        )

    def current(self) -> LoadedModels | None:
        """The serving pair (checking the registry for a change first)."""
        stamp = self._registry_stamp()
        if stamp == self._stamp:
            return self._models
        with self._lock:
            if stamp == self._stamp:
                return self._models
            try:
                if self._same_champion():
                    self._stamp = stamp
                    return self._models
                fresh = load_active_models(self.settings)
            except (ModelLoadError, RegistryError) as exc:
                self.last_error = str(exc)
                log.error(
                    "model reload failed, keeping %s: %s",
                    self._models.version if self._models else "no model",
                    exc,
                )
                self._stamp = stamp  # do not retry the same bad file on every call
                return self._models
            if fresh is None or self._models is None or fresh.version != self._models.version:
                self.reloads += 1
            self._models, self._stamp, self.last_error = fresh, stamp, None
            return self._models
