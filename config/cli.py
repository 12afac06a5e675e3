"""The one shape of a process's entry point: every worker and job logs through the redacting
set-up (`setup_logging`); a job is `python -m <module>` with the module's docstring as help,
its report printed on stdout, and exit codes every caller (cron guard, scheduler, the app's
retrain button) reads the same way: 0 done, 1 failed, 2 bad configuration (`setup_logging`),
`EXIT_BUSY` (75) when another run holds the job's lock.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from config.settings import SettingsError, get_settings
from core import logs
from core.locks import EXIT_BUSY, LockBusyError


def job_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser for `python -m module`, its help the module's docstring as written."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run_job(module: str, work: Callable[[], object], *, busy: str = "") -> int:
    """Set up logging for `module`, run `work` and print what it returns; a held lock prints
    "not started: <why>[; busy]" on stderr and returns EXIT_BUSY."""
    setup_logging(module)
    try:
        report = work()
    except LockBusyError as exc:
        print(f"not started: {exc}{'; ' + busy if busy else ''}", file=sys.stderr)
        return EXIT_BUSY
    print(report)
    return 0


def setup_logging(name: str) -> logging.Logger:
    """Logging for a worker or job at `LOG_LEVEL`, every secret of the settings (and anything
    shaped like a credential) masked in what it writes; a bad setting stops it with exit code 2
    and a message naming the setting."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return logs.setup_logging(name, settings.log_level, secrets=settings.secret_values())
