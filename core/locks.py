"""The one file-lock helper: an exclusive `fcntl` lock that says who holds it.

Used for the training lock (nightly training, validation and the app's retrain button), the
backfill lock, the cron guard's per-job locks, the model registry and the embedded server's
set-up. (The `filelock` package does not record the holder, which the messages below need.)
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXIT_BUSY = 75  # EX_TEMPFAIL: every command whose lock is held by another run exits with it


class LockBusyError(RuntimeError):
    """Another process holds the lock; the message names it."""


@contextmanager
def file_lock(path: Path, what: str, wait: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on `path`, recording "pid N since <time>" in the file.

    Raises LockBusyError("<what> is already running (pid N since ...)") when it is taken,
    unless `wait`, which blocks until it is free."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise LockBusyError(f"{what} is already running ({holder})") from None
        fh.seek(0)
        fh.truncate()
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        fh.write(f"pid {os.getpid()} since {since} UTC")
        fh.flush()
        try:
            yield path
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_holder(path: Path) -> str | None:
    """Who holds the lock on `path`, or None when it is free."""
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            return fh.read().strip() or "another process"
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None
