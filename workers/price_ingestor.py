"""The 24/7 price ingestor: 1-minute bars of the universe into `bars_1m`.

    python -m workers.price_ingestor [--source simulated|replay|yfinance] [--once] [--max-polls N]

One poll per bar boundary of the source's clock (`poll_interval_s` of that clock: real seconds
for yfinance, 60 / sim_speed real seconds per bar for the simulated market), never more often
than the source's request spacing allows, idling on the XNYS calendar outside sessions. Each
poll: the session's final bars newer than the last bar seen per ticker (an in-memory dict,
seeded from the database at start); missing session minutes in between go to
`backfill_queue` in the same transaction as the bars; when a session has closed, its trailing
minutes are checked too and the queue is drained (`workers.backfill`).

Every iteration is guarded: errors are logged with context and retried with jittered back-off
(longer for rate limits). When the database is unreachable, bars stay buffered in memory and are
written, once, when it returns (upserts: nothing lost, nothing twice). SIGTERM / SIGINT flush
the buffer and exit. A heartbeat (`worker_heartbeats`, worker `price_ingestor`) is written at
most once per real second.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from config.cli import job_parser, setup_logging
from config.market_calendar import xnys
from config.settings import Settings, get_settings
from core.locks import LockBusyError
from db.bars import newest_bar_per_ticker
from db.connections import DB_ERRORS
from db.errors import DataValidationError
from db.ops import heartbeat
from workers.backfill import drain_queue
from workers.bar_store import write_bars
from workers.common import Shutdown, backoff_s
from workers.gaps import find_gaps
from workers.guard_tail import GuardTail
from workers.sources import SOURCE_KINDS, make_source
from workers.sources.base import (
    MarketDataSource,
    RateLimitError,
    clean_bars,
    current_session,
    final_only,
)
from workers.sources.replay import ReplayFileError

log = logging.getLogger("workers.price_ingestor")
WORKER = "price_ingestor"
SOURCE_RETRY_S = 60.0


@dataclass
class Stats:
    polls: int = 0
    bars_received: int = 0
    bars_written: int = 0
    gaps_found: int = 0
    errors: int = 0
    rate_limited: int = 0


@functools.cache
def _closes_ns() -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(xnys().closes).as_unit("ns").asi8)


def last_closed_minute(now: pd.Timestamp) -> pd.Timestamp | None:
    """The last minute of the latest session that has closed by `now`."""
    closes = _closes_ns()
    i = int(np.searchsorted(closes, now.as_unit("ns").value, side="right")) - 1
    if i < 0:
        return None
    return pd.Timestamp(closes[i], tz="UTC") - pd.Timedelta(minutes=1)


class PriceIngestor:
    """Polls a source and stores its final bars; see the module docstring."""

    def __init__(
        self,
        source: MarketDataSource,
        tickers: list[str],
        *,
        poll_interval_s: float = 60.0,
        sleep: Callable[[float], bool] | None = None,
        shutdown: Shutdown | None = None,
        drain_backfill: bool = True,
    ) -> None:
        self.source = source
        self.tickers = list(tickers)
        self.poll_interval_s = poll_interval_s
        self.shutdown = shutdown or Shutdown()
        self.sleep = sleep or self.shutdown.wait
        self.drain_backfill = drain_backfill
        self.last_ts: dict[str, pd.Timestamp] = {}
        self.pending_bars: list[pd.DataFrame] = []
        self.guard_tail = GuardTail()  # the stored bars the data-quality guard judges on
        self.pending_gaps: list[pd.DataFrame] = []
        self.closed_through: pd.Timestamp | None = None
        self.state_loaded = False
        self.backfill_due = True
        self.failures = 0
        self.rate_limits = 0
        self.db_down_since: float | None = None
        self.stats = Stats()
        self._last_beat = float("-inf")
        self._last_summary = time.monotonic()

    # ------------------------------------------------------------------ state
    @property
    def buffered(self) -> int:
        return sum(len(b) for b in self.pending_bars)

    def load_state(self) -> None:
        """Seed the last-bar dict from the database (raises while it is unreachable)."""
        stored = newest_bar_per_ticker(self.tickers)
        for ticker, ts in stored.items():
            if ticker not in self.last_ts or ts > self.last_ts[ticker]:
                self.last_ts[ticker] = ts
        self.state_loaded = True
        log.info(
            "state: last bars of %d/%d tickers from the database", len(stored), len(self.tickers)
        )

    # ------------------------------------------------------------------ one poll
    def poll(self, now: pd.Timestamp) -> int:
        """Fetch, gap-check and buffer the new final bars at `now`; returns how many."""
        since = None
        if self.last_ts and all(t in self.last_ts for t in self.tickers):
            since = min(self.last_ts[t] for t in self.tickers)
        raw = self.source.latest_bars(self.tickers, now, since=since)
        bars, dropped = clean_bars(final_only(raw, now))
        if dropped:
            log.warning(
                "poll at %s: dropped %d malformed bar(s) from %s", now, dropped, self.source.name
            )
        bars = bars[bars["ticker"].isin(self.tickers)]
        if self.last_ts and not bars.empty and bars["ts"].min() <= max(self.last_ts.values()):
            known = bars["ticker"].map(pd.Series(self.last_ts, dtype="datetime64[ns, UTC]"))
            bars = bars[known.isna() | (bars["ts"] > known)]
        if bars.duplicated(["ticker", "ts"]).any():
            bars = bars.drop_duplicates(["ticker", "ts"], keep="last")
        bars = bars.reset_index(drop=True)
        closed = last_closed_minute(now)
        through = (
            closed
            if closed is not None and (self.closed_through is None or closed > self.closed_through)
            else None
        )
        gaps = find_gaps(self.last_ts, bars, through=through)
        if not bars.empty:
            self.last_ts.update(bars.groupby("ticker")["ts"].max().to_dict())
            self.pending_bars.append(bars)
        if not gaps.empty:
            self.pending_gaps.append(gaps)
            self.stats.gaps_found += len(gaps)
            log.info("poll at %s: %d gap(s) queued for backfill", now, len(gaps))
        if through is not None:
            self.closed_through = through
            self.backfill_due = True
        self.stats.bars_received += len(bars)
        return len(bars)

    def flush(self) -> bool:
        """Write buffered bars and gaps in one transaction; keep them if the database is down."""
        if not self.pending_bars and not self.pending_gaps:
            return True
        bars, gaps = self._merged(self.pending_bars, ["ticker", "ts"]), None
        if self.pending_gaps:
            gaps = self._merged(self.pending_gaps, ["ticker", "gap_start"])
        self.pending_bars = [] if bars.empty else [bars]
        self.pending_gaps = [] if gaps is None else [gaps]
        try:
            written = write_bars(bars, source=self.source.name, gaps=gaps, tail=self.guard_tail)
        except DataValidationError as exc:  # clean_bars makes this unreachable; never loop on it
            log.error("dropping %d buffered bar(s) the database refuses: %s", self.buffered, exc)
            self.pending_bars, self.pending_gaps = [], []
            self.stats.errors += 1
            return False
        except DB_ERRORS as exc:
            if self.db_down_since is None:
                self.db_down_since = time.monotonic()
            log.warning(
                "database unavailable (%s); %d bar(s) buffered in memory",
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                self.buffered,
            )
            return False
        if self.db_down_since is not None:
            log.info(
                "database back after %.1f s; wrote %d buffered bar(s)",
                time.monotonic() - self.db_down_since,
                written,
            )
            self.db_down_since = None
        self.stats.bars_written += written
        self.pending_bars, self.pending_gaps = [], []
        return True

    @staticmethod
    def _merged(frames: list[pd.DataFrame], key: list[str]) -> pd.DataFrame:
        """One frame of buffered batches, the newest version of each key kept."""
        if not frames:
            return pd.DataFrame()
        if len(frames) == 1:
            return frames[0]
        merged = pd.concat(frames, ignore_index=True)
        return merged.drop_duplicates(key, keep="last").reset_index(drop=True)

    # ------------------------------------------------------------------ loop
    def step(self) -> float:
        """One guarded iteration; returns the real seconds to wait before the next."""
        started = time.monotonic()
        now = self.source.now()
        status = "ok"
        try:
            if not self.state_loaded:
                self.load_state()
            if current_session(now) is None and not self.source.skips_closed_hours:
                status = "idle"
            else:
                self.poll(now)
                self.stats.polls += 1
            self.failures = self.rate_limits = 0
        except RateLimitError as exc:
            self.rate_limits += 1
            self.stats.rate_limited += 1
            status = "rate_limited"
            log.warning("poll at %s: %s (%d in a row); backing off", now, exc, self.rate_limits)
        except Exception as exc:
            self.failures += 1
            self.stats.errors += 1
            status = "error"
            log.exception(
                "poll at %s from %s failed (%d in a row): %s",
                now,
                self.source.name,
                self.failures,
                exc,
            )
        flushed = self.flush()
        if flushed and self.backfill_due and self.drain_backfill and self.state_loaded:
            self._drain(now)
        self._beat("degraded" if not flushed else status, now)
        self._summary(now)
        return self._wait_s(now, status, time.monotonic() - started)

    def _drain(self, now: pd.Timestamp) -> None:
        """Post-market backfill: fill the queued gaps of every closed session."""
        closed = last_closed_minute(now)
        if closed is None:
            return
        try:
            drain_queue(self.source, before=closed + pd.Timedelta(minutes=1), tickers=self.tickers)
            self.backfill_due = False
        except LockBusyError as exc:
            log.info("post-market backfill deferred: %s; retried after the next poll", exc)
        except Exception:
            log.exception("post-market backfill failed; retried after the next poll")

    def _wait_s(self, now: pd.Timestamp, status: str, spent_s: float) -> float:
        speed = self.source.clock_speed
        limits = self.source.limits
        if status == "idle":
            to_open = (xnys().next_open(now) - now).total_seconds()
            return float(max(1.0, min(60.0, to_open + self.source.settle_s)))
        period = pd.Timedelta(seconds=self.poll_interval_s)
        boundary = now.floor(period) + period
        wait = (boundary - now).total_seconds() / speed + self.source.settle_s / max(1.0, speed)
        wait = max(wait, limits.min_request_interval_s - spent_s)
        if status == "rate_limited":
            base = max(5.0, limits.min_request_interval_s)
            wait = max(wait, backoff_s(self.rate_limits, base, 300.0))
        elif status == "error":
            wait = max(wait, backoff_s(self.failures, 0.5, 60.0))
        return float(max(0.0, wait))

    def _beat(self, status: str, now: pd.Timestamp) -> None:
        if time.monotonic() - self._last_beat < 1.0 and status == "ok":
            return
        newest = max(self.last_ts.values()) if self.last_ts else None
        try:
            heartbeat(
                WORKER,
                status,
                source=self.source.name,
                market_time=now.isoformat(),
                last_bar=None if newest is None else newest.isoformat(),
                buffered_bars=self.buffered,
                **vars(self.stats),
            )
            self._last_beat = time.monotonic()
        except DB_ERRORS as exc:
            log.debug("heartbeat not written: %s", exc)

    def _summary(self, now: pd.Timestamp) -> None:
        if time.monotonic() - self._last_summary < 30.0:
            return
        self._last_summary = time.monotonic()
        s = self.stats
        log.info(
            "market %s: %d poll(s), %d bar(s) received, %d written, %d buffered, %d gap(s), "
            "%d error(s), %d rate limit(s)",
            now.strftime("%Y-%m-%d %H:%M"),
            s.polls,
            s.bars_received,
            s.bars_written,
            self.buffered,
            s.gaps_found,
            s.errors,
            s.rate_limited,
        )

    def run(self, max_polls: int | None = None) -> Stats:
        """Poll until shutdown (or `max_polls` iterations), then flush and return the stats."""
        iterations = 0
        while not self.shutdown.requested:
            wait = self.step()
            iterations += 1
            if max_polls is not None and iterations >= max_polls:
                break
            if self.sleep(wait):
                break
        self.close()
        return self.stats

    def close(self, deadline_s: float = 10.0) -> None:
        """Final flush, retried for up to `deadline_s` real seconds."""
        end = time.monotonic() + deadline_s
        while not self.flush() and time.monotonic() < end:
            time.sleep(0.5)
        if self.buffered:
            log.error(
                "exiting with %d bar(s) unwritten (database unreachable); the source serves "
                "them again after a restart, or the backfill fetches them",
                self.buffered,
            )
        self._last_beat = float("-inf")
        self._beat("stopped", self.source.now())
        log.info("stopped (%s): %s", self.shutdown.signal_name or "done", self.stats)


def source_when_usable(
    settings: Settings, kind: str | None, shutdown: Shutdown, retry_s: float = SOURCE_RETRY_S
) -> MarketDataSource | None:
    """The market source, once its input is usable. While it is not (a replay file missing,
    unreadable or without one usable row) the reason is logged and heartbeated and the input
    tried again every `retry_s`, so the worker stays up saying what is wrong instead of
    restarting in a loop; None when shut down meanwhile."""
    while not shutdown.requested:
        try:
            return make_source(settings, kind)
        except ReplayFileError as exc:
            log.error("market source unusable, trying again in %.0f s: %s", retry_s, exc)
            try:
                heartbeat(WORKER, "error", source=kind or settings.market_source, error=str(exc))
            except DB_ERRORS as db_exc:
                log.debug("heartbeat not written: %s", db_exc)
            shutdown.wait(retry_s)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("workers.price_ingestor", __doc__)
    parser.add_argument("--source", choices=SOURCE_KINDS, help="default: settings.market_source")
    parser.add_argument("--once", action="store_true", help="one poll, flush, exit")
    parser.add_argument("--max-polls", type=int, metavar="N", help="stop after N iterations")
    args = parser.parse_args(argv)
    setup_logging(WORKER)
    settings = get_settings()
    shutdown = Shutdown().install()
    source = source_when_usable(settings, args.source, shutdown)
    if source is None:
        return 0
    ingestor = PriceIngestor(
        source, settings.universe, poll_interval_s=settings.poll_interval_s, shutdown=shutdown
    )
    log.info(
        "price ingestor: %d tickers from %s (clock %sx, market now %s)",
        len(settings.universe),
        source.name,
        source.clock_speed,
        source.now(),
    )
    ingestor.run(max_polls=1 if args.once else args.max_polls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
