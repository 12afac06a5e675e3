"""The crontab: its schedules in New York time, its commands, and the guard every line runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from croniter import croniter

from config.market_calendar import is_session_day
from core.locks import EXIT_BUSY
from db.reads import read_from_db

ROOT = Path(__file__).resolve().parents[2]
NY = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
GUARD = ["python", "-m", "workers.cron_job"]
# The scheduled modules and whether each is bound to exchange sessions.
SCHEDULED = {
    "workers.macro_ingestor": False,
    "workers.corporate_action_handler": True,
    "workers.backfill": True,
    "workers.reconcile": True,
    "ml.lifecycle.pipeline": True,
    "ml.lifecycle.drift_monitor": True,
}
ENV_LINE = re.compile(r"^([^\s=]+)\s*=\s*(.*)$")  # supercronic's rule for variable lines


@dataclass(frozen=True)
class CronLine:
    lineno: int
    schedule: str
    command: list[str]

    @property
    def guard_options(self) -> list[str]:
        return self.command[len(GUARD) : self.command.index("--")]

    @property
    def job(self) -> str:
        opts = self.guard_options
        return opts[opts.index("--name") + 1]

    @property
    def target(self) -> list[str]:
        return self.command[self.command.index("--") + 1 :]


def parse_crontab(text: str) -> tuple[dict[str, str], list[CronLine]]:
    env: dict[str, str] = {}
    lines: list[CronLine] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = ENV_LINE.match(line)
        if match:
            env[match.group(1)] = match.group(2)
            continue
        fields = line.split()
        assert len(fields) > 5, f"line {lineno}: no command: {raw!r}"
        lines.append(CronLine(lineno, " ".join(fields[:5]), shlex.split(" ".join(fields[5:]))))
    return env, lines


@pytest.fixture(scope="module")
def crontab() -> tuple[dict[str, str], list[CronLine]]:
    return parse_crontab((ROOT / "crontab").read_text())


def fire_times(schedule: str, start: datetime, end: datetime) -> list[datetime]:
    it = croniter(schedule, start - timedelta(seconds=1))
    out = []
    while (t := it.get_next(datetime)) < end:
        out.append(t.astimezone(NY))
    return out


def by_job(lines: list[CronLine]) -> dict[str, list[datetime]]:
    # Three weeks across the 2026-03-08 switch to daylight time.
    start = datetime(2026, 3, 2, tzinfo=NY)
    end = datetime(2026, 3, 23, tzinfo=NY)
    times: dict[str, list[datetime]] = defaultdict(list)
    for line in lines:
        times[line.job].extend(fire_times(line.schedule, start, end))
    return {job: sorted(ts) for job, ts in times.items()}


def hm(t: datetime) -> tuple[int, int]:
    return (t.hour, t.minute)


def test_the_crontab_runs_on_new_york_time(crontab):
    env, lines = crontab
    assert env == {"CRON_TZ": "America/New_York"}
    assert lines, "the crontab schedules nothing"
    for line in lines:
        fields = line.schedule.split()
        assert len(fields) == 5, f"line {line.lineno}: five schedule fields, got {fields}"
        assert croniter.is_valid(line.schedule), f"line {line.lineno}: {line.schedule!r}"


def test_every_line_is_the_guard_around_a_scheduled_module(crontab):
    _, lines = crontab
    seen = set()
    for line in lines:
        assert line.command[: len(GUARD)] == GUARD, f"line {line.lineno} bypasses the guard"
        assert "--" in line.command, f"line {line.lineno}: no -- before the command"
        target = line.target
        assert target[:2] == ["python", "-m"] and len(target) == 3, f"line {line.lineno}"
        module = target[2]
        assert module in SCHEDULED, f"line {line.lineno}: unexpected module {module}"
        assert ("--session-day" in line.guard_options) == SCHEDULED[module], module
        seen.add(module)
    assert seen == set(SCHEDULED)


def test_one_job_name_per_module(crontab):
    _, lines = crontab
    modules_of: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        modules_of[line.job].add(line.target[2])
    assert all(len(mods) == 1 for mods in modules_of.values()), modules_of
    assert len(modules_of) == len(SCHEDULED)


def test_macro_fetch_runs_once_every_day(crontab):
    times = by_job(crontab[1])["macro_fetch"]
    assert len(times) == 21
    assert len({t.date() for t in times}) == 21
    assert {hm(t) for t in times} == {(9, 5)}


def test_corporate_actions_run_before_the_open_on_weekdays(crontab):
    times = by_job(crontab[1])["corporate_actions"]
    assert len(times) == 15
    assert all(t.weekday() < 5 for t in times)
    assert all(hm(t) < (9, 30) for t in times)


def test_backfill_then_training_after_the_close(crontab):
    jobs = by_job(crontab[1])
    backfill, training = jobs["backfill"], jobs["nightly_training"]
    assert len(backfill) == len(training) == 15
    for b, t in zip(backfill, training, strict=True):
        assert b.weekday() < 5 and b.date() == t.date()
        assert (16, 0) < hm(b) < hm(t), "backfill after the close, training after the backfill"


def test_the_reconciliation_follows_the_backfill_on_weekdays(crontab):
    jobs = by_job(crontab[1])
    backfill, reconciliation = jobs["backfill"], jobs["daily_reconciliation"]
    assert len(reconciliation) == 15
    for b, r in zip(backfill, reconciliation, strict=True):
        assert r.weekday() < 5 and r.date() == b.date()
        assert hm(b) < hm(r) < (18, 0), "after the backfill drain, the same evening"


def test_drift_checks_every_quarter_hour_of_the_session(crontab):
    times = by_job(crontab[1])["drift_check"]
    per_day: dict[date, list[tuple[int, int]]] = defaultdict(list)
    for t in times:
        per_day[t.date()].append(hm(t))
    expected = [(9, 45)] + [(h, m) for h in range(10, 16) for m in (0, 15, 30, 45)] + [(16, 0)]
    assert len(per_day) == 15 and all(d.weekday() < 5 for d in per_day)
    assert all(sorted(day) == expected for day in per_day.values())


def test_schedules_follow_new_york_across_daylight_saving(crontab):
    first = {t.date(): t for t in reversed(by_job(crontab[1])["drift_check"])}
    # 09:45 in New York is 14:45 UTC in winter (EST) and 13:45 UTC after 2026-03-08 (EDT).
    assert hm(first[date(2026, 3, 6)].astimezone(UTC)) == (14, 45)
    assert hm(first[date(2026, 3, 9)].astimezone(UTC)) == (13, 45)


# --------------------------------------------------------------------------- the guard


@pytest.fixture
def guard_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "INFO",
    }


def guard(name: str, *options: str, command: list[str]) -> list[str]:
    return [sys.executable, "-m", "workers.cron_job", "--name", name, *options, "--", *command]


def run_guard(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def runs_of(job: str) -> list[tuple[str, str]]:
    df = read_from_db(
        "SELECT status, message FROM job_runs WHERE job = :job ORDER BY id", {"job": job}
    )
    return list(zip(df["status"], df["message"].fillna(""), strict=True))


def write_marker(name: str, text: str = "hello from the job") -> list[str]:
    code = f"from pathlib import Path; Path({name!r}).write_text('ran'); print({text!r})"
    return ["python", "-c", code]


@pytest.mark.parametrize("day", ["2026-12-25", "2026-12-26"])  # Christmas; a Saturday
def test_guard_skips_a_non_session_day(day, guard_env, tmp_path):
    assert not is_session_day(date.fromisoformat(day))
    job = f"t_holiday_{uuid.uuid4().hex[:8]}"
    args = guard(job, "--session-day", "--today", day, command=write_marker("ran.txt"))
    result = run_guard(args, guard_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "ran.txt").exists()
    [(status, message)] = runs_of(job)
    assert status == "skipped" and day in message


@pytest.mark.dates
def test_guard_judges_today_by_the_new_york_date(guard_env, tmp_path):
    """Without --today the guard judges the New York date of this instant (at 03:00 UTC on a
    Saturday it is still Friday in New York, a session day), as cron does at each instant."""
    import exchange_calendars as xcals

    ny_today = datetime.now(ZoneInfo("America/New_York")).date()
    session = xcals.get_calendar("XNYS").is_session(pd.Timestamp(ny_today))
    job = f"t_today_{uuid.uuid4().hex[:8]}"
    result = run_guard(
        guard(job, "--session-day", command=write_marker("ran.txt")), guard_env, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ran.txt").exists() == session
    [(status, message)] = runs_of(job)
    assert status == ("ok" if session else "skipped")
    if not session:
        assert str(ny_today) in message


def test_guard_runs_the_command_on_a_session_day(guard_env, tmp_path):
    job = f"t_session_{uuid.uuid4().hex[:8]}"
    args = guard(job, "--session-day", "--today", "2026-12-24", command=write_marker("ran.txt"))
    result = run_guard(args, guard_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ran.txt").read_text() == "ran"
    assert f"[{job}] hello from the job" in result.stderr
    assert runs_of(job) == [("ok", "exit code 0")]


def test_guard_records_a_failed_command(guard_env, tmp_path):
    job = f"t_fail_{uuid.uuid4().hex[:8]}"
    code = "import sys; print('about to fail'); sys.exit(3)"
    result = run_guard(guard(job, command=["python", "-c", code]), guard_env, tmp_path)
    assert result.returncode == 3
    [(status, message)] = runs_of(job)
    assert status == "failed"
    assert message.startswith("exit code 3") and "about to fail" in message


def test_guard_reports_a_missing_program(guard_env, tmp_path):
    job = f"t_missing_{uuid.uuid4().hex[:8]}"
    result = run_guard(guard(job, command=["no-such-program-xyz"]), guard_env, tmp_path)
    assert result.returncode == 127
    assert "cannot start 'no-such-program-xyz'" in result.stderr
    assert [status for status, _ in runs_of(job)] == ["failed"]


def wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"first run ended early: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the first run never started its command")
        time.sleep(0.1)


def test_guard_refuses_to_overlap_a_running_job(guard_env, tmp_path):
    job = f"t_overlap_{uuid.uuid4().hex[:8]}"
    started, release = tmp_path / "started", tmp_path / "release"
    code = (
        "import time; from pathlib import Path; Path('started').touch()\n"
        "while not Path('release').exists(): time.sleep(0.05)"
    )
    first = subprocess.Popen(
        guard(job, command=["python", "-c", code]),
        env=guard_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(started, first)
        second = run_guard(guard(job, command=write_marker("second.txt")), guard_env, tmp_path)
        assert second.returncode == EXIT_BUSY
        assert f"job '{job}' is already running (pid {first.pid}" in second.stderr
        assert not (tmp_path / "second.txt").exists()
    finally:
        release.touch()
        _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    statuses = runs_of(job)
    assert sorted(s for s, _ in statuses) == ["ok", "skipped"]
    assert any(s == "skipped" and m.startswith("overlap: ") for s, m in statuses)
    # The lock is released with the run: the next run goes ahead.
    third = run_guard(guard(job, command=write_marker("third.txt")), guard_env, tmp_path)
    assert third.returncode == 0 and (tmp_path / "third.txt").exists()
