"""The scoring worker (`python -m ml.serving.scoring_worker`): every stored bar scored for the
champion and the challenger with no page open, woken by NOTIFY (or its poll when a notification is
lost), following promotions without a restart, and through a SIGKILL mid-pass under the project's
supervisord.conf leaving no bar scored twice and none missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.settings import get_settings
from core.timeutil import utc
from db.notify import SIGNALS, listen
from db.reads import read_from_db
from db.writes import write_to_db
from ml.models.registry import promote
from tests.workers.test_supervisord import program_only_config, wait_for
from workers.bar_store import write_bars
from workers.sources.simulated import SimulatedMarket

from ..conftest import build_feature_version

TICKERS = ["AAPL", "MSFT", "KO"]
ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
V1, V2 = "20261104T000000Z", "20261105T000000Z"
pytestmark = pytest.mark.xdist_group("scoring_worker")


def sim_bars() -> pd.DataFrame:
    market = SimulatedMarket(seed=4, missing_rate=0.0)
    return market.history(
        TICKERS, pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-05", tz="UTC")
    )


@pytest.fixture
def scoring_env(model_env, clean_tables, monkeypatch) -> Iterator[dict[str, Any]]:
    """Three tickers, two real versions (V1 champion, V2 the challenger), history seeded up to
    60 minutes before the end of the simulated data."""
    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    bars = sim_bars()
    minutes = np.sort(bars["ts"].unique())
    cut = minutes[-60]
    write_to_db(bars[bars["ts"] < cut].assign(source="test"), table="bars_1m")
    models_dir = get_settings().models_dir
    build_feature_version(models_dir / V1, bars, seed=1)
    build_feature_version(models_dir / V2, bars, seed=2)
    promote(V1, by="cli", reason="test")
    yield {"bars": bars, "new": [utc(m) for m in minutes[-60:]]}
    get_settings.cache_clear()


def signals() -> pd.DataFrame:
    frame = read_from_db("SELECT ticker, bar_ts, model_version, role FROM signals")
    frame["bar_ts"] = pd.to_datetime(frame["bar_ts"], utc=True)
    return frame


def worker_process(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ml.serving.scoring_worker"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def scored(ts: pd.Timestamp, version: str, role: str) -> bool:
    rows = read_from_db(
        "SELECT count(*) AS n FROM signals WHERE bar_ts = :t AND model_version = :v AND role = :r",
        {"t": ts, "v": version, "r": role},
    )
    return int(rows["n"].iloc[0]) == len(TICKERS)


def stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.stdout is not None
    return proc.stdout.read().decode(errors="replace")


@pytest.mark.slow
def test_with_no_page_open_each_stored_bar_is_scored_by_champion_and_challenger(scoring_env):
    """Woken by the bars' NOTIFY: the poll is set to 10 minutes, so only the notification can
    make it score; each bar is answered by a SIGNALS notification once its rows are committed.
    A promotion is followed on the next bar, without a restart."""
    bars, new = scoring_env["bars"], scoring_env["new"]
    proc = worker_process({"SCORING_POLL_S": "600"})
    try:
        wait_for("the worker's first pass", lambda: scored(new[0] - pd.Timedelta(minutes=1), V1,
                                                           "champion"))  # fmt: skip
        with listen([SIGNALS]) as listener:
            for ts in new[:10]:
                write_bars(bars[bars["ts"] == ts], source="test")
                deadline = time.monotonic() + 60
                heard: list[str] = []
                while ts.isoformat() not in heard:
                    assert time.monotonic() < deadline, f"bar {ts} was not scored"
                    heard += [n.payload for n in listener.wait(1.0)]
                assert scored(ts, V1, "champion") and scored(ts, V2, "shadow")
            promote(V2, by="cli", reason="test: follow the promotion")
            ts = new[10]
            write_bars(bars[bars["ts"] == ts], source="test")
            wait_for("the promoted version's first signals", lambda: scored(ts, V2, "champion"))
            assert scored(ts, V1, "shadow")  # the old champion is the challenger now
        assert proc.poll() is None
    finally:
        log = stop(proc)
    assert proc.returncode == 0, log
    stored = signals()
    assert not stored.duplicated(["ticker", "bar_ts", "model_version"]).any()
    after = stored[stored["bar_ts"] >= new[0]]
    assert len(after) == 2 * len(TICKERS) * 11  # each new bar once per version, nothing else
    beat = read_from_db("SELECT status, details FROM worker_heartbeats WHERE worker = :w",
                        {"w": "scoring_worker"}).iloc[0]  # fmt: skip
    assert beat["status"] == "stopped"  # SIGTERM: the pass finished, then a last heartbeat
    assert beat["details"]["champion"] == V2 and beat["details"]["lag_s"] == 0.0
    assert pd.Timestamp(beat["details"]["newest_scored"]) == new[10]


def test_a_lost_notification_is_covered_by_the_poll(scoring_env):
    """Bars written without a notification (as if it was lost) are scored by the next poll."""
    from core.loops import Shutdown
    from ml.serving.scoring_worker import ScoringWorker

    bars, new = scoring_env["bars"], scoring_env["new"]
    shutdown = Shutdown()
    worker = ScoringWorker(poll_s=0.2, shutdown=shutdown)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        for ts in new[:3]:
            write_to_db(bars[bars["ts"] == ts].assign(source="test"), table="bars_1m")  # no NOTIFY
            wait_for(f"bar {ts} scored by the poll", lambda ts=ts: scored(ts, V1, "champion"))
    finally:
        shutdown.request()
        thread.join(30)
    assert not thread.is_alive()
    assert worker.stats.notifications == 0  # nothing was notified: the poll found them


def test_a_challenger_with_undecodable_metadata_leaves_the_champion_scoring(scoring_env):
    """A \\xff byte in the challenger's metadata.json: the worker skips the challenger with
    the reason (logged and in its heartbeat) and scores every new bar with the champion."""
    from ml.serving.scoring_worker import ScoringWorker

    bars, new = scoring_env["bars"], scoring_env["new"]
    path = get_settings().models_dir / V2 / "metadata.json"
    path.write_bytes(b"\xff" + path.read_bytes())
    worker = ScoringWorker(use_notifications=False)
    for ts in new[:2]:
        write_bars(bars[bars["ts"] == ts], source="test")
        worker.run_pass()
        assert scored(ts, V1, "champion")
    stored = signals()
    assert set(stored["model_version"]) == {V1}  # the challenger scored nothing
    reason = worker.manager.serving().skipped[V2]
    assert f"{V2}/metadata.json is not UTF-8 text" in reason
    beat = read_from_db("SELECT status, details FROM worker_heartbeats WHERE worker = :w",
                        {"w": "scoring_worker"}).iloc[0]  # fmt: skip
    assert beat["status"] == "ok" and beat["details"]["champion"] == V1
    assert beat["details"]["challengers"] == [] and beat["details"]["skipped"] == {V2: reason}


def _scoring_lock_held() -> bool:
    """A scorer of this database holds the scorers' advisory lock (a pass is writing)."""
    from db.connections import ADVISORY_LOCKS

    rows = read_from_db(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = :k "
        "AND granted AND database = (SELECT oid FROM pg_database WHERE datname = "
        "current_database())",
        {"k": ADVISORY_LOCKS["scoring"]},
    )
    return int(rows["n"].iloc[0]) > 0


