"""The market clock: "now" as the configured market source sees it.

Live sources (yfinance) run on the wall clock. The simulated and replay sources run on a
`SessionClock`: real seconds advance it through XNYS session minutes only, `speed` market
seconds per real second, so an accelerated demo always has a market to watch. Its anchor
(market start, the real time that start corresponds to, the speed) is kept in
`settings.data_dir / "market_clock.json"`, so the price ingestor, the news ingestor, a restarted
worker, `seed_history`, the scheduler and the app all agree on "now". The first process that
needs the clock writes the anchor; delete the file (or run
`python -m workers.seed_history --reset-clock`) to start the clock again.

Default start: the open of the session *before* the latest session that opened at or before
the wall-clock now. The market then replays a recent session and runs on into the next ones,
so the demo has bars to show at once, at any hour.

`market_time(settings)` is the read-only view every page, job and freshness check uses: the
market's now and which clock it comes from.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from config.market_calendar import xnys
from config.settings import Settings, get_settings
from core.files import link_exclusive, write_text_atomic

log = logging.getLogger(__name__)

ANCHOR_FILE = "market_clock.json"


class SessionClock:
    """A clock on trading time: real seconds advance it through session minutes only.

    `speed` market seconds pass per real second (60 = one bar per second), and closed hours are
    skipped. `time_fn` supplies real time (tests pass a manual one).
    """

    def __init__(
        self,
        start: pd.Timestamp,
        speed: float = 1.0,
        real_start: float | None = None,
        time_fn: Callable[[], float] = time.time,
    ) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self.time_fn = time_fn
        self.real_start = time_fn() if real_start is None else real_start
        cal = xnys()
        start = pd.Timestamp(start).tz_convert("UTC").floor("min")
        first = cal.minute_to_session(start, direction="next")
        sessions = cal.sessions_in_range(first, first + pd.Timedelta(days=400))
        minutes = cal.sessions_minutes(sessions[0], sessions[-1])
        self._minutes = minutes[minutes >= start] if len(minutes) else minutes
        self.start: pd.Timestamp = self._minutes[0]

    def now(self) -> pd.Timestamp:
        elapsed_market_s = max(0.0, (self.time_fn() - self.real_start) * self.speed)
        idx = int(elapsed_market_s // 60)
        idx = min(idx, len(self._minutes) - 1)
        frac = elapsed_market_s - idx * 60
        return self._minutes[idx] + pd.Timedelta(seconds=frac)


def default_clock_start(now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The open of the session before the latest session opened at or before `now` (UTC)."""
    cal = xnys()
    now = pd.Timestamp.now(tz="UTC") if now is None else now.tz_convert("UTC")
    sessions = cal.sessions_in_range(
        (now - pd.Timedelta(days=15)).tz_convert(None).normalize(), now.tz_convert(None).normalize()
    )
    opened = [s for s in sessions if cal.session_open(s) <= now]
    if len(opened) < 2:
        raise ValueError(f"no two XNYS sessions opened in the 15 days before {now}")
    return pd.Timestamp(cal.session_open(opened[-2]))


def anchor_path(data_dir: Path) -> Path:
    return Path(data_dir) / ANCHOR_FILE


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable clock anchor %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, anchor: dict[str, Any], exclusive: bool) -> bool:
    """Write the anchor atomically; with `exclusive`, only if no anchor exists yet."""
    text = json.dumps(anchor, indent=2) + "\n"
    if exclusive:
        return link_exclusive(path, text)  # False: another process anchored first
    write_text_atomic(path, text)
    return True


def anchored_clock(
    data_dir: Path,
    kind: str,
    speed: float,
    start: pd.Timestamp | None = None,
    reset: bool = False,
) -> SessionClock:
    """The shared clock for `kind` (e.g. "simulated"), creating or re-anchoring it as needed.

    An existing anchor of the same kind is kept (whatever `start` is, when `start` is None); an
    anchor of another kind or start is replaced. A changed speed keeps market time continuous:
    the clock continues from where it is, at the new speed.
    """
    path = anchor_path(data_dir)
    want = None if start is None else pd.Timestamp(start).tz_convert("UTC").floor("min")
    existing = None if reset else _read(path)
    if existing and existing.get("kind") == kind:
        have = pd.Timestamp(existing["start"])
        if want is None or have == want:
            old = SessionClock(have, float(existing["speed"]), float(existing["real_start"]))
            return old if old.speed == speed else _reanchor(path, kind, have, old, speed)
    begin = default_clock_start() if want is None else want
    anchor = {"kind": kind, "start": begin.isoformat(), "real_start": time.time(), "speed": speed}
    if not _write(path, anchor, exclusive=existing is None and not reset):
        return anchored_clock(data_dir, kind, speed, start)  # another process anchored first
    log.info("market clock anchored: %s from %s at %sx", kind, begin, speed)
    return SessionClock(begin, speed, real_start=float(anchor["real_start"]))


def _reanchor(
    path: Path, kind: str, start: pd.Timestamp, old: SessionClock, speed: float
) -> SessionClock:
    """Same market position, new speed: shift real_start so now() is unchanged."""
    now_real = time.time()
    market_s = (now_real - old.real_start) * old.speed
    real_start = now_real - market_s / speed
    anchor = {"kind": kind, "start": start.isoformat(), "real_start": real_start, "speed": speed}
    _write(path, anchor, exclusive=False)
    log.info("market clock speed changed from %sx to %sx", old.speed, speed)
    return SessionClock(start, speed, real_start=real_start)


def reset_clock(data_dir: Path) -> bool:
    """Forget the anchor; the next process starts the clock afresh. True if one existed."""
    path = anchor_path(data_dir)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def clock_kind(settings: Settings) -> str | None:
    """The anchor kind of the configured market source, or None for live (wall-clock) sources."""
    if settings.market_source == "simulated":
        return "simulated"
    if settings.market_source == "replay" and settings.replay_path is not None:
        return f"replay:{Path(settings.replay_path).resolve()}"
    return None


def read_clock(data_dir: Path, kind: str) -> SessionClock | None:
    """The anchored clock of `kind` if one is anchored (never creates or changes an anchor)."""
    anchor = _read(anchor_path(data_dir))
    if not anchor or anchor.get("kind") != kind:
        return None
    try:
        return SessionClock(
            pd.Timestamp(anchor["start"]), float(anchor["speed"]), float(anchor["real_start"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring unusable clock anchor %s: %s", anchor_path(data_dir), exc)
        return None


@dataclass(frozen=True)
class MarketTime:
    """The market's "now" and the clock it comes from."""

    now: pd.Timestamp
    clock: str  # "simulated", "replay" or "wall"
    speed: float = 1.0
    anchored: bool = True  # False: an accelerated source whose clock has not started yet

    @property
    def description(self) -> str:
        """A short sentence naming the clock, for pages and logs."""
        if self.clock == "wall":
            return "wall clock (live market data)"
        if not self.anchored:
            return f"{self.clock} market clock, not started yet (wall clock shown)"
        return f"{self.clock} market clock at {self.speed:g}x"


def market_time(settings: Settings | None = None) -> MarketTime:
    """Now on the configured market source's clock (the wall clock for live sources)."""
    settings = settings or get_settings()
    kind = clock_kind(settings)
    wall = pd.Timestamp.now(tz="UTC")
    if kind is None:
        return MarketTime(wall, "wall")
    name = kind.split(":", 1)[0]
    clock = read_clock(settings.data_dir, kind)
    if clock is None:
        return MarketTime(wall, name, anchored=False)
    return MarketTime(clock.now(), name, clock.speed)
