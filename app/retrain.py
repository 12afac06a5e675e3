"""The retrain button: `python -m ml.pipeline` (train, then validate) as a background process.

The process runs outside the Streamlit script run, in its own session, so closing the page or
restarting the app does not stop it. The pipeline takes the shared training lock
(`db.jobs.training_lock`, the nightly cron job's lock) itself; before starting, the app checks
`db.jobs.lock_holder()` and its own child and refuses a second start with a message. Progress is
read from `settings.data_dir / "training_progress.json"`, which training writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app.data import redact
from config.settings import PROJECT_ROOT, Settings, get_settings
from db.jobs import lock_holder

PIPELINE_MODULE = "ml.pipeline"
FINAL_STAGES = {"done", "failed", "rejected", "promoted", "finished", "error"}


class RetrainRefused(RuntimeError):
    """Training is already running (or cannot start); the message is safe to show."""


@dataclass(frozen=True)
class Progress:
    """The training progress file: stage, epoch of epochs, model, message, updated_at."""

    stage: str
    epoch: int | None
    epochs: int | None
    model: str | None
    message: str
    updated_at: pd.Timestamp | None

    @property
    def fraction(self) -> float | None:
        if self.epoch is None or not self.epochs:
            return None
        return max(0.0, min(1.0, self.epoch / self.epochs))

    @property
    def finished(self) -> bool:
        return self.stage.lower() in FINAL_STAGES


def progress_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "training_progress.json"


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def read_progress(settings: Settings | None = None) -> Progress | None:
    """The last progress written by training, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads(progress_path(settings).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    stamp = pd.to_datetime(raw.get("updated_at"), utc=True, errors="coerce")
    return Progress(
        stage=str(raw.get("stage") or "unknown"),
        epoch=_int(raw.get("epoch")),
        epochs=_int(raw.get("epochs")),
        model=None if raw.get("model") is None else str(raw["model"]),
        message=redact(str(raw.get("message") or "")),
        updated_at=None if pd.isna(stamp) else stamp,
    )


def write_progress(settings: Settings, stage: str, message: str) -> None:
    """Atomically write a progress record (the app writes only the 'queued' one)."""
    path = progress_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "stage": stage,
        "epoch": None,
        "epochs": None,
        "model": None,
        "message": message,
        "updated_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


class RetrainLauncher:
    """Starts the pipeline process and remembers it (one per app process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_by: str | None = None
        self.started_at: pd.Timestamp | None = None
        self.returncode: int | None = None

    @property
    def log_path(self) -> Path:
        return self.settings.log_dir / "retrain.log"

    def child_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def busy_reason(self) -> str | None:
        """Why a new run cannot start now, or None."""
        holder = lock_holder(self.settings.lock_path)
        if holder is not None:
            return f"Training is already running ({holder})."
        if self.child_running():
            assert self._proc is not None
            return f"Training is starting (process {self._proc.pid})."
        return None

    def start(self, *, by: str, quick: bool = False) -> int:
        """Start `python -m ml.pipeline` detached; returns its pid or raises RetrainRefused."""
        with self._lock:
            reason = self.busy_reason()
            if reason is not None:
                raise RetrainRefused(f"{reason} A second run was not started.")
            write_progress(self.settings, "queued", f"retrain requested by {by}")
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            args = [sys.executable, "-m", PIPELINE_MODULE, *(["--quick"] if quick else [])]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
            )
            with open(self.log_path, "ab") as log_file:
                self._proc = subprocess.Popen(
                    args,
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            self.started_by, self.started_at = by, pd.Timestamp.now(tz="UTC")
            self.returncode = None
            threading.Thread(target=self._reap, args=(self._proc,), daemon=True).start()
            return self._proc.pid

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        self.returncode = proc.wait()

    def last_log_line(self) -> str | None:
        """The last non-empty line of the retrain log (secrets masked)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
                lines = [x for x in fh.read().decode("utf-8", "replace").splitlines() if x.strip()]
        except OSError:
            return None
        return redact(lines[-1][:300], self.settings) if lines else None


@st.cache_resource(show_spinner=False, max_entries=1)
def launcher() -> RetrainLauncher:
    """The process-wide launcher (so every session sees the same child)."""
    return RetrainLauncher(get_settings())
