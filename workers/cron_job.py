"""The guard every crontab line runs through: holiday skip, no overlap, run bookkeeping.

    python -m workers.cron_job --name <job> [--session-day] [--today YYYY-MM-DD] -- <command...>

- `--session-day`: when today's New York date is not an XNYS session (weekend or market
  holiday) the run is recorded as 'skipped' in `job_runs` and the command is not started. For a
  job after the close this is the session of that same New York date.
- One run per job name at a time: an `fcntl` lock on `<data_dir>/locks/cron-<job>.lock`. A
  second run while the first holds it records 'skipped' and exits with EXIT_BUSY.
- The command runs as a subprocess; its output is streamed line by line to this process's log
  (supervisord's cron log in the container); the run is recorded 'ok' or 'failed' with the exit
  code and the last lines of output (a failed run also enqueues a `job_failed` alert,
  `db.alerts`); a command that exits EXIT_BUSY (its own lock, e.g. the
  backfill queue being drained by the price ingestor) is recorded 'skipped'. A leading
  `python` / `python3` means this interpreter.

Training's own lock (`db.ops.training_lock`, shared with the app's retrain button) is taken by
`ml.lifecycle.pipeline` itself, not here.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import IO, Any

from sqlalchemy.exc import SQLAlchemyError

from config.cli import setup_logging
from config.market_calendar import is_session_day
from config.settings import get_settings
from core.locks import EXIT_BUSY, LockBusyError, file_lock
from core.timeutil import new_york_date
from db.alerts import enqueue
from db.ops import job_run

EXIT_NO_DATABASE = 69  # EX_UNAVAILABLE: runs cannot be recorded, so none is started
EXIT_CANNOT_START = 127
TAIL_LINES = 20
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

log = logging.getLogger("workers.cron_job")


class JobBusyError(RuntimeError):
    """The previous run of the same job still holds its lock."""


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split `argv` at the first `--`: guard options before it, the command after it."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m workers.cron_job",
        usage="%(prog)s --name JOB [--session-day] [--today YYYY-MM-DD] -- COMMAND...",
        description="Run one scheduled job: skip market holidays, never overlap, record the run.",
        epilog="Everything after -- is the command, e.g. -- python -m workers.backfill",
    )
    parser.add_argument("--name", required=True, help="job name (job_runs.job and lock name)")
    parser.add_argument(
        "--session-day",
        action="store_true",
        help="run only when the New York date is an XNYS session; else record 'skipped'",
    )
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="the New York date to judge (default: today in New York); for re-runs and tests",
    )
    args = parser.parse_args(options)
    if not JOB_NAME.match(args.name):
        parser.error(f"job name {args.name!r} must be letters, digits, '_', '.', '-' (max 64)")
    if not command:
        parser.error("no command after --")
    return args, command


def new_york_today() -> date:
    return new_york_date()


def resolve_command(command: list[str]) -> list[str]:
    """Run a leading `python` / `python3` with this interpreter (the project's venv)."""
    if command and command[0] in {"python", "python3"}:
        return [sys.executable, *command[1:]]
    return command


@contextmanager
def job_lock(name: str, lock_dir: Path) -> Iterator[Path]:
    """Hold the per-job lock; raise JobBusyError naming the holder if it is taken."""
    try:
        with file_lock(lock_dir / f"cron-{name}.lock", f"job {name!r}") as path:
            yield path
    except LockBusyError as exc:
        raise JobBusyError(str(exc)) from None


def _forward_signals(proc: subprocess.Popen[str]) -> None:
    """Pass SIGTERM / SIGINT on to the command so it can stop cleanly (cron shutting down)."""

    def _handler(signum: int, _frame: Any) -> None:
        log.warning("received %s, passing it to the command", signal.Signals(signum).name)
        if proc.poll() is None:
            proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _handler)


def run_command(name: str, command: list[str]) -> tuple[int, list[str]]:
    """Run `command`, log each output line as it comes; return (exit code, last lines)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
        env=env,
    )
    _forward_signals(proc)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    stream: IO[str] | None = proc.stdout
    assert stream is not None
    for raw in stream:
        line = raw.rstrip("\n")
        tail.append(line)
        log.info("[%s] %s", name, line)
    returncode = proc.wait()
    return returncode, list(tail)


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def _alert_failed(name: str, run_id: int, outcome: str, tail: list[str]) -> None:
    """Enqueue the failed run's alert (`db.alerts`) as soon as its command has failed."""
    last = get_settings().redact(tail[-1] if tail else "(no output)")
    payload = {"job": name, "run_id": run_id, "reason": f"{outcome}; last output: {last}"[:500]}
    try:
        enqueue("job_failed", payload, f"job_failed:{run_id}")
    except SQLAlchemyError as exc:
        log.error(
            "%s: its failure was not enqueued as an alert: %s", name, str(exc).splitlines()[0]
        )


def guarded_run(name: str, command: list[str], *, session_day: bool, today: date) -> int:
    """Apply the guard to one run of `command`; return the process exit code."""
    with job_run(name) as run:
        if session_day and not is_session_day(today):
            run.skip(f"{today} is not an XNYS session (weekend or market holiday)")
            log.info("%s: skipped, %s is not an XNYS session", name, today)
            return 0
        try:
            with job_lock(name, get_settings().data_dir / "locks"):
                log.info("%s: starting %s", name, " ".join(command))
                returncode, tail = run_command(name, resolve_command(command))
        except JobBusyError as exc:
            run.skip(f"overlap: {exc}")
            log.error("%s: not started, %s", name, exc)
            return EXIT_BUSY
        outcome = _describe_exit(returncode)
        if returncode == EXIT_BUSY:  # the command found its own work already running
            run.skip(f"busy: {tail[-1] if tail else outcome}")
            log.info("%s: skipped, %s", name, tail[-1] if tail else outcome)
            return EXIT_BUSY
        if returncode != 0:
            run.status = "failed"
            # redacted before it is cut, so the cut cannot leave part of a secret behind
            output = get_settings().redact("\n".join(tail))[-1500:]
            run.note(f"{outcome}; last output:\n{output}")
            log.error("%s: failed, %s", name, outcome)
            _alert_failed(name, run.id, outcome, tail)
            return returncode if returncode > 0 else 128 - returncode
        run.note(outcome)
        log.info("%s: finished, %s", name, outcome)
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging("workers.cron_job")
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    today = args.today or new_york_today()
    try:
        return guarded_run(args.name, command, session_day=args.session_day, today=today)
    except FileNotFoundError as exc:
        log.error("%s: cannot start %r: %s", args.name, command[0], exc)
        return EXIT_CANNOT_START
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0]
        log.error(
            "%s: not started, cannot record the run in job_runs (%s); check DATABASE_URL "
            "and run `python -m db.migrate up`",
            args.name,
            reason,
        )
        return EXIT_NO_DATABASE


if __name__ == "__main__":
    raise SystemExit(main())
