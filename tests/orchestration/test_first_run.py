"""A newcomer's first run: `make install` takes torch's CPU wheel where it can, and the demo's
set-up builds TimescaleDB when the machine can (`build_timescaledb.sh --if-possible`), else
says why and goes on with plain PostgreSQL. Stubs stand in for pip and pg_config; the real
build is `make timescaledb`, which CI runs."""

from __future__ import annotations

import importlib.util
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest
from rich.console import Console

pytestmark = pytest.mark.no_db

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build_timescaledb.sh"
TORCH_PIN = re.search(r"^torch==\S+$", (ROOT / "requirements.txt").read_text(), re.M)
VERSION = re.search(r'VERSION="\$\{TIMESCALEDB_VERSION:-([\d.]+)\}"', BUILD.read_text())


def run_install(
    tmp_path: Path, *, cpu_index_answers: bool
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`make install` into a venv whose python is a stub that records each pip call."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    fail_on_index = "" if cpu_index_answers else 'case "$*" in *--index-url*) exit 1;; esac\n'
    stub = venv / "bin" / "python"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n{fail_on_index}exit 0\n')
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "install", f"VENV={venv}"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return proc, calls.read_text().splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("cpu_index_answers", [False, True])
def test_install_takes_torch_from_the_cpu_index_first(tmp_path: Path, cpu_index_answers: bool):
    assert TORCH_PIN, "requirements.txt pins torch==x.y.z"
    proc, calls = run_install(tmp_path, cpu_index_answers=cpu_index_answers)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    torch = [i for i, c in enumerate(calls) if "--index-url" in c]
    reqs = [i for i, c in enumerate(calls) if "-r requirements-dev.txt" in c]
    assert len(torch) == 1 and len(reqs) == 1 and torch[0] < reqs[0], calls
    attempt = calls[torch[0]].split()
    # the pin is requirements.txt's, and an unreachable index fails fast
    assert attempt[-1] == TORCH_PIN.group(0)
    assert "https://download.pytorch.org/whl/cpu" in attempt
    assert "--retries" in attempt and attempt[attempt.index("--retries") + 1] == "0"
    assert float(attempt[attempt.index("--timeout") + 1]) <= 15
    fell_back = f"could not be used: {TORCH_PIN.group(0)} comes from the configured index"
    assert (fell_back in proc.stdout) is not cpu_index_answers
    assert list((tmp_path / "venv").glob(".installed-*")), "the STAMP is written"


def fake_pginstall(tmp_path: Path) -> dict[str, str]:
    """A server folder without TimescaleDB, a pg_config for it, and a python that names it."""
    pginstall = tmp_path / "pginstall"
    (pginstall / "bin").mkdir(parents=True)
    (pginstall / "lib").mkdir()
    pg_config = pginstall / "bin" / "pg_config"
    pg_config.write_text(
        f'#!/bin/sh\ncase "$1" in --pkglibdir) echo {pginstall}/lib;; '
        "--version) echo 'PostgreSQL 18.6';; esac\n"
    )
    py = tmp_path / "python"
    py.write_text(f"#!/bin/sh\necho {pginstall}\n")
    for f in (pg_config, py):
        f.chmod(0o755)
    return {**os.environ, "PY": str(py), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def build(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_if_possible_says_in_one_line_why_it_cannot_build(tmp_path: Path):
    env = {**fake_pginstall(tmp_path), "CC": "/nonexistent/cc"}
    proc = build(env, "--if-possible")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == (
        f"TimescaleDB {VERSION.group(1)} not built: no C compiler (/nonexistent/cc) on PATH; "
        "install one, then run make timescaledb"
    )


def test_make_timescaledb_still_fails_loudly(tmp_path: Path):
    env = {**fake_pginstall(tmp_path), "TIMESCALEDB_SRC": str(tmp_path / "missing.tar.gz")}
    proc = build(env)
    assert proc.returncode == 1
    assert "missing.tar.gz does not exist" in proc.stderr
    assert build(env, "--if-possible").returncode == 3


def test_a_cached_build_installs_without_a_compiler(tmp_path: Path):
    env = {**fake_pginstall(tmp_path), "CC": "/nonexistent/cc"}
    version = VERSION.group(1)
    cache = tmp_path / "cache" / "stockpulse"
    cache.mkdir(parents=True)
    so = tmp_path / f"timescaledb-{version}.so"
    so.write_bytes(b"")
    name = f"timescaledb-{version}-PostgreSQL18.6-{platform.machine()}-install.tar.gz"
    with tarfile.open(cache / name, "w:gz") as tar:
        tar.add(so, arcname=f"./lib/{so.name}")
    proc = build(env, "--if-possible")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "pginstall" / "lib" / so.name).exists()
    assert proc.stdout.strip().splitlines()[-1].startswith(f"TimescaleDB {version} installed")
    again = build(env, "--if-possible")  # idempotent
    assert (
        again.stdout.strip() == f"TimescaleDB {version} is installed in the embedded server "
        "(PostgreSQL 18.6)"
    )


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("built", [True, False])
def test_the_demo_builds_timescaledb_before_the_database_starts(monkeypatch, built: bool):
    from config.settings import get_settings

    demo = load_demo()
    out = io.StringIO()
    monkeypatch.setattr(demo, "console", Console(file=out, width=300))
    ran: list[tuple[str, ...]] = []
    said = "TimescaleDB 2.29.2 " + ("installed into" if built else "not built: no C compiler")

    def step(title, args, env, ok_codes=(0,), required=True, program=sys.executable):
        ran.append((program, *args))
        if args[-1] == "--if-possible":
            assert env["PY"] == sys.executable and not required
            code = 0 if built else demo.TIMESCALEDB_NOT_BUILT
            return subprocess.CompletedProcess(args, code, f"==> ...\n{said}\n", "")
        flavour = "PostgreSQL 18.6, " + ("TimescaleDB 2.29.2" if built else "no TimescaleDB")
        return subprocess.CompletedProcess(args, 0, f"database: {flavour}\n", "")

    monkeypatch.setattr(demo, "step", step)
    monkeypatch.setattr("workers.startup.has_champion", lambda env: True)
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("TIMESCALEDB", "auto")
    get_settings.cache_clear()
    demo.prepare({})
    assert ran[0] == demo.TIMESCALEDB_BUILD
    assert ran[1][-3:] == ("-m", "db.embedded", "start")
    shown = out.getvalue()
    assert said in shown
    assert ("PostgreSQL 18.6, TimescaleDB 2.29.2" in shown) is built
    assert ("once the reason above is fixed, `make timescaledb`" in shown) is not built


def test_the_demo_on_your_own_server_builds_nothing(monkeypatch):
    demo = load_demo()
    monkeypatch.setattr(demo, "console", Console(file=io.StringIO()))
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(
        demo,
        "step",
        lambda title, args, env, *a, **k: (
            ran.append(tuple(args))
            or subprocess.CompletedProcess(
                args, 0, "database: PostgreSQL 18.6, no TimescaleDB\n", ""
            )
        ),
    )
    monkeypatch.setattr("workers.startup.has_champion", lambda env: True)
    demo.prepare({"DATABASE_URL": "postgresql://u:p@db.example:5432/x"})
    assert "--if-possible" not in {a for args in ran for a in args}
    assert ("-m", "db.embedded", "start") not in ran
