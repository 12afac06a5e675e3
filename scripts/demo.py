"""`make demo`: the whole workbench on one machine, no Docker, accounts or internet.

TimescaleDB built into the embedded PostgreSQL when this machine can build it (the cached build
of `make timescaledb`: 2-3 minutes the first time; otherwise plain PostgreSQL serves and the
set-up says why). Then the deployment's start-up steps (`workers.startup`, each skipped when
already done): the embedded PostgreSQL (unless DATABASE_URL is set), the schema, a few weeks of
simulated bars, news and macro for the universe, a first pair of models if none is serving; then
the project's supervisord.conf (price and news workers on the accelerated simulated market, the
crontab's jobs on that market's clock, the Streamlit app) and the URL. Ctrl-C stops everything
cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.markup import escape

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
URL = "http://127.0.0.1:8501"
# `make timescaledb` in the mode that never stops the demo: exit code 3 and the reason on the
# last line of its output when this machine cannot build it
TIMESCALEDB_BUILD = ("bash", str(ROOT / "scripts" / "build_timescaledb.sh"), "--if-possible")
TIMESCALEDB_NOT_BUILT = 3
DEMO_ENV = {  # the demo's defaults; anything already in the environment or .env wins
    "MARKET_SOURCE": "simulated",
    "NEWS_SOURCE": "simulated",
    "MACRO_SOURCE": "simulated",
    "SIM_SPEED": "30",
    "SIM_PLANTED_SIGNAL": "1.0",
    "POLL_INTERVAL_S": "2",
    "NEWS_POLL_INTERVAL_S": "20",
    # the nightly run of the demo's schedule at the size of `--quick`, so at a fast SIM_SPEED
    # the second version arrives within minutes of the close (set them to train full size)
    "TRAIN_EPOCHS": "3",
    "TRAIN_MAX_WINDOWS": "15000",
}
console = Console()


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    for key, value in DEMO_ENV.items():
        env.setdefault(key, value)
    log_dir = ROOT / "var" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        STOCKPULSE_HOME=str(ROOT),
        STOCKPULSE_PYTHON=PY,
        STOCKPULSE_LOG_DIR=str(log_dir),
        STOCKPULSE_APP_ADDRESS="127.0.0.1",
        STOCKPULSE_CRON="market",  # the crontab on the simulated market's clock
    )
    return env


def step(
    title: str,
    args: list[str],
    env: dict[str, str],
    ok_codes: tuple[int, ...] = (0,),
    required: bool = True,
    program: str = PY,
) -> subprocess.CompletedProcess[str]:
    """Run one setup step (`python -m ...` unless another program is named), with a spinner;
    stop the demo if a required one fails."""
    started = time.monotonic()
    with console.status(f"[bold]{title}[/bold] ..."):
        proc = subprocess.run([program, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    if proc.returncode not in ok_codes:
        mark = "[red]x[/red]" if required else "[yellow]![/yellow]"
        console.print(f"{mark} {title} failed ({took:.0f} s):")
        console.print((proc.stdout + proc.stderr)[-3000:])
        if required:
            raise SystemExit(1)
        return proc
    console.print(f"[green]v[/green] {title} ({took:.0f} s)")
    return proc


def build_timescaledb(env: dict[str, str]) -> str | None:
    """TimescaleDB into the embedded server, if this machine can build it; None, or why not."""
    program, *args = TIMESCALEDB_BUILD
    proc = step(
        "TimescaleDB for the embedded PostgreSQL (first build: 2-3 minutes)",
        args,
        {**env, "PY": PY},
        (0, TIMESCALEDB_NOT_BUILT),
        required=False,
        program=program,
    )
    said = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode == 0:
        console.print(f"  {escape(said)}")
        return None
    if proc.returncode == TIMESCALEDB_NOT_BUILT:
        console.print(f"  [yellow]{escape(said)}")
        return said
    return "its build script failed (output above)"


def prepare(env: dict[str, str]) -> None:
    """TimescaleDB if it can be built, then the deployment's start-up steps (`workers.startup`),
    each with a spinner."""
    from config.settings import get_settings
    from workers.startup import FIRST_MODEL, has_champion, steps

    settings = get_settings()
    embedded = not env.get("DATABASE_URL")
    why_not = None
    if embedded and settings.timescaledb != "off":
        why_not = build_timescaledb(env)
    for s in steps(settings, database_url_set=not embedded):
        proc = step(s.title, list(s.args), env, s.ok_codes, s.required)
        if s.args[:2] == ("-m", "db.migrate") and proc.returncode == 0:
            flavour = proc.stdout.strip().splitlines()[-1].removeprefix("database: ")
            console.print(f"  {flavour}")
            if "no TimescaleDB" in flavour and embedded:
                console.print(plain_postgres_notice(settings.timescaledb, why_not))
    if has_champion(settings):
        console.print("[green]v[/green] models: a champion is serving")
        return
    # The gate decides: a pair that beats the baselines is promoted; without an edge it still
    # serves, marked provisional, and every page says so (see `ml.lifecycle.validate_model`).
    proc = step(FIRST_MODEL.title, list(FIRST_MODEL.args), env, FIRST_MODEL.ok_codes, False)
    console.print("  " + "\n  ".join((proc.stdout + proc.stderr).strip().splitlines()[-6:]))
    if not has_champion(settings):
        console.print("  [yellow]no model serves yet: the live page shows prices without signals")


def plain_postgres_notice(timescaledb: str, why_not: str | None) -> str:
    """The one line saying plain PostgreSQL serves the demo, and how TimescaleDB would."""
    if timescaledb == "off":
        return "  plain PostgreSQL tables serve (TIMESCALEDB=off)"
    fix = "once the reason above is fixed, " if why_not else ""
    return (
        f"  plain PostgreSQL tables serve; {fix}`make timescaledb` builds TimescaleDB into the "
        "embedded server (2-3 minutes) and the next `make demo` uses it"
    )


def wait_for_app(proc: subprocess.Popen[bytes], timeout_s: float = 90) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{URL}/_stcore/health", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def run_supervisord(env: dict[str, str], started: float) -> int:
    conf = str(ROOT / "supervisord.conf")
    sup = subprocess.Popen(
        [str(Path(PY).parent / "supervisord"), "-s", "-c", conf], cwd=ROOT, env=env
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with console.status("[bold]starting the workers and the app[/bold] ..."):
        up = wait_for_app(sup)
    if not up:
        console.print(f"[red]the app did not come up; see {env['STOCKPULSE_LOG_DIR']}/app.log")
        sup.terminate()
        return 1
    console.print(
        f"\n[bold green]StockPulse is running: {URL}[/bold green]  "
        f"(up {time.monotonic() - started:.0f} s after `make demo`)"
    )
    console.print(
        f"logs: {env['STOCKPULSE_LOG_DIR']}   stop: Ctrl-C\n"
        "Not financial advice: signals are statistical model output for research."
    )
    while not stopping and sup.poll() is None:
        time.sleep(0.5)
    console.print("stopping the workers and the app ...")
    if sup.poll() is None:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sup.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--setup-only", action="store_true", help="prepare database, data and models, then exit"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    env = demo_env()
    os.environ.update(env)  # the settings of the steps below are the demo's
    prepare(env)
    if args.setup_only:
        return 0
    code = run_supervisord(env, started)
    if not env.get("DATABASE_URL"):
        step("stopping the embedded PostgreSQL", ["-m", "db.embedded", "stop"], env)
    return code


if __name__ == "__main__":
    sys.exit(main())
