"""The scoring worker: every stored bar scored the moment it lands, whether or not a page is open.

    python -m ml.serving.scoring_worker            (supervisord's `scoring_worker` program)

It LISTENs for `db.notify.BARS` (sent in the transaction that stores bars) and
`db.notify.REGISTRY` (promotions, rollbacks), and also looks every `SCORING_POLL_S` seconds in
case a notification was lost. Each wake-up is one pass of the process's
`ml.serving.live_scoring.Scorer` over what serves now (`ml.models.model_loader.ModelManager`: the
champion and the shadow challengers, reloaded when the registry changes, so promotions and
rollbacks are followed without a restart): every new bar scored once per version (the scorers'
advisory lock and the signals key), the rows committed with a `db.notify.SIGNALS` notification,
then the realised outcomes.

The first pass after a start catches up: up to `CATCH_UP_BARS` bars per ticker and version missed
while the worker was down. A challenger that cannot be loaded (unreadable metadata, a file that
differs from its checksum) is skipped with its reason logged; the champion is scored as ever. A
heartbeat (`worker_heartbeats`, worker `scoring_worker`) carries the serving versions, the
skipped challengers with their reasons, the newest stored and scored bars and the lag between
them; the live page reads it. SIGTERM / SIGINT let the running pass finish, then the worker
exits 0. A database outage is logged and retried with back-off; the worker itself does not exit
on it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from config.cli import setup_logging
from config.settings import Settings, get_settings
from core.loops import Shutdown
from db.connections import DB_ERRORS
from db.notify import BARS, REGISTRY, Listener, serve_listening
from db.ops import heartbeat
from ml.models.model_loader import ModelManager
from ml.serving.live_scoring import Scorer, ScoreResult

log = logging.getLogger(__name__)
WORKER = "scoring_worker"
CATCH_UP_BARS = 390  # a whole session of missed bars per ticker and version
HEARTBEAT_IDLE_S = 10.0  # a heartbeat at least this often while nothing arrives
BUSY_RETRY_S = 0.2  # another scorer held the lock: look again this soon


@dataclass
class WorkerStats:
    """What the worker has done since it started."""

    passes: int = 0
    signals: int = 0
    shadow: int = 0
    outcomes: int = 0
    invocations: int = 0
    busy: int = 0
    errors: int = 0
    notifications: int = 0
    newest_bar: pd.Timestamp | None = None
    newest_scored: pd.Timestamp | None = None
    last_pass_ms: float = 0.0
    last_error: str | None = None


class ScoringWorker:
    """One process's scoring loop (see the module docstring)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        manager: ModelManager | None = None,
        shutdown: Shutdown | None = None,
        poll_s: float | None = None,
        use_notifications: bool = True,
    ) -> None:
        self.settings = settings or get_settings()
        self.manager = manager or ModelManager(self.settings)
        self.scorer = Scorer(self.settings, max_backlog=CATCH_UP_BARS)
        self.shutdown = shutdown or Shutdown()
        self.poll_s = self.settings.scoring_poll_s if poll_s is None else poll_s
        self.use_notifications = use_notifications
        self.stats = WorkerStats()
        self._last_beat = float("-inf")

    # ------------------------------------------------------------------ one pass
    def run_pass(self) -> ScoreResult:
        """Score what is new for every serving version; never raises for a database fault."""
        started = time.perf_counter()
        serving = self.manager.serving()
        result = self.scorer.score(serving)
        s = self.stats
        s.passes += 1
        s.last_pass_ms = (time.perf_counter() - started) * 1000
        s.signals += len(result.recommendations)
        s.shadow += result.shadow
        s.outcomes += result.outcomes
        s.invocations += result.invocations
        s.busy += int(result.busy)
        s.newest_bar = result.newest_bar or s.newest_bar
        s.newest_scored = result.newest_scored or s.newest_scored
        s.last_error = "; ".join(f"{v}: {e}" for v, e in result.errors.items()) or None
        if result.recommendations or result.shadow:
            log.info(
                "scored %d bar(s) for %s and %d in shadow up to %s (%.0f ms, %d model calls)",
                len(result.recommendations),
                serving.champion.version if serving.champion else "no champion",
                result.shadow,
                s.newest_scored,
                s.last_pass_ms,
                result.invocations,
            )
        self.beat(
            "ok" if s.last_error is None else "error",
            force=bool(result.recommendations or result.shadow),
        )
        return result

    def beat(self, status: str, force: bool = False) -> None:
        """Write the heartbeat: after every pass that stored rows (`force`), on any other status
        than ok, and at least every `HEARTBEAT_IDLE_S` while nothing arrives."""
        idle = time.monotonic() - self._last_beat < HEARTBEAT_IDLE_S
        if idle and not force and status == "ok":
            return
        self._last_beat = time.monotonic()
        serving = self.manager.serving()
        s = self.stats
        lag_s = None
        if s.newest_bar is not None and s.newest_scored is not None:
            lag_s = max(0.0, (s.newest_bar - s.newest_scored).total_seconds())
        details: dict[str, Any] = {
            "champion": serving.champion.version if serving.champion else None,
            "challengers": [m.version for m in serving.challengers],
            "skipped": dict(serving.skipped),  # challenger -> why it does not score in shadow
            "newest_bar": s.newest_bar,
            "newest_scored": s.newest_scored,
            "lag_s": lag_s,
            "last_pass_ms": round(s.last_pass_ms, 1),
            "passes": s.passes,
            "signals": s.signals,
            "shadow": s.shadow,
            "invocations": s.invocations,
            "poll_s": self.poll_s,
            "error": s.last_error,
        }
        try:
            heartbeat(WORKER, status, **details)
        except DB_ERRORS as exc:
            log.warning("heartbeat not written: %s", self.settings.redact(str(exc)).splitlines()[0])

    # ------------------------------------------------------------------ the loop
    def _wait(self, listener: Listener | None, seconds: float) -> None:
        if listener is None:
            self.shutdown.wait(seconds)
            return
        notices = listener.wait(seconds, wake_fd=self.shutdown.wake_fd)
        self.stats.notifications += len(notices)
        for notice in notices:
            if notice.channel == REGISTRY:
                log.info("registry changed (%s): following it", notice.payload)

    def _serve(self, listener: Listener | None, max_passes: int | None) -> None:
        while not self.shutdown.requested:
            result = self.run_pass()
            if max_passes is not None and self.stats.passes >= max_passes:
                return
            if self.shutdown.requested:
                return
            self._wait(listener, BUSY_RETRY_S if result.busy else self.poll_s)

    def run(self, max_passes: int | None = None) -> WorkerStats:
        """Serve until shutdown (or `max_passes`), riding out database outages."""
        serve_listening(
            lambda listener: self._serve(listener, max_passes),
            channels=[BARS, REGISTRY] if self.use_notifications else None,
            shutdown=self.shutdown,
            on_error=self._error,
            redact=self.settings.redact,
        )
        self.beat("stopped", force=True)
        return self.stats

    def _error(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.serving.scoring_worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--once", action="store_true", help="one pass (a catch-up), then exit")
    parser.add_argument(
        "--poll-s", type=float, metavar="S", help="fallback poll period (default SCORING_POLL_S)"
    )
    parser.add_argument(
        "--no-listen",
        action="store_true",
        help="poll only, without LISTEN/NOTIFY (how the app's scorer thread used to find bars)",
    )
    args = parser.parse_args(argv)
    setup_logging(WORKER)
    settings = get_settings()
    worker = ScoringWorker(
        settings,
        shutdown=Shutdown().install(),
        poll_s=args.poll_s,
        use_notifications=not args.no_listen,
    )
    log.info(
        "scoring worker: %d tickers, poll %.1f s, %s",
        len(settings.universe),
        worker.poll_s,
        "woken by NOTIFY" if worker.use_notifications else "polling only",
    )
    stats = worker.run(max_passes=1 if args.once else None)
    log.info(
        "stopped (%s): %d passes, %d signals, %d shadow rows, %d outcomes",
        worker.shutdown.signal_name or "done",
        stats.passes,
        stats.signals,
        stats.shadow,
        stats.outcomes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