def _kill_while_locked(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not _scoring_lock_held():
        assert time.monotonic() < deadline, "no pass took the scorers' lock"
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def supervised_scorer(scoring_env) -> Iterator[dict[str, Any]]:
    run_dir = Path(tempfile.mkdtemp(prefix="sp-", dir="/tmp"))  # short: it holds a socket
    env = {
        **os.environ,
        "STOCKPULSE_HOME": str(ROOT),
        "STOCKPULSE_PYTHON": sys.executable,
        "STOCKPULSE_LOG_DIR": str(run_dir),
        "SCORING_POLL_S": "0.5",
    }
    conf = str(program_only_config(run_dir / "supervisord.conf", "scoring_worker"))
    sup = subprocess.Popen([str(BIN / "supervisord"), "-c", conf], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip

    def ctl(*args: str) -> str:
        out = subprocess.run([str(BIN / "supervisorctl"), "-c", conf, *args], env=env,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        return out.stdout.strip()

    try:
        yield {"ctl": ctl, "dir": run_dir, **scoring_env}
    finally:
        if sup.poll() is None:
            ctl("shutdown")
            try:
                sup.wait(timeout=40)
            except subprocess.TimeoutExpired:
                sup.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


def _pid(ctl: Callable[..., str]) -> int | None:
    if "RUNNING" not in ctl("status", "scoring_worker"):
        return None
    out = ctl("pid", "scoring_worker")
    return int(out) if out.isdigit() and int(out) > 0 else None


@pytest.mark.slow
def test_sigkill_mid_pass_leaves_no_bar_scored_twice_and_none_missing(supervised_scorer):
    """supervisord runs the worker from the project's supervisord.conf; it is killed with SIGKILL
    while it holds the scorers' lock (a pass in flight, its rows not committed); supervisord
    restarts it and the restarted worker scores every bar exactly once per version."""
    ctl, bars, new = supervised_scorer["ctl"], supervised_scorer["bars"], supervised_scorer["new"]
    first = wait_for("the scoring worker to run", lambda: _pid(ctl))
    wait_for("the first pass", lambda: scored(new[0] - pd.Timedelta(minutes=1), V1, "champion"))
    # a backlog of 50 minutes arrives at once: the pass scoring it takes a while
    write_to_db(bars[bars["ts"].isin(new[:50])].assign(source="test"), table="bars_1m")
    _kill_while_locked(first)
    time.sleep(0.5)  # the server ends the killed session and rolls its transaction back
    stored_rows = signals()
    backlog = stored_rows[stored_rows["bar_ts"] >= new[0]]
    assert backlog.empty, "the pass had committed before the kill: not mid-pass"
    second = wait_for("supervisord to restart it", lambda: (p := _pid(ctl)) != first and p)
    assert second != first
    for ts in new[50:55]:
        write_bars(bars[bars["ts"] == ts], source="test")
    wait_for("every bar scored after the restart",
             lambda: scored(new[54], V1, "champion") and scored(new[54], V2, "shadow"))  # fmt: skip
    log = (supervised_scorer["dir"] / "supervisord.log").read_text()
    assert "terminated by SIGKILL" in log and log.count("spawned: 'scoring_worker'") >= 2
    stored = signals()
    assert not stored.duplicated(["ticker", "bar_ts", "model_version"]).any()
    for version in (V1, V2):
        got = stored[(stored["model_version"] == version) & (stored["bar_ts"] >= new[0])]
        assert len(got) == len(TICKERS) * 55, version  # none missing
        want = {(t, ts) for t in TICKERS for ts in new[:55]}
        assert set(zip(got["ticker"], got["bar_ts"], strict=True)) == want
