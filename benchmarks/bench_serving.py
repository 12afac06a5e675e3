"""From a stored bar to its stored signals, through the scoring worker: `bar_to_signal_20` and
`bar_to_signal_500`.

The scoring worker runs as supervisord runs it (`python -m ml.serving.scoring_worker`, its own
process) against a bench database with a trained champion and a trained challenger. For each of >=
30 minutes, a bar of every ticker is stored through the product's write path
(`workers.bar_store.write_bars`, whose transaction sends `db.notify.BARS`); the worker scores
it for both versions and commits the champion's signals and the challenger's shadow rows in one
transaction that sends `db.notify.SIGNALS`. The benchmark listens on both channels on one
connection: a bar's latency is the arrival of its SIGNALS notification minus the arrival of its
BARS notification (both at their commits, on one clock). Reported: p50 (the figure) and p95.

Baseline, in the same run: the same worker without LISTEN/NOTIFY, finding new bars by polling
every `APP_REFRESH_S` (5 s), which is how the app's scorer thread found them before serving
became a worker (its poll period was the page refresh period); its bars are written at a random
phase of the poll, as real bars arrive.

    .venv/bin/python -m benchmarks.run serving
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_features import TICKERS, WIDE, serving_environment, simulated_inputs
from benchmarks.common import result
from core.timeutil import utc

BARS = 30  # minutes measured per run
POLL_S = 5.0  # the baseline's poll: the app's default refresh period
ROOT = Path(__file__).resolve().parent.parent


def _worker(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ml.serving.scoring_worker", *args],
            cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait_first_pass(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 300) -> None:
    from db.reads import read_from_db

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        beat = read_from_db("SELECT details FROM worker_heartbeats WHERE worker = 'scoring_worker'")
        if not beat.empty and int(beat.iloc[0]["details"]["passes"]) >= 1:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the scoring worker made no pass: {log.read_text()[-3000:]}")


def _measure(bars: pd.DataFrame, minutes: list[pd.Timestamp], jitter_s: float = 0.0) -> list[float]:
    """Latency of each minute (seconds), bars' commit to signals' commit. `jitter_s`: wait a
    random 0..jitter_s before each bar, so bars land at any phase of a polling worker's cycle
    (as real bars do), not right after its pass."""
    rng = np.random.default_rng(5)
    from db.notify import BARS as BARS_CHANNEL
    from db.notify import SIGNALS, listen
    from workers.bar_store import write_bars

    out = []
    with listen([BARS_CHANNEL, SIGNALS]) as listener:
        for ts in minutes:
            time.sleep(float(rng.uniform(0.0, jitter_s)))
            listener.drain()
            write_bars(bars[bars["ts"] == ts], source="simulated")
            key, stored, scored = ts.isoformat(), None, None
            deadline = time.monotonic() + 120
            while scored is None:
                assert time.monotonic() < deadline, f"bar {ts} was not scored in 120 s"
                for notice in listener.wait(1.0):
                    now = time.perf_counter()
                    if notice.payload == key and notice.channel == BARS_CHANNEL:
                        stored = now
                    elif notice.payload == key and notice.channel == SIGNALS:
                        scored = now
            assert stored is not None
            out.append(scored - stored)
    return out


def _rows_per_bar(minutes: list[pd.Timestamp]) -> dict[str, int]:
    from db.reads import read_from_db

    frame = read_from_db(
        "SELECT role, count(*) AS n FROM signals WHERE bar_ts = ANY(:t) GROUP BY role",
        {"t": [m.to_pydatetime() for m in minutes]},
    )
    return {str(r): int(n) // len(minutes) for r, n in zip(frame["role"], frame["n"], strict=True)}


def _run(name: str, universe: list[str], sessions: int) -> dict[str, Any]:
    from ml.training.train_model import train

    bars, _ = simulated_inputs(universe, sessions)
    stamps = [utc(t) for t in np.sort(bars["ts"].unique())]
    held = stamps[-2 * BARS :]
    listened, polled = held[:BARS], held[BARS:]
    with (
        serving_environment(universe, bars[bars["ts"] < held[0]]) as manager,
        tempfile.TemporaryDirectory() as tmp,
    ):
        train(end=held[0], quick=True, epochs=1)  # the challenger, scoring in shadow
        serving = manager.serving()
        assert serving.champion is not None and len(serving.challengers) == 1
        fast_log, slow_log = Path(tmp) / "listen.log", Path(tmp) / "poll.log"
        proc = _worker(fast_log)
        try:
            _wait_first_pass(proc, fast_log)
            fast = _measure(bars, listened)
        finally:
            _stop(proc)
        proc = _worker(slow_log, "--no-listen", "--poll-s", str(POLL_S))
        try:
            _wait_first_pass(proc, slow_log)
            slow = _measure(bars, polled, jitter_s=POLL_S)
        finally:
            _stop(proc)
        rows = _rows_per_bar(listened)
    assert rows == {"champion": len(universe), "shadow": len(universe)}, rows
    p50, p95 = statistics.median(fast), float(np.percentile(fast, 95))
    b50, b95 = statistics.median(slow), float(np.percentile(slow, 95))
    print(
        f"{name}: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (woken by NOTIFY) vs "
        f"p50 {b50 * 1000:.0f} ms, p95 {b95 * 1000:.0f} ms (polling every {POLL_S:g} s)"
    )
    cond = (
        f"{len(universe)} tickers, champion + challenger (trained LSTM + Transformer each); "
        f"the scoring worker in its own process; {BARS} minutes, a bar of every ticker each, "
        "stored through workers.bar_store.write_bars; from the BARS notification of the bars' "
        "commit to the SIGNALS notification of the commit of all champion + shadow rows "
        f"({rows['champion']} + {rows['shadow']} per minute); p95 {p95 * 1000:.1f} ms; "
        f"baseline: the same worker polling every {POLL_S:g} s without LISTEN (the app "
        f"scorer thread's way), p50 {b50 * 1000:.0f} ms, p95 {b95 * 1000:.0f} ms"
    )
    return result(name, p50 * 1000, "ms", b50 * 1000, cond, higher_is_better=False)


def run() -> list[dict[str, Any]]:
    from config.settings import DEFAULT_UNIVERSE

    narrow = list(DEFAULT_UNIVERSE)[:TICKERS]
    wide = narrow + [f"S{i:03d}" for i in range(WIDE - len(narrow))]
    return [_run("bar_to_signal_20", narrow, 8), _run("bar_to_signal_500", wide, 3)]
