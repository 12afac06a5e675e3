"""From a committed signal to the webhook receiving its alert: `alert_latency`.

The alert worker runs as supervisord runs it (`python -m workers.alert_worker`, its own process)
against a bench database, with one channel: a JSON webhook on 127.0.0.1 (apprise's `json://`).
For each of `SIGNALS` signals, a champion BUY or SELL row (alternating: each a change of signal,
so each alerts) is committed as the scoring worker commits
it: the `signals` row, its alert in the outbox (`db.alerts.enqueue_signals`) and the
`db.notify.SIGNALS` notification in one transaction. A signal's latency is the webhook's receipt
of its post minus the end of that commit, both on this process's clock. Reported: p50 (the
figure) and p95; target <= 1 s.

Baseline, in the same run: the same worker without LISTEN/NOTIFY, polling the outbox every
`ALERT_POLL_S` (5 s), with the signals committed at a random phase of its poll.

    .venv/bin/python -m benchmarks.run alerts
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

from benchmarks.common import bench_database, patched_env, result

SIGNALS = 30
POLL_S = 5.0  # the baseline's poll: the worker's default ALERT_POLL_S
ROOT = Path(__file__).resolve().parent.parent
ROW = {
    "ticker": "AAPL",
    "model_version": "bench",
    "action": "BUY",
    "confidence": 0.8,
    "lstm_label": "UP",
    "lstm_p_down": 0.1,
    "lstm_p_neutral": 0.1,
    "lstm_p_up": 0.8,
    "transformer_label": "UP",
    "transformer_p_down": 0.1,
    "transformer_p_neutral": 0.1,
    "transformer_p_up": 0.8,
    "close": 187.25,
    "reason": "both models say UP",
    "role": "champion",
    "provisional": False,
}


def _worker(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.alert_worker", *args],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_first_pass(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    from db.reads import read_from_db

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        beat = read_from_db("SELECT details FROM worker_heartbeats WHERE worker = 'alert_worker'")
        if not beat.empty and int(beat.iloc[0]["details"]["passes"]) >= 1:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the alert worker made no pass: {log.read_text()[-3000:]}")


def _measure(receiver: Any, first_bar: pd.Timestamp, jitter_s: float) -> list[float]:
    """Latency of each signal (seconds): its commit to the webhook's receipt of its alert."""
    from core.timeutil import iso
    from db.alerts import enqueue_signals
    from db.connections import connect
    from db.notify import SIGNALS as SIGNALS_CHANNEL
    from db.notify import notify
    from db.writes import write_to_db

    rng = np.random.default_rng(7)
    out = []
    for i in range(SIGNALS):
        time.sleep(float(rng.uniform(0.0, jitter_s)))
        bar = first_bar + pd.Timedelta(minutes=i)
        action = "BUY" if i % 2 == 0 else "SELL"  # each one a change of signal: a new alert
        rows = pd.DataFrame([{**ROW, "bar_ts": bar, "action": action}])
        seen = len(receiver.posts)
        with connect() as conn:  # as `ml.serving.live_scoring.Scorer.score` commits a pass
            write_to_db(rows, table="signals", on_conflict="nothing", conn=conn)
            enqueue_signals(conn, rows)
            notify(conn, SIGNALS_CHANNEL, iso(bar))
        committed = time.perf_counter()
        deadline = time.monotonic() + 60
        while True:
            arrivals = [t for t, body, _ in receiver.posts[seen:] if body["bar_time"] == iso(bar)]
            if arrivals:
                out.append(arrivals[0] - committed)
                break
            assert time.monotonic() < deadline, f"the alert of {bar} did not arrive in 60 s"
            time.sleep(0.001)
    return out


def _run(receiver: Any, log: Path, first_bar: pd.Timestamp, *args: str) -> list[float]:
    proc = _worker(log, *args)
    try:
        _wait_first_pass(proc, log)
        return _measure(receiver, first_bar, jitter_s=POLL_S if "--no-listen" in args else 0.3)
    finally:
        proc.terminate()
        proc.wait(30)


def run() -> list[dict[str, Any]]:
    from tests.workers.alert_receivers import WebhookReceiver

    receiver = WebhookReceiver()
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            patched_env(
                {
                    "DATA_DIR": tmp,
                    "MARKET_SOURCE": "simulated",  # its clock not started: no stale check
                    "ALERT_URLS": receiver.url(),
                    "ALERT_MIN_CONFIDENCE": "0.5",
                    "ALERT_RATE_PER_MIN": "600",  # the rate limit is not what is measured
                }
            ),
            bench_database("stockpulse_bench_alerts"),
        ):
            start = pd.Timestamp("2026-12-08 14:30", tz="UTC")
            fast = _run(receiver, Path(tmp) / "listen.log", start)
            slow = _run(
                receiver,
                Path(tmp) / "poll.log",
                start + pd.Timedelta(hours=1),
                "--no-listen",
                "--poll-s",
                str(POLL_S),
            )
    finally:
        receiver.close()
    p50, p95 = statistics.median(fast), float(np.percentile(fast, 95))
    b50, b95 = statistics.median(slow), float(np.percentile(slow, 95))
    print(
        f"alert_latency: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (woken by NOTIFY) vs "
        f"p50 {b50 * 1000:.0f} ms, p95 {b95 * 1000:.0f} ms (polling every {POLL_S:g} s)"
    )
    cond = (
        f"{SIGNALS} champion BUY/SELL signals (alternating), each committed with its outbox "
        "event and NOTIFY as the scoring worker commits them; the alert worker in its own "
        "process, one JSON webhook channel on 127.0.0.1 through apprise; from the end of the "
        "commit to the webhook's "
        f"receipt; p95 {p95 * 1000:.1f} ms; baseline: the same worker polling the outbox every "
        f"{POLL_S:g} s without LISTEN, signals at a random phase of its poll, p50 "
        f"{b50 * 1000:.0f} ms, p95 {b95 * 1000:.0f} ms; target <= 1000 ms"
    )
    return [result("alert_latency", p50 * 1000, "ms", b50 * 1000, cond, higher_is_better=False)]
