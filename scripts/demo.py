"""`make demo`: the whole workbench on one machine, no Docker, accounts or internet.

The deployment's start-up steps (`workers.startup`, each skipped when already done): the
embedded PostgreSQL (unless DATABASE_URL is set), the schema, a few weeks of simulated bars,
news and macro for the universe, a first pair of models if none is serving; then the project's
supervisord.conf (price and news workers on the accelerated simulated market, the crontab's jobs
on that market's clock, the Streamlit app) and the URL. Ctrl-C stops everything cleanly.
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

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
URL = "http://127.0.0.1:8501"
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
) -> subprocess.CompletedProcess[str]:
    """Run one setup step as `python -m ...`, with a spinner; stop the demo if a required one
    fails."""
    started = time.monotonic()
    with console.status(f"[bold]{title}[/bold] ..."):
        proc = subprocess.run([PY, *args], cwd=ROOT, env=env, capture_output=True, text=True)
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


def prepare(env: dict[str, str]) -> None:
    """The deployment's start-up steps (`workers.startup`), each with a spinner."""
    from config.settings import get_settings
    from workers.startup import FIRST_MODEL, has_champion, steps

    settings = get_settings()
    for s in steps(settings, database_url_set=bool(env.get("DATABASE_URL"))):
        proc = step(s.title, list(s.args), env, s.ok_codes, s.required)
        if s.args[:2] == ("-m", "db.migrate") and proc.returncode == 0:
            flavour = proc.stdout.strip().splitlines()[-1].removeprefix("database: ")
            console.print(f"  {flavour}")
            if "no TimescaleDB" in flavour and not env.get("DATABASE_URL"):
                console.print(
                    "  plain PostgreSQL tables serve; `make timescaledb` builds TimescaleDB into "
                    "the embedded server (about 2 minutes) and the next `make demo` uses it"
                )
    if has_champion(env):
        console.print("[green]v[/green] models: a champion is serving")
        return
    # The gate decides: a pair that beats the baselines is promoted; without an edge it still
    # serves, marked provisional, and every page says so (see `ml.validate_model`).
    proc = step(FIRST_MODEL.title, list(FIRST_MODEL.args), env, FIRST_MODEL.ok_codes, False)
    console.print("  " + "\n  ".join((proc.stdout + proc.stderr).strip().splitlines()[-6:]))
    if not has_champion(env):
        console.print("  [yellow]no model serves yet: the live page shows prices without signals")


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
