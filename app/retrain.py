"""The retrain button: `python -m ml.lifecycle.pipeline` (train, then validate) as a background
process.

The process runs outside the Streamlit script run, in its own session, so closing the page or
restarting the app does not stop it. The pipeline takes the shared training lock
(`db.ops.training_lock`, the nightly cron job's lock) itself; before starting, the app checks
`core.locks.lock_holder()` and its own child and refuses a second start with a message. Progress is
read from `settings.data_dir / "training_progress.json"`, which training writes. The identity that
started the run travels to the process in `$STOCKPULSE_STARTED_BY`, so its `job_runs` rows
(`started_by`) name it; `training_runs()` lists them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from app.data import cached_data, from_db, redact
from config.settings import PROJECT_ROOT, Settings, get_settings
from core.locks import lock_holder
from db.identity import job_runs_started
from db.ops import STARTED_BY_ENV
from ml.training import progress as progress_file
from ml.training.progress import TrainingProgress

PIPELINE_MODULE = "ml.lifecycle.pipeline"
# the job `python -m ml.lifecycle.pipeline` records, from here or the schedule
TRAINING_JOBS = ("pipeline",)
NOT_FROM_THE_APP = "schedule or command line"


class RetrainRefused(RuntimeError):
    """Training is already running (or cannot start); the message is safe to show."""


def read_progress(settings: Settings | None = None) -> TrainingProgress | None:
    """The last progress written by training (message secrets masked), or None."""
    progress = progress_file.read_progress((settings or get_settings()).data_dir)
    if progress is None:
        return None
    return replace(progress, message=redact(progress.message))


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
        """Start `python -m ml.lifecycle.pipeline` detached; returns its pid or raises
        RetrainRefused."""
        with self._lock:
            reason = self.busy_reason()
            if reason is not None:
                raise RetrainRefused(f"{reason} A second run was not started.")
            queued = progress_file.Progress(
                progress_file.progress_path(self.settings.data_dir), None
            )
            queued.update("queued", f"retrain requested by {by}")
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            args = [sys.executable, "-m", PIPELINE_MODULE, *(["--quick"] if quick else [])]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
            )
            env[STARTED_BY_ENV] = by
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


@cached_data(ttl=5, max_entries=1)
def training_runs(limit: int = 10) -> pd.DataFrame:
    """The latest training runs, newest first: started (server time), who started them, status,
    duration and message (secrets masked)."""
    runs = from_db(job_runs_started, TRAINING_JOBS, limit)
    return pd.DataFrame(
        {
            "started_at": runs["started_at"],
            "started_by": runs["started_by"].fillna(NOT_FROM_THE_APP),
            "status": runs["status"],
            "duration_s": (runs["finished_at"] - runs["started_at"]).dt.total_seconds(),
            "message": runs["message"].map(lambda m: redact(m) if isinstance(m, str) else ""),
        }
    )
