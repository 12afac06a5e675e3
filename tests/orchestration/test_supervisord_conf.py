"""supervisord.conf, read by supervisor's own parser; the app and cron wrappers run for real."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from supervisor.datatypes import RestartUnconditionally, RestartWhenExitUnexpected
from supervisor.options import ServerOptions

pytestmark = pytest.mark.no_db

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "supervisord.conf"
PROGRAMS = {
    "price_ingestor": ["-m", "workers.price_ingestor"],
    "news_ingestor": ["-m", "workers.news_ingestor"],
    "scoring_worker": ["-m", "ml.serving.scoring_worker"],
    "alert_worker": ["-m", "workers.alert_worker"],
    "app": None,  # a /bin/sh wrapper, run below
    "cron": None,
}


def load(monkeypatch: pytest.MonkeyPatch, log_dir: Path, **extra: str) -> dict[str, Any]:
    """Parse the file as supervisord would with the given environment; programs by name."""
    env = {
        "STOCKPULSE_HOME": str(ROOT),
        "STOCKPULSE_PYTHON": sys.executable,
        "STOCKPULSE_LOG_DIR": str(log_dir),
        **extra,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    options = ServerOptions()
    options.realize(args=["-c", str(CONF)])
    return {
        proc.name: proc for group in options.process_group_configs for proc in group.process_configs
    }


@pytest.fixture
def programs(monkeypatch, tmp_path) -> dict[str, Any]:
    return load(monkeypatch, tmp_path)


def test_the_six_programs_are_defined(programs):
    assert set(programs) == set(PROGRAMS)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_each_program_restarts_logs_and_runs_in_the_project(programs, name, tmp_path):
    proc = programs[name]
    assert proc.autostart is True
    expected = RestartWhenExitUnexpected if name == "cron" else RestartUnconditionally
    assert proc.autorestart is expected
    assert proc.redirect_stderr is True
    assert proc.stdout_logfile == str(tmp_path / f"{name}.log")
    assert proc.stdout_logfile_maxbytes > 0 and proc.stdout_logfile_backups > 0
    assert proc.directory == str(ROOT)
    assert "PYTHONPATH" not in proc.environment  # the project is installed (pip install -e .)
    assert proc.environment["PYTHONUNBUFFERED"] == "1"
    assert proc.stopasgroup and proc.killasgroup
    assert proc.startretries >= 3


@pytest.mark.parametrize(
    "name", ["price_ingestor", "news_ingestor", "scoring_worker", "alert_worker"]
)
def test_workers_are_python_modules_of_the_project(programs, name):
    argv = shlex.split(programs[name].command)
    assert argv == [sys.executable, *PROGRAMS[name]]
    module = argv[-1].replace(".", "/") + ".py"
    assert (ROOT / module).exists(), module


def run_wrapper(command: str, env: dict[str, str], stand_in: str) -> subprocess.CompletedProcess:
    """Run a program's /bin/sh wrapper with `stand_in` in place of the Python executable."""
    argv = shlex.split(command)
    assert argv[:2] == ["/bin/sh", "-c"] and argv[3] == sys.executable
    return subprocess.run(
        [*argv[:3], stand_in],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("address", "expected"), [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_app_runs_streamlit_on_the_configured_address(programs, address, expected):
    env = {k: v for k, v in os.environ.items() if k != "STOCKPULSE_APP_ADDRESS"}
    if address:
        env["STOCKPULSE_APP_ADDRESS"] = address
    result = run_wrapper(programs["app"].command, env, "/bin/echo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "-m",
        "app.launch",  # writes the sign-in secrets, then becomes `streamlit run app/main.py`
        "--server.address",
        expected,
        "--server.port",
        "8501",
        "--server.headless",
        "true",
    ]
    assert programs["app"].stopsignal.name == "SIGTERM"


def test_cron_is_off_outside_the_container(programs):
    proc = programs["cron"]
    env = {k: v for k, v in os.environ.items() if k != "STOCKPULSE_CRON"}
    result = run_wrapper(proc.command, env, sys.executable)
    assert result.returncode == 0 and "cron is off" in result.stdout
    # Exit 0 is expected and outlasts startsecs: EXITED, not FATAL, and not restarted.
    assert proc.exitcodes == [0] and proc.startsecs == 1


def test_cron_on_the_market_clock_runs_the_scheduler_with_the_project_python(programs, tmp_path):
    """`make demo` sets STOCKPULSE_CRON=market: the crontab on the simulated market's clock."""
    proc = programs["cron"]
    stand_in = tmp_path / "python"
    stand_in.write_text('#!/bin/sh\necho "argv: $*"\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "STOCKPULSE_CRON": "market"}
    result = run_wrapper(proc.command, env, str(stand_in))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["argv: -m workers.scheduler"]


def test_cron_runs_supercronic_on_the_crontab_with_the_project_python(programs, tmp_path):
    proc = programs["cron"]
    assert proc.environment["TZ"] == "America/New_York"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    stub = fake_bin / "supercronic"
    stub.write_text(
        '#!/bin/sh\necho "args: $*"\necho "python: $(command -v python)"\necho "tz: $TZ"\n'
    )
    stub.chmod(0o755)
    env = {
        **os.environ,
        "STOCKPULSE_CRON": "on",
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "TZ": proc.environment["TZ"],
    }
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    result = run_wrapper(proc.command, env, str(python))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "args: -passthrough-logs crontab"
    assert (ROOT / "crontab").is_file()
    assert lines[1] == f"python: {python}", "crontab's `python` is the project's Python"
    assert lines[2] == "tz: America/New_York"


def test_supervisord_needs_only_the_three_documented_variables(monkeypatch, tmp_path):
    for name in ("STOCKPULSE_APP_ADDRESS", "STOCKPULSE_CRON"):
        monkeypatch.delenv(name, raising=False)
    programs = load(monkeypatch, tmp_path)
    assert set(programs) == set(PROGRAMS)
    monkeypatch.delenv("STOCKPULSE_HOME")
    options = ServerOptions()
    options.stderr = io.StringIO()
    with pytest.raises(SystemExit):
        options.realize(args=["-c", str(CONF)])
    assert "'ENV_STOCKPULSE_HOME'" in options.stderr.getvalue()
