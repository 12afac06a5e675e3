"""The crontab on the market source's clock: `python -m workers.scheduler`.

The container runs `./crontab` with supercronic on the wall clock. An accelerated simulated or
replay market (the demo) lives on its own clock (`config.market_clock`): a session passes in
minutes, and the closed hours between two sessions pass in an instant. This scheduler runs the
same crontab lines on that clock, through the same guard (`workers.cron_job`, told the market's
New York date with `--today`), so drift checks come every 15 market minutes of the session and
the after-close and before-open jobs (backfill, training and validation, corporate actions,
macro) run, in their crontab order, when the clock crosses from one session to the next. With a
live (wall-clock) source it behaves like cron.

Each tick (every `--tick` real seconds) it collects the crontab entries whose time fell in the
market interval since the last tick — each entry at most once per tick, at its latest time, so a
long pause does not replay a backlog — and runs them one after another in a thread of their own;
the next tick's entries do not wait for them (the guard's per-job lock refuses overlaps).
"""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from croniter import croniter

from config.cli import job_parser, setup_logging
from config.market_clock import MarketTime, market_time
from config.settings import Settings, get_settings
from core.timeutil import NEW_YORK

log = logging.getLogger("workers.scheduler")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TZ = NEW_YORK
GUARD = ["python", "-m", "workers.cron_job"]


class CrontabError(ValueError):
    """A crontab line this scheduler cannot read."""


@dataclass(frozen=True)
class Entry:
    """One crontab line: five schedule fields and the command."""

    schedule: str
    command: tuple[str, ...]
    line: int

    @property
    def name(self) -> str:
        """The guard's job name (or the command itself)."""
        cmd = list(self.command)
        if "--name" in cmd:
            return cmd[cmd.index("--name") + 1]
        return " ".join(cmd[:3])


def parse_crontab(text: str) -> tuple[ZoneInfo, list[Entry]]:
    """The time zone (CRON_TZ, default New York) and the entries of a crontab."""
    tz = ZoneInfo(DEFAULT_TZ)
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("CRON_TZ="):
            tz = ZoneInfo(line.split("=", 1)[1].strip())
            continue
        if "=" in line.split()[0]:
            continue  # other environment lines
        fields = line.split(None, 5)
        if len(fields) < 6:
            raise CrontabError(f"line {number}: expected five schedule fields and a command")
        schedule = " ".join(fields[:5])
        if not croniter.is_valid(schedule):
            raise CrontabError(f"line {number}: invalid schedule {schedule!r}")
        entries.append(Entry(schedule, tuple(shlex.split(fields[5])), number))
    return tz, entries


def due(
    entries: list[Entry], tz: ZoneInfo, after: pd.Timestamp, until: pd.Timestamp
) -> list[tuple[pd.Timestamp, Entry]]:
    """Entries whose time fell in (after, until], each at its latest such time, oldest first."""
    out = []
    local_until = until.tz_convert(tz).floor("s").to_pydatetime()
    for entry in entries:
        prev = croniter(entry.schedule, local_until + pd.Timedelta(seconds=1)).get_prev(
            ret_type=float
        )
        fired = pd.Timestamp(prev, unit="s", tz="UTC")
        if after < fired <= until:
            out.append((fired, entry))
    return sorted(out, key=lambda pair: (pair[0], pair[1].line))


def with_market_date(command: tuple[str, ...], day: date) -> list[str]:
    """The command, with the guard told the market's New York date (`--today`)."""
    cmd = list(command)
    if cmd[: len(GUARD)] == GUARD and "--today" not in cmd and "--" in cmd:
        cut = cmd.index("--")
        cmd = [*cmd[:cut], "--today", day.isoformat(), *cmd[cut:]]
    if cmd and cmd[0] in {"python", "python3"}:
        cmd[0] = sys.executable
    return cmd


class Scheduler:
    """Runs the due crontab entries on the market clock (see the module docstring)."""

    def __init__(self, crontab: Path, settings: Settings, tick_s: float = 1.0) -> None:
        self.tz, self.entries = parse_crontab(crontab.read_text())
        self.settings = settings
        self.tick_s = tick_s
        self.stopping = threading.Event()
        self.runs: list[tuple[pd.Timestamp, str, int]] = []  # market time, job, exit code
        self._chains: list[threading.Thread] = []

    def clock(self) -> MarketTime:
        return market_time(self.settings)

    def run_chain(self, fired: list[tuple[pd.Timestamp, Entry]]) -> None:
        """Run the entries of one tick one after another."""
        for at, entry in fired:
            if self.stopping.is_set():
                return
            day = at.tz_convert(self.tz).date()
            cmd = with_market_date(entry.command, day)
            log.info("%s (market %s): %s", entry.name, at, " ".join(cmd))
            proc = subprocess.run(cmd, cwd=ROOT, check=False)  # noqa: S603
            self.runs.append((at, entry.name, proc.returncode))
            log.info("%s: exit code %d", entry.name, proc.returncode)

    def tick(self, last: pd.Timestamp) -> pd.Timestamp:
        """Start the entries due since `last`; returns the market time reached."""
        now = self.clock()
        if not now.anchored:
            return last  # the market's clock has not started: nothing is due yet
        fired = due(self.entries, self.tz, last, now.now)
        if fired:
            chain = threading.Thread(target=self.run_chain, args=(fired,), daemon=True)
            chain.start()
            self._chains = [c for c in self._chains if c.is_alive()] + [chain]
        return max(last, now.now)

    def run(self, max_ticks: int | None = None) -> int:
        now = self.clock()
        log.info(
            "%d crontab entries on the %s; times in %s", len(self.entries), now.description, self.tz
        )
        last = now.now
        ticks = 0
        while not self.stopping.is_set() and (max_ticks is None or ticks < max_ticks):
            self.stopping.wait(self.tick_s)
            last = self.tick(last)
            ticks += 1
        for chain in self._chains:
            chain.join(timeout=60)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("workers.scheduler", __doc__)
    parser.add_argument("--crontab", type=Path, default=ROOT / "crontab")
    parser.add_argument("--tick", type=float, default=1.0, help="real seconds between looks")
    args = parser.parse_args(argv)
    setup_logging("workers.scheduler")
    try:
        scheduler = Scheduler(args.crontab, get_settings(), args.tick)
    except (OSError, CrontabError) as exc:
        log.error("cannot read the crontab: %s", exc)
        return 2

    def stop(*_: object) -> None:
        scheduler.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return scheduler.run()


if __name__ == "__main__":
    sys.exit(main())
