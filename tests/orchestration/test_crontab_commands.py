"""Every command the crontab names runs for real, through its guard, on a seeded database."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from db.connections import execute
from db.reads import read_from_db

ROOT = Path(__file__).resolve().parents[2]
TICKERS = "AAPL,MSFT,KO,JPM"
SESSION_DAY = "2026-11-24"  # a Tuesday session: --session-day jobs run
pytestmark = pytest.mark.slow


def _parse_crontab():
    spec = importlib.util.spec_from_file_location(
        "crontab_parser", Path(__file__).with_name("test_crontab.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.parse_crontab((ROOT / "crontab").read_text())[1]


@pytest.fixture(scope="module")
def job_env(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cron_jobs")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(tmp / "var"),
        "MODELS_DIR": str(tmp / "models"),
        "MODEL_CONFIG_PATH": str(tmp / "registry.json"),
        "UNIVERSE": TICKERS,
        "MARKET_SOURCE": "simulated",
        "NEWS_SOURCE": "simulated",
        "MACRO_SOURCE": "simulated",
        "SIM_PLANTED_SIGNAL": "1.0",
        "TRAIN_EPOCHS": "1",
        "TRAIN_MAX_WINDOWS": "3000",
        "BOOTSTRAP_SAMPLES": "100",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    execute(
        "TRUNCATE bars_1m, news_articles, macro_observations, corporate_actions, "
        "backfill_queue, signals, job_runs, model_events, model_evaluations, drift_metrics"
    )
    for module in ("workers.seed_history", "workers.seed_context"):
        subprocess.run(
            [sys.executable, "-m", module, "--days", "6"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return env


def test_every_crontab_command_runs(job_env):
    lines = _parse_crontab()
    seen = set()
    for line in lines:
        if line.job in seen:  # the drift check appears on three schedule lines
            continue
        seen.add(line.job)
        args = [
            sys.executable if a == "python" and i == 0 else a for i, a in enumerate(line.command)
        ]
        if "--session-day" in args:
            args.insert(args.index("--"), "--today")
            args.insert(args.index("--"), SESSION_DAY)
        proc = subprocess.run(
            args, env=job_env, cwd=ROOT, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"{line.job}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        runs = read_from_db(
            "SELECT status, message FROM job_runs WHERE job = :j ORDER BY id DESC LIMIT 1",
            {"j": line.job},
        )
        assert runs["status"].tolist() == ["ok"], (line.job, runs.to_dict("records"))
    assert seen == {
        "macro_fetch",
        "corporate_actions",
        "backfill",
        "daily_reconciliation",
        "nightly_training",
        "drift_check",
    }
    assert int(read_from_db("SELECT count(*) AS n FROM macro_observations")["n"][0]) > 0
    versions = [p for p in Path(job_env["MODELS_DIR"]).iterdir() if p.is_dir()]
    assert len(versions) == 1 and (versions[0] / "evaluation.json").exists()
