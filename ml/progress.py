"""Training progress: a line on stdout and `training_progress.json` in the data folder for the app.

The JSON file holds the latest state only: {"stage", "epoch", "epochs", "model", "message",
"updated_at"}; it is replaced atomically, so the app never reads half a file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

PROGRESS_FILE = "training_progress.json"


class Progress:
    """Report training stages and epochs to stdout and a JSON file (either may be off)."""

    def __init__(self, path: Path | None, stream: TextIO | None | bool = True) -> None:
        """`stream`: True = the current sys.stdout at each update, None/False = no output."""
        self.path = path
        self.stream = stream
        self.state: dict[str, Any] = {
            "stage": "starting",
            "epoch": None,
            "epochs": None,
            "model": None,
            "message": "",
            "updated_at": None,
        }

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
        now = pd.Timestamp.now(tz="UTC")
        self.state = {
            "stage": stage,
            "epoch": epoch,
            "epochs": epochs,
            "model": model,
            "message": message,
            "updated_at": now.isoformat(),
        }
        if self.stream:
            out = sys.stdout if self.stream is True else self.stream
            where = f" [{model} {epoch}/{epochs}]" if model and epoch is not None else ""
            print(f"{now:%H:%M:%S} {stage}{where}: {message}", file=out, flush=True)
        if self.path is not None:
            write_json_atomic(self.path, self.state)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file in the same folder, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_progress(data_dir: Path) -> dict[str, Any] | None:
    """The latest progress written under `data_dir`, or None if there is none."""
    path = data_dir / PROGRESS_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data
