"""The start of a deployment, in order: `python -m workers.startup [-- COMMAND...]`.

The container's entry point runs it before supervisord (`-- supervisord -c ...`), `make demo`
runs the same steps, and it runs as well on any machine:

1. the embedded PostgreSQL, when DATABASE_URL is unset (outside Docker);
2. the schema (`python -m db.migrate up`);
3. the 1-minute history of the configured market source (`python -m workers.seed_history`):
   idempotent and resumable, so the first start fills the history, a restart after a long
   outage fills what was missed, and any other restart asks the source once and writes nothing;
4. context: the simulated demo's scored news and macro history (`workers.seed_context`), or
   the configured macro source's series (`workers.macro_ingestor`; news from live feeds starts
   with the news worker);
5. a first model when none serves (`python -m ml.lifecycle.pipeline --quick`): trained and put
   through the gate right away instead of at the nightly run; without an edge over the baselines it
   serves as provisional and every page says so;

then it replaces itself with COMMAND (supervisord in the container). A failed step 1-3 stops
the start (exit 1); a failed step 4 or 5 is logged and the start goes on, since the workers and
the nightly schedule retry them.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from config.cli import setup_logging
from config.settings import Settings, get_settings
from db.registry_store import RegistryError, champion_version

log = logging.getLogger("workers.startup")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Step:
    title: str
    args: tuple[str, ...]  # python -m ...
    required: bool = True  # a failure stops the start
    ok_codes: tuple[int, ...] = (0,)


def steps(settings: Settings, *, database_url_set: bool) -> list[Step]:
    """What a start runs for `settings` (in order)."""
    plan = []
    if not database_url_set:
        plan.append(Step("embedded PostgreSQL", ("-m", "db.embedded", "start")))
    plan.append(Step("database schema", ("-m", "db.migrate", "up")))
    plan.append(
        Step(
            f"{settings.market_source} price history ({settings.sim_history_days} sessions, "
            f"{len(settings.universe)} stocks)",
            ("-m", "workers.seed_history", "--days", str(settings.sim_history_days)),
        )
    )
    if settings.market_source == "simulated" and settings.news_source == "simulated":
        plan.append(
            Step("simulated news (scored) and macro history", ("-m", "workers.seed_context"))
        )
    else:
        plan.append(
            Step(
                f"macro series ({settings.macro_source})",
                ("-m", "workers.macro_ingestor"),
                required=False,
            )
        )
    return plan


FIRST_MODEL = Step(
    "training and validating a first pair of models (quick setting)",
    ("-m", "ml.lifecycle.pipeline", "--quick"),
    required=False,
    ok_codes=(0, 4),  # 4: trained, but the held-out window is too short to judge yet
)


def has_champion(settings: Settings) -> bool:
    """Whether the registry names a champion. A registry that cannot be read counts as one: a
    person has to look at it, and no first training overwrites it."""
    try:
        return champion_version(settings.model_config_path) is not None
    except RegistryError as exc:
        log.warning("the model registry cannot be read: %s", exc)
        return True


def run_step(step: Step, env: dict[str, str]) -> bool:
    """Run one step, its output passed through; False if it failed."""
    started = time.monotonic()
    log.info("%s ...", step.title)
    proc = subprocess.run([sys.executable, *step.args], cwd=ROOT, env=env, check=False)  # noqa: S603
    took = time.monotonic() - started
    if proc.returncode in step.ok_codes:
        log.info("%s: done in %.0f s", step.title, took)
        return True
    log.error("%s: failed (exit code %d) after %.0f s", step.title, proc.returncode, took)
    return False


def start(settings: Settings, env: dict[str, str]) -> int:
    """Run the start's steps; 0 when the deployment can run."""
    for step in steps(settings, database_url_set=bool(env.get("DATABASE_URL"))):
        if not run_step(step, env) and step.required:
            return 1
    if has_champion(settings):
        log.info("a champion is serving: no first training")
    elif not run_step(FIRST_MODEL, env):
        log.warning(
            "no first model yet: the nightly schedule or the model lab's Retrain trains one"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m workers.startup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [-- COMMAND...]",
    )
    parser.parse_args(options)
    setup_logging("workers.startup")
    settings = get_settings()
    code = start(settings, dict(os.environ))
    if code != 0 or not command:
        return code
    log.info("starting %s", " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(command[0], command)  # noqa: S606
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
