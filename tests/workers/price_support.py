"""Test support for the price worker: a manual clock, a fault-injecting source, a DB proxy."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy.engine import make_url

from config.market_clock import SessionClock
from db.reads import read_from_db
from workers.sources.base import MarketDataSource, SourceLimits
from workers.sources.simulated import SimulatedMarket

BAR_SQL = "SELECT ticker, ts, open, high, low, close, volume FROM bars_1m ORDER BY ticker, ts"


class ManualTime:
    """Real time that only moves when told to (the ingestor's sleep advances it)."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> bool:
        self.t += max(seconds, 1e-3)
        return False


def simulated(
    start: str, speed: float = 60.0, seed: int = 11, missing_rate: float = 0.01
) -> tuple[SimulatedMarket, ManualTime]:
    real = ManualTime()
    clock = SessionClock(pd.Timestamp(start, tz="UTC"), speed=speed, time_fn=real)
    return SimulatedMarket(seed=seed, missing_rate=missing_rate, clock=clock), real


def stored_bars() -> pd.DataFrame:
    bars = read_from_db(BAR_SQL)
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True).dt.as_unit("ns")
    return bars


def queue() -> pd.DataFrame:
    q = read_from_db(
        "SELECT ticker, gap_start, gap_end, status, attempts FROM backfill_queue "
        "ORDER BY ticker, gap_start"
    )
    for col in ("gap_start", "gap_end"):
        q[col] = pd.to_datetime(q[col], utc=True).dt.as_unit("ns")
    return q


def source_truth(
    market: MarketDataSource, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """What the source produced for start <= ts < end, in `stored_bars` shape."""
    bars = market.history(tickers, start, end)
    bars["ts"] = bars["ts"].dt.as_unit("ns")
    return bars.sort_values(["ticker", "ts"], ignore_index=True)


def assert_same_bars(stored: pd.DataFrame, truth: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        stored.reset_index(drop=True)[list(truth.columns)],
        truth.reset_index(drop=True),
        check_dtype=False,
    )


class FaultySource(MarketDataSource):
    """Wraps a source; `plan(poll_no)` returns the fault for that poll (or None)."""

    name = "simulated"
    limits = SourceLimits(10_000, None, None, 0.0)

    def __init__(self, inner: SimulatedMarket, plan: Callable[[int], str | None]) -> None:
        self.inner = inner
        self.plan = plan
        self.polls = 0
        self.faults: list[str] = []
        self.on_poll: Callable[[int], None] | None = None

    def now(self) -> pd.Timestamp:
        return self.inner.now()

    @property
    def clock_speed(self) -> float:
        return self.inner.clock_speed

    @property
    def skips_closed_hours(self) -> bool:
        return True

    def latest_bars(
        self, tickers: list[str], now: pd.Timestamp, since: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        from workers.sources.base import RateLimitError, SourceError

        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self.polls)
        fault = self.plan(self.polls)
        if fault:
            self.faults.append(fault)
        if fault == "exception":
            raise SourceError("injected: HTTP 502 from the upstream")
        if fault == "rate_limit":
            raise RateLimitError("injected: Too Many Requests")
        if fault == "timeout":
            raise TimeoutError("injected: read timed out")
        if fault == "empty":
            return self.inner.latest_bars(tickers, now, since).iloc[0:0]
        bars = self.inner.latest_bars(tickers, now, since)
        if fault == "partial_tickers":  # only some tickers answered
            return bars[bars["ticker"].isin(tickers[: len(tickers) // 2])]
        if fault == "partial_last_bar":  # the forming minute, with a price from mid-minute
            forming = bars.tail(len(tickers)).copy()
            forming["ts"] = now.floor("min")
            forming["close"] = forming["open"] * 1.5
            forming["high"] = forming[["open", "close"]].max(axis=1)
            return pd.concat([bars, forming], ignore_index=True)
        if fault == "hole":  # a bar missing from the middle of the answer (arrives late)
            return bars.drop(index=bars.index[len(bars) // 2 : len(bars) // 2 + 1])
        return bars

    def history(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        return self.inner.history(tickers, start, end)

    def corporate_actions(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        return self.inner.corporate_actions(tickers, start, end)


def _target(url: str) -> tuple[int, Any]:
    """Address family and address of the PostgreSQL server behind a SQLAlchemy URL."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or "localhost"
    host = host[0] if isinstance(host, tuple) else host
    port = parsed.port or 5432
    if host.startswith("/"):
        return socket.AF_UNIX, os.path.join(host, f".s.PGSQL.{port}")
    return socket.AF_INET, (host, port)


class DbProxy:
    """A TCP proxy in front of PostgreSQL that can go down like a restarting server.

    `down()` severs every open connection and refuses new ones (the listening socket is
    closed); `up()` listens again on the same port.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.family, self.address = _target(url)
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self.port = 0
        self.up()

    @property
    def proxied_url(self) -> str:
        parsed = make_url(self.url)
        query = {k: v for k, v in parsed.query.items() if k != "host"}
        return parsed.set(host="127.0.0.1", port=self.port, query=query).render_as_string(
            hide_password=False
        )

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(self.family, socket.SOCK_STREAM)
            try:
                server.connect(self.address)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()


@contextlib.contextmanager
def database_through(url: str) -> Iterator[None]:
    """Point this process's engine at `url` (e.g. a proxy) for the duration."""
    from config.settings import get_settings
    from db import connections

    old = os.environ["DATABASE_URL"]
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    connections.dispose_engine()
    try:
        yield
    finally:
        os.environ["DATABASE_URL"] = old
        get_settings.cache_clear()
        connections.dispose_engine()
