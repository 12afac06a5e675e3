"""PostgreSQL LISTEN/NOTIFY: what wakes the scoring worker (and whoever waits for signals).

Notifications are sent inside the transaction that stores what they announce, so a listener
hears of a bar, a signal or a registry change only once it is committed, and never of one that
was rolled back. PostgreSQL folds identical notifications of one transaction into one.

- `BARS` (`workers.bar_store.write_bars`): payload the newest bar time stored (ISO 8601, UTC);
- `SIGNALS` (`ml.serving.live_scoring.Scorer.score`): payload the newest bar time scored;
- `REGISTRY` (`db.models.record_model_event`): payload `<event> <version>`.

A notification can be lost (a listener reconnecting, a server restart): listeners also look on a
short poll, so a notification is what makes them prompt, never what makes them correct.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from core.loops import Shutdown, backoff_s
from db.connections import DB_ERRORS, dedicated_connection

log = logging.getLogger(__name__)

BARS = "stockpulse_bars"
SIGNALS = "stockpulse_signals"
REGISTRY = "stockpulse_registry"
CHANNELS = (BARS, SIGNALS, REGISTRY)


@dataclass(frozen=True)
class Notice:
    """One notification as received."""

    channel: str
    payload: str


def notify(conn: Connection, channel: str, payload: str = "") -> None:
    """Queue a notification on `channel`, delivered when `conn`'s transaction commits."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown notification channel {channel!r} (db.notify.CHANNELS)")
    conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


class Listener:
    """A session listening on some channels; `wait(timeout_s)` returns what arrived."""

    def __init__(self, dbapi: Any) -> None:
        self._conn = dbapi

    def wait(self, timeout_s: float, wake_fd: int | None = None) -> list[Notice]:
        """Block until a notification arrives, `timeout_s` passes or `wake_fd` (a shutdown
        pipe) becomes readable; return every notification pending."""
        if not self._conn.notifies:
            watched = [self._conn] if wake_fd is None else [self._conn, wake_fd]
            ready, _, _ = select.select(watched, [], [], max(0.0, timeout_s))
            if self._conn in ready:
                self._conn.poll()
        else:
            self._conn.poll()
        notices = [Notice(n.channel, n.payload) for n in self._conn.notifies]
        self._conn.notifies.clear()
        return notices

    def drain(self) -> list[Notice]:
        """Every notification pending now, without waiting."""
        return self.wait(0.0)


@contextmanager
def listen(channels: Sequence[str]) -> Iterator[Listener]:
    """A dedicated connection LISTENing on `channels` for as long as the block runs."""
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown notification channels {sorted(unknown)} (db.notify.CHANNELS)")
    with dedicated_connection() as dbapi:
        with dbapi.cursor() as cur:
            for channel in channels:
                cur.execute(f"LISTEN {channel}")  # a fixed identifier from CHANNELS
        yield Listener(dbapi)


def serve_listening(
    serve: Callable[[Listener | None], None],
    *,
    channels: Sequence[str] | None,
    shutdown: Shutdown,
    on_error: Callable[[str], None],
    redact: Callable[[str], str],
) -> None:
    """The loop of a worker woken by notifications: `serve(listener)` until it returns or
    shutdown is requested, with a listener on `channels` (None: polling only, `serve(None)`),
    riding out database outages: each one is passed to `on_error` (redacted, its first line)
    and logged, and the worker reconnects after a back-off of 1 s doubling up to 30 s."""
    attempt = 0
    while not shutdown.requested:
        try:
            if channels is None:
                serve(None)
            else:
                with listen(channels) as listener:
                    attempt = 0
                    serve(listener)
            return
        except DB_ERRORS as exc:
            attempt += 1
            message = redact(f"{type(exc).__name__}: {exc}").splitlines()[0]
            on_error(message)
            wait = backoff_s(attempt, 1.0, 30.0)
            log.error("database unavailable (%s); retrying in %.1f s", message, wait)
            shutdown.wait(wait)
