"""The crontab on the market clock (workers.scheduler): which lines are due when, the guard told
the market's date, and a run across a simulated session boundary through the real guard."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from config.settings import get_settings
from workers.scheduler import CrontabError, Scheduler, due, parse_crontab, with_market_date

ROOT = Path(__file__).resolve().parents[2]
NY = "America/New_York"


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=NY).tz_convert("UTC")


@pytest.fixture(scope="module")
def crontab():
    return parse_crontab((ROOT / "crontab").read_text())


@pytest.mark.no_db
def test_crossing_a_night_runs_the_after_close_and_before_open_jobs_in_crontab_order(crontab):
    tz, entries = crontab
    assert str(tz) == NY
    fired = due(entries, tz, ny("2026-11-20 15:55"), ny("2026-11-23 09:30"))  # Fri -> Mon
    got = [(at.tz_convert(NY).strftime("%a %H:%M"), e.name) for at, e in fired]
    assert got == [
        ("Fri 16:00", "drift_check"),
        ("Fri 16:30", "backfill"),
        ("Fri 16:45", "daily_reconciliation"),
        ("Fri 19:00", "nightly_training"),
        ("Mon 08:00", "corporate_actions"),
        ("Mon 09:05", "macro_fetch"),  # the weekend's daily runs collapse into the latest
    ]
    at, entry = fired[3]
    cmd = with_market_date(entry.command, at.tz_convert(NY).date())
    cut = cmd.index("--")
    assert cmd[cut - 2 : cut] == ["--today", "2026-11-20"] and "--session-day" in cmd[:cut]
    assert cmd[cut + 1 :] == ["python", "-m", "ml.lifecycle.pipeline"]


@pytest.mark.no_db
def test_in_the_session_drift_checks_come_every_fifteen_market_minutes(crontab):
    tz, entries = crontab
    start = ny("2026-11-23 09:31")
    times, last = [], start
    for step in range(1, 6 * 60 + 30):  # tick every market minute through the session
        now = start + pd.Timedelta(minutes=step)
        times += [at.tz_convert(NY).strftime("%H:%M") for at, _ in due(entries, tz, last, now)]
        last = now
    assert times[:3] == ["09:45", "10:00", "10:15"] and times[-1] == "16:00"
    assert len(times) == 1 + 6 * 4 + 1  # 09:45, every quarter hour 10:00-15:45, 16:00


@pytest.mark.no_db
def test_bad_crontab_lines_are_refused_with_the_line_number(tmp_path):
    with pytest.raises(CrontabError, match="line 2"):
        parse_crontab("# ok\n61 * * * * python -m x\n")
    with pytest.raises(CrontabError, match="line 1: expected five"):
        parse_crontab("* * * python\n")


def test_a_simulated_session_boundary_runs_the_guarded_jobs_with_the_market_date(
    clean_tables, tmp_path, monkeypatch
):
    from config.market_clock import anchored_clock
    from db.reads import read_from_db

    monkeypatch.setenv("MARKET_SOURCE", "simulated")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    guard = "python -m workers.cron_job --name {name} --session-day -- python -c pass"
    (tmp_path / "crontab").write_text(
        "CRON_TZ=America/New_York\n"
        f"0 16 * * 1-5 {guard.format(name='at_close')}\n"
        f"0 19 * * 1-5 {guard.format(name='evening')}\n"
        f"0 8 * * 1-5 {guard.format(name='morning')}\n"
        f"0 12 * * 1-5 {guard.format(name='noon')}\n"
    )
    scheduler = Scheduler(tmp_path / "crontab", get_settings(), tick_s=0.5)
    # Friday 15:57 New York at 120x: the close comes after a second and a half, then Monday
    anchored_clock(tmp_path / "var", "simulated", 120.0, start=ny("2026-11-20 15:57"))
    scheduler.run(max_ticks=12)
    get_settings.cache_clear()
    assert [name for _, name, _ in scheduler.runs] == ["at_close", "evening", "morning"]
    assert all(code == 0 for _, _, code in scheduler.runs)
    runs = read_from_db("SELECT job, status, started_at FROM job_runs ORDER BY started_at")
    assert runs["job"].tolist() == ["at_close", "evening", "morning"]
    assert set(runs["status"]) == {"ok"}  # Friday and Monday are sessions: none skipped
