"""Job bookkeeping shared by workers, ML jobs and the app: runs, heartbeats, the training lock.

- `job_run(name)`: records a row in `job_runs` (running → ok / failed / skipped) and who started
  it (`started_by`).
- `heartbeat(worker, status, **details)`: upserts `worker_heartbeats` for the data-health page.
- `training_lock()`: the one lock that nightly training, validation and the app's retrain button
  share (`core.locks.file_lock` on `settings.lock_path`), so runs never overlap.
- `backfill_lock()`: the one lock of every backfill-queue drain (ingestor and cron job).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import text

from config.settings import get_settings
from core.locks import file_lock, lock_holder
from core.redact import redact_values
from db.connections import connect
from db.writes import write_to_db

MESSAGE_CHARS = 2000  # of a job run's message, stored after redaction


class JobRun:
    """Handle of a running job; `skip(reason)` marks it skipped, `note(msg)` sets its message."""

    def __init__(self, run_id: int) -> None:
        self.id = run_id
        self.status = "ok"
        self.message: str | None = None

    def skip(self, reason: str) -> None:
        self.status, self.message = "skipped", reason

    def note(self, message: str) -> None:
        self.message = message


# Who started the runs of this process (`oidc:<email>`, `analyst:<name>`): the app sets it on the
# retrain it starts, so the pipeline's runs (and their training and validation) record it.
STARTED_BY_ENV = "STOCKPULSE_STARTED_BY"


@contextmanager
def job_run(name: str, *, started_by: str | None = None) -> Iterator[JobRun]:
    """Record a job run, started by `started_by` (default: `$STOCKPULSE_STARTED_BY`; NULL for
    the schedule and the command line); an exception marks it failed (and propagates)."""
    by = started_by or os.environ.get(STARTED_BY_ENV) or None
    with connect() as conn:
        run_id = conn.execute(
            text("INSERT INTO job_runs (job, started_by) VALUES (:job, :by) RETURNING id"),
            {"job": name, "by": by},
        ).scalar_one()
    run = JobRun(int(run_id))
    try:
        yield run
    except BaseException as exc:
        _finish(run.id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    _finish(run.id, run.status, run.message)


def _finish(run_id: int, status: str, message: str | None) -> None:
    """Close the run; its message is stored redacted (`Settings.redact`: the settings' secrets
    and credential shapes), then cut to `MESSAGE_CHARS`, so no cut can split a secret."""
    if message is not None:
        message = get_settings().redact(message)[:MESSAGE_CHARS]
    with connect() as conn:
        conn.execute(
            text(
                "UPDATE job_runs SET finished_at = now(), status = :s, message = :m WHERE id = :i"
            ),
            {"s": status, "m": message, "i": run_id},
        )


def heartbeat(worker: str, status: str = "ok", **details: Any) -> None:
    """Record that `worker` is alive (upsert); every text in `details` is stored redacted."""
    secrets = get_settings().secret_values()
    shown = redact_values(json.loads(json.dumps(details, default=str)), secrets)
    frame = pd.DataFrame(
        [
            {
                "worker": worker,
                "last_beat": pd.Timestamp.now(tz="UTC"),
                "pid": os.getpid(),
                "status": status,
                "details": json.dumps(shown),
            }
        ]
    )
    write_to_db(frame, table="worker_heartbeats")


@contextmanager
def backfill_lock(wait: bool = False) -> Iterator[Path]:
    """The one lock every drain of the backfill queue holds (the price ingestor after the close,
    `python -m workers.backfill` from cron or by hand), so two drains never race."""
    with file_lock(get_settings().data_dir / "locks" / "backfill.lock", "backfill", wait) as held:
        yield held


@contextmanager
def training_lock(path: Path | None = None, wait: bool = False) -> Iterator[Path]:
    """Hold the training lock; raise LockBusyError at once if it is taken (unless `wait`)."""
    with file_lock(path or get_settings().lock_path, "training", wait=wait) as held:
        yield held


def training_lock_holder() -> str | None:
    """Who holds the training lock, or None when it is free."""
    return lock_holder(get_settings().lock_path)
