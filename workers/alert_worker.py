"""The alert worker: delivers the alert outbox (`db.alerts`) to people.

    python -m workers.alert_worker [--once] [--poll-s S] [--no-listen]   (supervisord's program)

Each pass:

1. every `STALE_CHECK_S`, **judges the price feed on the market clock** and enqueues a
   `stale_feed` event when the market is open and no bar came for `ALERT_STALE_AFTER_MIN`
   session minutes (one per stale episode: the fingerprint names the newest bar);
2. **routes** the events no worker has routed yet (locked `FOR UPDATE SKIP LOCKED`): one
   delivery per channel some rule sends the event to (`workers.alerts.route`);
3. **dispatches** each channel with due deliveries to a sender thread (one per channel at a
   time, so a slow or failing receiver never holds up the others). The sender claims a batch
   in one transaction: deliveries due in the channel's quiet hours wait until they end;
   beyond the channel's rate limit they wait until its minute frees; the others get an
   attempt counted and a lease (`LEASE_S`). Each is sent through apprise and its outcome
   recorded at once: `sent`; or retried after a jittered, doubling back-off from
   `ALERT_RETRY_S`; or `failed` after `ALERT_MAX_ATTEMPTS`, with the error, secrets masked.

Delivered once per event and channel: the fingerprint stores an event once, the delivery key
routes it once per channel, and a delivery is claimed by one worker. SIGTERM / SIGINT let the
sends in flight finish and be recorded, so a restart sends nothing twice. A worker killed
while sending leaves its claimed deliveries to be sent again once their lease lapses (the
message's `event_id` and `fingerprint` let a receiver drop such a repeat).

It LISTENs for `db.notify.SIGNALS` and `db.notify.REGISTRY` (committed with the signals,
promotions and rollbacks they announce, and their events) and looks every `ALERT_POLL_S`
seconds for the others and for lost notifications; it wakes for the next due retry or
deferred delivery. A heartbeat (`worker_heartbeats`, worker `alert_worker`) carries its counts.
A database outage is logged and retried with back-off; the worker itself does not exit on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from config.cli import job_parser, setup_logging
from config.market_clock import market_time
from config.settings import Settings, get_settings
from core.loops import Shutdown, backoff_s
from core.timeutil import utc_now
from db import alerts as db_alerts
from db.alerts import Delivery
from db.bars import newest_bar_ts
from db.connections import DB_ERRORS, connect
from db.health import heartbeats
from db.notify import REGISTRY, SIGNALS, Listener, serve_listening
from db.ops import heartbeat
from workers.alerts import (
    Channel,
    load_channels,
    load_rules,
    quiet_until,
    render,
    route,
    send,
    stale_prices,
)

log = logging.getLogger(__name__)
WORKER = "alert_worker"
LEASE_S = 120.0  # a claimed delivery is another worker's to send again after this
BATCH = 10  # deliveries claimed at once per channel
ROUTE_BATCH = 200
STALE_CHECK_S = 30.0
HEARTBEAT_IDLE_S = 10.0
BUSY_WAIT_S = 0.2  # while senders work (a sender that is done wakes the loop at once)
PRUNE_EVERY_S = 3600.0
RETENTION = pd.Timedelta(days=30)  # finished events older than this are deleted
RATE_WINDOW = pd.Timedelta(minutes=1)


@dataclass
class WorkerStats:
    """What the worker has done since it started."""

    passes: int = 0
    routed: int = 0
    deliveries: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    stale: int = 0
    notifications: int = 0
    errors: int = 0
    last_error: str | None = None


class AlertWorker:
    """One process's delivery loop (see the module docstring)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        shutdown: Shutdown | None = None,
        poll_s: float | None = None,
        use_notifications: bool = True,
        clock: Callable[[], pd.Timestamp] = utc_now,
        threads: int = 4,
    ) -> None:
        self.settings = settings or get_settings()
        self.shutdown = shutdown or Shutdown()
        self.poll_s = self.settings.alert_poll_s if poll_s is None else poll_s
        self.use_notifications = use_notifications
        self.clock = clock
        self.stats = WorkerStats()
        self.secrets = self.settings.secret_values()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="alert-send")
        self._busy: dict[str, Future[None]] = {}
        self._lock = threading.Lock()  # the stats, shared with the sender threads
        self._last_beat = self._last_stale = self._last_prune = float("-inf")
        # readable when a sender is done or shutdown is requested: the loop wakes at once
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: it is readable already
            os.write(self._wake_w, b"x")

    def _relay_shutdown(self) -> None:
        while not self.shutdown.wait(60.0):
            pass
        self._wake()

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, n in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    def _error(self, message: str) -> None:
        with self._lock:
            self.stats.errors += 1
            self.stats.last_error = self.settings.redact(message)[:300]

    # ------------------------------------------------------------------ one pass
    def run_pass(self) -> None:
        """Judge the price feed, route new events, dispatch channels with due deliveries."""
        now = self.clock()
        channels = load_channels(self.settings)
        if now.timestamp() - self._last_stale >= STALE_CHECK_S:
            self._last_stale = now.timestamp()
            self.check_stale()
        self.route_events(channels, now)
        self.dispatch(channels, now)
        if now.timestamp() - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now.timestamp()
            db_alerts.prune(now - RETENTION)
        self.stats.passes += 1
        self.beat("ok")

    def route_events(self, channels: dict[str, Channel], now: pd.Timestamp) -> int:
        """Give every unrouted event its deliveries; returns the deliveries added."""
        rules = load_rules(self.settings, channels)
        added = 0
        while True:
            with connect() as conn:
                events = db_alerts.unrouted_events(conn, ROUTE_BATCH)
                routes = {e.id: route(e, rules, channels) for e in events}
                added += db_alerts.route(conn, routes, now)
            self._count(routed=len(events))
            if len(events) < ROUTE_BATCH:
                break
        self._count(deliveries=added)
        return added

    def check_stale(self) -> int | None:
        """Enqueue a `stale_feed` event when the price feed is stale on the market clock;
        returns the new event's id (None: not stale, or already alerted for this episode)."""
        market = market_time(self.settings)
        if not market.anchored:
            return None  # an accelerated source whose clock has not started: nothing to judge
        stale = stale_prices(newest_bar_ts(), market, self.settings.alert_stale_after_min)
        if stale is None:
            return None
        beats = heartbeats()
        ingestor = beats[beats["worker"] == "price_ingestor"]
        age = None
        if not ingestor.empty:
            age = (utc_now() - ingestor["last_beat"].iloc[0]).total_seconds()
        event_id = db_alerts.enqueue("stale_feed", stale.payload(age), stale.fingerprint)
        if event_id is not None:
            self._count(stale=1)
            log.warning("stale feed: %s", stale.payload(age)["reason"])
        return event_id

    def dispatch(self, channels: dict[str, Channel], now: pd.Timestamp) -> None:
        """Hand each channel with due deliveries to a sender thread, unless one is at work."""
        self._busy = {name: f for name, f in self._busy.items() if not f.done()}
        for name in db_alerts.due_channels(now):
            if name not in self._busy:
                self._busy[name] = self._pool.submit(self._deliver, name, channels.get(name))

    def idle(self, timeout_s: float = 60.0) -> None:
        """Wait until every sender thread is done (tests, `--once`, shutdown)."""
        for future in list(self._busy.values()):
            future.result(timeout=timeout_s)
        self._busy.clear()

    # ------------------------------------------------------------------ a sender thread
    def _deliver(self, name: str, channel: Channel | None) -> None:
        try:
            self._deliver_batches(name, channel)
        finally:
            self._wake()  # the loop may hand this channel new deliveries now

    def _deliver_batches(self, name: str, channel: Channel | None) -> None:
        try:
            while not self.shutdown.requested:
                batch = self._claim(name, channel, self.clock())
                if batch is None:
                    return
                for delivery in batch:
                    assert channel is not None
                    self._send(channel, delivery)
        except DB_ERRORS as exc:
            self._error(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
            log.error(
                "channel %s: database error, its claimed deliveries wait for their lease", name
            )
        except Exception as exc:  # a bug must not kill the sender pool silently
            self._error(f"{name}: {type(exc).__name__}: {exc}")
            log.exception("channel %s: sending stopped", name)

    def _claim(
        self, name: str, channel: Channel | None, now: pd.Timestamp
    ) -> list[Delivery] | None:
        """The next batch to send now (None: nothing more now); deliveries of a removed or
        disabled channel fail, those in quiet hours or over the rate limit wait."""
        with connect() as conn:
            due = db_alerts.lock_due(conn, name, now, BATCH)
            if not due:
                return None
            if channel is None or not channel.enabled:
                why = "disabled" if channel is not None else "no longer configured"
                db_alerts.fail_all(conn, due, f"channel {name} is {why}", now)
                self._count(failed=len(due))
                return []
            quiet_end = quiet_until(now, channel.quiet, self.settings.alert_timezone)
            if quiet_end is not None:
                db_alerts.defer(conn, due, quiet_end, "quiet hours", now)
                self._count(deferred=len(due))
                return None
            sent, oldest = db_alerts.sent_since(conn, name, now - RATE_WINDOW)
            budget = max(0, channel.per_minute - sent)
            send_now, wait = due[:budget], due[budget:]
            db_alerts.defer(conn, wait, oldest + RATE_WINDOW, "rate limit", now)
            db_alerts.claim(conn, send_now, now + pd.Timedelta(seconds=LEASE_S), now)
        self._count(deferred=len(wait))
        return send_now or None

    def _send(self, channel: Channel, delivery: Delivery) -> None:
        error = send(channel, render(delivery.event, self.settings), self.secrets)
        now = self.clock()
        what = f"{delivery.event.kind} event {delivery.event.id} to {channel.name}"
        if error is None:
            db_alerts.record(delivery, now=now)
            self._count(sent=1)
            log.info("sent %s", what)
        elif delivery.attempt >= self.settings.alert_max_attempts:
            db_alerts.record(delivery, now=now, error=error)
            self._count(failed=1)
            log.error("failed %s after %d attempts: %s", what, delivery.attempt, error)
        else:
            retry = self.settings.alert_retry_s
            wait = backoff_s(delivery.attempt, retry, 30 * retry)
            retry_at = now + pd.Timedelta(seconds=wait)
            db_alerts.record(delivery, now=now, error=error, retry_at=retry_at)
            self._count(retried=1)
            log.warning(
                "attempt %d of %s failed (%s); retry in %.1f s", delivery.attempt, what, error, wait
            )

    # ------------------------------------------------------------------ heartbeat and loop
    def beat(self, status: str, force: bool = False) -> None:
        """The heartbeat: on any other status than ok, and at least every
        `HEARTBEAT_IDLE_S`."""
        if (
            not force
            and status == "ok"
            and utc_now().timestamp() - self._last_beat < HEARTBEAT_IDLE_S
        ):
            return
        self._last_beat = utc_now().timestamp()
        with self._lock:
            details: dict[str, Any] = dict(vars(self.stats))
        details.update(poll_s=self.poll_s, sending=sorted(self._busy))
        try:
            heartbeat(WORKER, status, **details)
        except DB_ERRORS as exc:
            log.warning("heartbeat not written: %s", self.settings.redact(str(exc)).splitlines()[0])

    def _wait_s(self) -> float:
        now = self.clock()
        due = db_alerts.next_due(now)
        wait = self.poll_s if due is None else min(self.poll_s, (due - now).total_seconds())
        return max(wait, BUSY_WAIT_S if self._busy else 0.01)

    def _wait(self, listener: Listener | None, seconds: float) -> None:
        if listener is None:
            select.select([self._wake_r], [], [], seconds)
        else:
            self.stats.notifications += len(listener.wait(seconds, wake_fd=self._wake_r))
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)

    def _serve(self, listener: Listener | None, max_passes: int | None) -> None:
        while not self.shutdown.requested:
            self.run_pass()
            if max_passes is not None and self.stats.passes >= max_passes:
                return
            self._wait(listener, self._wait_s())

    def run(self, max_passes: int | None = None) -> WorkerStats:
        """Serve until shutdown (or `max_passes`), riding out database outages; the sends in
        flight finish and are recorded before it returns."""
        threading.Thread(target=self._relay_shutdown, daemon=True).start()
        serve_listening(
            lambda listener: self._serve(listener, max_passes),
            channels=[SIGNALS, REGISTRY] if self.use_notifications else None,
            shutdown=self.shutdown,
            on_error=self._error,
            redact=self.settings.redact,
        )
        self._pool.shutdown(wait=True)
        self.beat("stopped", force=True)
        return self.stats


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("workers.alert_worker", __doc__)
    parser.add_argument("--once", action="store_true", help="one pass and its sends, then exit")
    parser.add_argument(
        "--poll-s", type=float, metavar="S", help="fallback poll period (default ALERT_POLL_S)"
    )
    parser.add_argument("--no-listen", action="store_true", help="poll only, without LISTEN/NOTIFY")
    args = parser.parse_args(argv)
    setup_logging(WORKER)
    settings = get_settings()
    worker = AlertWorker(
        settings,
        shutdown=Shutdown().install(),
        poll_s=args.poll_s,
        use_notifications=not args.no_listen,
    )
    channels = len(settings.alert_urls.get_secret_value().split()) if settings.alert_urls else 0
    log.info(
        "alert worker: %d channel(s) from ALERT_URLS (and those added in the app), poll %.1f s, %s",
        channels,
        worker.poll_s,
        "woken by NOTIFY" if worker.use_notifications else "polling only",
    )
    stats = worker.run(max_passes=1 if args.once else None)
    log.info(
        "stopped (%s): %d passes, %d sent, %d retried, %d failed, %d deferred",
        worker.shutdown.signal_name or "done",
        stats.passes,
        stats.sent,
        stats.retried,
        stats.failed,
        stats.deferred,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
