"""Training progress: a line on stdout and `training_progress.json` in the data folder for the app.

The JSON file holds the latest state only: {"stage", "epoch", "epochs", "model", "message",
"updated_at"}; it is replaced atomically, so the app never reads half a file. `Progress` writes it
(training, and the app's retrain button for the "queued" stage); `read_progress` is the one
reader.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from core.files import write_json_atomic
from core.timeutil import utc_now

PROGRESS_FILE = "training_progress.json"
FINAL_STAGES = frozenset({"done", "failed"})


@dataclass(frozen=True)
class TrainingProgress:
    """One progress record: the stage, the epoch of epochs of which model, a message."""

    stage: str
    message: str = ""
    model: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    updated_at: pd.Timestamp | None = None

    @property
    def fraction(self) -> float | None:
        """Share of the current model's epochs done, when training."""
        if self.epoch is None or not self.epochs:
            return None
        return max(0.0, min(1.0, self.epoch / self.epochs))

    @property
    def finished(self) -> bool:
        return self.stage in FINAL_STAGES

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["updated_at"] = None if self.updated_at is None else self.updated_at.isoformat()
        return out


def progress_path(data_dir: Path) -> Path:
    return Path(data_dir) / PROGRESS_FILE


class Progress:
    """Report training stages and epochs to stdout and a JSON file (either may be off)."""

    def __init__(self, path: Path | None, stream: TextIO | None | bool = True) -> None:
        """`stream`: True = the current sys.stdout at each update, None/False = no output."""
        self.path = path
        self.stream = stream
        self.state = TrainingProgress("starting")

    def update(
        self,
        stage: str,
        message: str,
        *,
        model: str | None = None,
        epoch: int | None = None,
        epochs: int | None = None,
    ) -> None:
        """Record the current stage; `epoch`/`epochs`/`model` are kept only while training."""
        now = utc_now()
        self.state = TrainingProgress(stage, message, model, epoch, epochs, now)
        if self.stream:
            out = sys.stdout if self.stream is True else self.stream
            where = f" [{model} {epoch}/{epochs}]" if model and epoch is not None else ""
            print(f"{now:%H:%M:%S} {stage}{where}: {message}", file=out, flush=True)
        if self.path is not None:
            write_json_atomic(self.path, self.state.to_json())


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def read_progress(data_dir: Path) -> TrainingProgress | None:
    """The latest progress written under `data_dir`, or None when there is none or it cannot
    be read."""
    try:
        raw = json.loads(progress_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    stamp = pd.to_datetime(raw.get("updated_at"), utc=True, errors="coerce")
    return TrainingProgress(
        stage=str(raw.get("stage") or "unknown"),
        message=str(raw.get("message") or ""),
        model=None if raw.get("model") is None else str(raw["model"]),
        epoch=_int(raw.get("epoch")),
        epochs=_int(raw.get("epochs")),
        updated_at=None if pd.isna(stamp) else stamp,
    )
