"""What a model version records about itself: `models/<version>/metadata.json`, typed.

Training writes it last (so a folder with it is complete); serving, validation, drift and the
app read it through `ModelMetadata` instead of dictionaries. It carries everything needed to
rebuild the inputs (feature list and order, scaler, window, feature parameters), to judge the
version (label parameters, train and validation ranges, metrics, drift reference statistics), to
verify its files (SHA-256), and to reproduce the run (the training configuration, the models'
hyperparameters, seeds, the sentiment models behind its news features).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from config.settings import Settings
from core.validation import read_json_model
from ml.features.feature_engineering import FeatureParams
from ml.features.labels import CLASSES, LabelParams
from ml.models.metrics import ClassMetrics
from ml.features.windows import CLIP, FeatureScaler

MODEL_NAMES = ("lstm", "transformer")


class MetadataError(ValueError):
    """A metadata.json that cannot be read or does not describe a model version."""


class ScalerParams(BaseModel):
    kind: str = "standard"
    features: list[str]
    mean: list[float]
    std: list[float]
    clip: float = CLIP

    def scaler(self) -> FeatureScaler:
        return FeatureScaler.from_dict(self.model_dump())


class ReferenceStat(BaseModel):
    """One feature over the training range: moments, quantile bins and a sample (drift)."""

    mean: float | None = None
    std: float | None = None
    count: int = 0
    edges: list[float] = Field(default_factory=list)
    proportions: list[float] = Field(default_factory=list)
    sample: list[float] = Field(default_factory=list)


class TrainingMetrics(BaseModel):
    """Validation-range metrics of both models and of the baselines fitted on the training
    windows."""

    models: dict[str, ClassMetrics] = Field(default_factory=dict)
    baselines: dict[str, ClassMetrics] = Field(default_factory=dict)


class TrainingRun(BaseModel):
    """How the version was trained: enough to run it again."""

    quick: bool | None = None  # a `--quick` run (None: not recorded, see `kind`)
    config: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    epochs_run: dict[str, int] = Field(default_factory=dict)
    seconds: float | None = None
    n_train: int | None = None
    n_val: int | None = None
    tflite_parity_max_abs_diff: dict[str, float] = Field(default_factory=dict)

    @property
    def kind(self) -> str:
        """`quick`, `full`, or `not recorded` (a version trained before this was kept)."""
        quick = self.quick if self.quick is not None else self.config.get("quick")
        if quick is None:
            return "not recorded"
        return "quick" if quick else "full"


class Provenance(BaseModel):
    """How a version was trained, as the model lab and the registry history show it."""

    kind: str  # quick | full | not recorded
    epochs: dict[str, int] = Field(default_factory=dict)  # run, per model
    max_epochs: int | None = None
    train_windows: int | None = None
    val_windows: int | None = None
    data_from: str | None = None  # first bar of the training range (UTC, market time)
    data_to: str | None = None  # last bar of the validation range (UTC, market time)


class ModelMetadata(BaseModel):
    """A model version's metadata.json."""

    model_config = ConfigDict(extra="forbid")

    version: str
    created_at: str | None = None
    features: list[str]
    window_length: int = Field(ge=1)
    classes: list[str] = Field(default_factory=lambda: list(CLASSES))
    tflite_batch: int = Field(ge=1)
    files: dict[str, str]
    scaler: ScalerParams | None = None
    label_params: LabelParams | None = None
    feature_params: FeatureParams = Field(default_factory=FeatureParams)
    tickers: list[str] = Field(default_factory=list)
    train_range: tuple[str, str] | None = None
    val_range: tuple[str, str] | None = None
    purge_gap_minutes: float | None = None
    reference_stats: dict[str, ReferenceStat] = Field(default_factory=dict)
    reference_confidence: dict[str, float] = Field(default_factory=dict)
    metrics: TrainingMetrics = Field(default_factory=TrainingMetrics)
    training: TrainingRun = Field(default_factory=TrainingRun)
    sentiment_models: list[str] = Field(default_factory=list)

    @property
    def feature_scaler(self) -> FeatureScaler:
        if self.scaler is None:
            raise MetadataError(f"model version {self.version} has no scaler in its metadata")
        return self.scaler.scaler()

    @property
    def labels(self) -> LabelParams:
        if self.label_params is None:
            raise MetadataError(f"model version {self.version} has no label parameters")
        return self.label_params

    def ranges(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """The training and validation ranges (the data the version has seen)."""
        return [
            (pd.Timestamp(r[0]), pd.Timestamp(r[1]))
            for r in (self.train_range, self.val_range)
            if r is not None
        ]

    @property
    def provenance(self) -> Provenance:
        """How the version was trained: quick or full, epochs, windows, the bars it saw."""
        run = self.training
        max_epochs = run.config.get("epochs")
        ranges = [r for r in (self.train_range, self.val_range) if r is not None]
        return Provenance(
            kind=run.kind,
            epochs=dict(run.epochs_run),
            max_epochs=int(max_epochs) if isinstance(max_epochs, int) else None,
            train_windows=run.n_train,
            val_windows=run.n_val,
            data_from=ranges[0][0] if ranges else None,
            data_to=ranges[-1][1] if ranges else None,
        )

    @property
    def trained_until(self) -> pd.Timestamp | None:
        """The newest bar the version has seen (end of its validation or training range)."""
        ends = [end for _, end in self.ranges()]
        return max(ends) if ends else None

    def write(self, path: Path) -> None:
        from core.files import write_json_atomic

        write_json_atomic(path, self.model_dump(mode="json"))

    def verify_files(self, folder: Path) -> dict[str, str]:
        """The SHA-256 of each model file in `folder`, checked against the checksum recorded at
        training; `MetadataError` names a file that is missing, has no recorded checksum, or
        differs from it."""
        checksums = {}
        for name in (f"{model}.tflite" for model in MODEL_NAMES):
            path = folder / name
            recorded = self.files.get(name)
            if recorded is None:
                raise MetadataError(f"{folder / 'metadata.json'} records no checksum for {name}")
            if not path.is_file():
                raise MetadataError(f"{path} is missing")
            actual = sha256_file(path)
            if actual != recorded:
                raise MetadataError(
                    f"{path} differs from the checksum in its metadata.json (recorded "
                    f"{recorded[:12]}…, on disk {actual[:12]}…): the file changed after training"
                )
            checksums[name] = actual
        return checksums


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata_file(path: Path) -> ModelMetadata:
    """Parse a metadata.json; a clear `MetadataError` names what is wrong (missing, not UTF-8
    text, not JSON, or not model metadata)."""
    try:
        return read_json_model(path, ModelMetadata, MetadataError, "model metadata")
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise MetadataError(f"{path} cannot be read: {exc}") from None


def version_metadata(version: str, settings: Settings | None = None) -> ModelMetadata:
    """The metadata of a trained version in the model folder."""
    from ml.models.registry import RegistryError, version_dir

    try:
        folder = version_dir(version, settings)
    except RegistryError as exc:
        raise MetadataError(str(exc)) from None
    meta = read_metadata_file(folder / "metadata.json")
    check_version_name(meta, version)
    return meta


def check_version_name(meta: ModelMetadata, version: str) -> None:
    """A version folder must hold its own metadata: a folder copied under another name would
    otherwise be scored, stored and compared under two names."""
    if meta.version != version:
        raise MetadataError(
            f"folder {version} holds the metadata of version {meta.version} "
            "(copied by hand?): its metadata.json must name the folder's version"
        )
