"""The accelerated market clock shared by every process of one installation.

The simulated and replay sources run on a `SessionClock`. Its anchor (market start, the real
time that start corresponds to, the speed) is kept in `settings.data_dir / "market_clock.json"`,
so the price ingestor, the news ingestor, a restarted worker and `seed_history` all agree on
"now". The first process that needs the clock writes the anchor; delete the file (or run
`python -m workers.seed_history --reset-clock`) to start the clock again.

Default start: the open of the session *before* the latest session that opened at or before
the wall-clock now. The market then replays a recent session and runs on into the next ones,
so the demo has bars to show at once, at any hour.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from workers.sources.base import xnys
from workers.sources.simulated import SessionClock

log = logging.getLogger(__name__)

ANCHOR_FILE = "market_clock.json"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(anchor, indent=2) + "\n")
    if exclusive:
        try:
            os.link(tmp, path)  # fails if another process created the anchor first
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True
    os.replace(tmp, path)
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
