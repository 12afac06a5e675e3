"""`make test-dates`: the tests that depend on the date or the time of day, at fixed instants.

Each instant runs the tests marked `dates` under libfaketime (Debian's `faketime` package):
the test session, the embedded PostgreSQL it starts and every process they spawn share one faked
clock that starts at the instant and runs on from there (`FAKETIME_DONT_RESET`), so the whole
machine lives at that moment, as a user's would. Two instants run side by side, each with its own
embedded server (data folders under `var/dates/`). A summary table ends the run; the exit code
is non-zero if any instant failed.

    python scripts/test_dates.py [--only NAME ...] [--jobs N] [-- PYTEST_ARGS...]
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


@dataclass(frozen=True)
class Instant:
    name: str
    utc: str  # YYYY-MM-DD HH:MM:SS, UTC
    why: str


INSTANTS = (
    Instant("thanksgiving-friday-open", "2026-11-27 16:00:00", "early close day, in its session"),
    Instant("thanksgiving-friday-closed", "2026-11-27 19:30:00", "after its 13:00 early close"),
    Instant("monday-after-holiday", "2026-07-06 12:00:00", "before the open, after July 3"),
    Instant("dst-spring-sunday", "2026-03-08 15:00:00", "the Sunday clocks go forward"),
    Instant("dst-spring-monday", "2026-03-09 13:45:00", "first session on EDT, 09:45"),
    Instant("dst-autumn-sunday", "2026-11-01 06:30:00", "01:30 EST, the repeated hour"),
    Instant("dst-autumn-monday", "2026-11-02 14:15:00", "09:15 EST: not open yet"),
    Instant("new-years-day", "2027-01-01 15:00:00", "a market holiday"),
    Instant("saturday", "2026-12-12 15:00:00", "a weekend day"),
    Instant("utc-0300", "2026-12-05 03:00:00", "Saturday in UTC, Friday 22:00 in New York"),
)


def faked_env(instant: Instant, slot: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME=f"@{instant.utc}",
        FAKETIME_DONT_RESET="1",
        TZ="UTC",
        DATA_DIR=str(ROOT / "var" / "dates" / f"slot{slot}"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.pop("DATABASE_URL", None)  # every instant gets its own embedded server on its clock
    return env


def marked_files() -> list[str]:
    """The test files holding tests marked `dates` (collecting only those keeps runs short)."""
    return sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if "mark.dates" in path.read_text(encoding="utf-8")
    )


def run_instant(instant: Instant, slot: int, pytest_args: list[str]) -> tuple[int, float, str]:
    """Start the slot's embedded server and the tests under the instant's clock, then stop it."""
    py = sys.executable
    log = ROOT / "var" / "dates" / f"{instant.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    script = (
        f'"{py}" -c "import datetime as d; print(\'faked now:\', d.datetime.now(d.UTC))" && '
        f'"{py}" -m db.embedded start >/dev/null && '
        f'"{py}" -m pytest -m dates -q -p no:cacheprovider {" ".join(marked_files())} '
        f"{' '.join(pytest_args)}; rc=$?; "
        f'"{py}" -m db.embedded stop >/dev/null; exit $rc'
    )
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(
            ["/bin/sh", "-c", script],
            cwd=ROOT,
            env=faked_env(instant, slot),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    summary = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if " passed" in line or " failed" in line or " error" in line
    ]
    return proc.returncode, time.monotonic() - started, summary[-1] if summary else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="make test-dates", description=__doc__)
    parser.add_argument("--only", nargs="*", help="instant names to run (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="instants run side by side")
    args = parser.parse_args(argv[:cut])
    pytest_args = argv[cut + 1 :]
    if not LIBFAKETIME.exists() or shutil.which("faketime") is None:
        print("libfaketime is missing: `apt-get install faketime` (make test-dates does it)")
        return 2
    chosen = [i for i in INSTANTS if not args.only or i.name in args.only]
    jobs = max(1, args.jobs)
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(jobs):
        slots.put(slot)

    def run(inst: Instant) -> tuple[int, float, str]:
        slot = slots.get()  # one embedded server per slot, one instant at a time on it
        try:
            return run_instant(inst, slot, pytest_args)
        finally:
            slots.put(slot)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(run, chosen))
    print(f"{'instant':30} {'UTC':20} {'result':8} {'time':>6}  tests")
    failed = 0
    for inst, (code, took, last) in zip(chosen, results, strict=True):
        failed += code != 0
        verdict = "ok" if code == 0 else f"FAILED ({code})"
        print(f"{inst.name:30} {inst.utc:20} {verdict:8} {took:5.0f}s  {last}  [{inst.why}]")
    print(f"{len(chosen)} instant(s), {failed} failed, {time.monotonic() - started:.0f} s in all")
    print(f"logs: {ROOT / 'var' / 'dates'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
