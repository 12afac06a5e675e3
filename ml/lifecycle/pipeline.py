"""Nightly training followed by validation, under one lock: `python -m ml.lifecycle.pipeline
[--quick]`.

This is what cron and the app's retrain button run. The newest `HOLDOUT_SESSIONS` sessions are
kept out of training so the champion/challenger gate has a held-out window; the lock shared
with the app (db.ops.training_lock) is held across both steps, so runs never overlap.
"""

from __future__ import annotations

import logging
import os
import sys

import pandas as pd

from config.cli import job_parser, run_job
from config.market_calendar import sessions_between
from config.settings import Settings, get_settings
from core.timeutil import NEW_YORK
from db.bars import newest_bar_ts
from db.ops import job_run, training_lock
from ml.lifecycle.report import ValidationReport

log = logging.getLogger(__name__)


def training_cutoff(settings: Settings) -> pd.Timestamp:
    """The open of the first hold-out session: training uses bars before it."""
    latest = newest_bar_ts()
    if latest is None:
        raise RuntimeError("no bars in the database: run the price worker or seed history first")
    day = latest.tz_convert(NEW_YORK).normalize().tz_localize(None)
    days = sessions_between(day - pd.Timedelta(days=10 + 2 * settings.holdout_sessions), day)
    first = days[-settings.holdout_sessions]
    from config.market_calendar import xnys

    return pd.Timestamp(xnys().session_open(first))


def run_pipeline(
    *, quick: bool = False, epochs: int | None = None, settings: Settings | None = None
) -> ValidationReport:
    """Train a challenger and put it through the gate; returns the gate report."""
    from ml.lifecycle.validate_model import validate
    from ml.training.train_model import train

    settings = settings or get_settings()
    with training_lock(settings.lock_path), job_run("pipeline") as run:
        cutoff = training_cutoff(settings)
        log.info(
            "training on bars before %s (the last %d sessions are held out)",
            cutoff,
            settings.holdout_sessions,
        )
        folder = train(settings, end=cutoff, quick=quick, epochs=epochs, take_lock=False)
        report = validate(folder.name, settings=settings)
        run.note(f"{folder.name}: {report.gate.decision} ({report.gate.reason})")
        return report


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("ml.lifecycle.pipeline", __doc__)
    parser.add_argument("--quick", action="store_true", help="short training run (demo)")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs per model")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ml.lifecycle.evaluation import ValidationRefused
    from ml.lifecycle.validate_model import summary

    try:
        return run_job(
            "ml.lifecycle.pipeline",
            lambda: summary(run_pipeline(quick=args.quick, epochs=args.epochs)),
        )
    except ValidationRefused as exc:
        print(f"trained, but validation refused: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
