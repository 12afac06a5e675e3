"""Alert delivery end to end: the alert worker delivering to real local receivers (a JSON
webhook and an SMTP server on 127.0.0.1), once per event and channel across restarts, retries,
quiet hours and rate limits."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from db.alert_channels import EVERY_CHANNEL, add_channel, add_rule
from db.alerts import enqueue
from db.reads import read_from_db
from tests.workers.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.workers.alert_support import T0, Env, commit_signals, event_ids, signal_rows
from workers.alert_worker import AlertWorker

ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()


def deliveries() -> pd.DataFrame:
    return read_from_db(
        "SELECT event_id, channel, status, attempts, waiting_reason, next_attempt_at, last_error "
        "FROM alert_deliveries ORDER BY event_id, channel"
    )


def settle(worker: AlertWorker) -> None:
    worker.run_pass()
    worker.idle()


def _worker_process(log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.alert_worker", "--poll-s", "0.3"],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_each_event_reaches_each_receiver_once_across_worker_restarts(
    alert_env: Env, webhook: WebhookReceiver, smtp: SmtpReceiver, tmp_path: Path
) -> None:
    """Killed (SIGKILL) while idle, stopped (SIGTERM) in the middle of a slow send, started
    again: the webhook and the SMTP server each get exactly one message per event."""
    alert_env(ALERT_URLS=f"{webhook.url()} {smtp.url()}")
    log = tmp_path / "alert_worker.log"

    def both(n: int) -> bool:
        return len(webhook.accepted_ids()) >= n and len(smtp.accepted_ids()) >= n

    worker = _worker_process(log)
    try:
        commit_signals(signal_rows(["AAPL", "KO", "MSFT"]))
        wait_for("3 signals at both receivers", lambda: both(3))
        wait_for("their deliveries recorded", lambda: (deliveries()["status"] == "sent").sum() == 6)
        worker.kill()  # idle: killed while sending, a delivery waits for its lease to lapse
        worker.wait(10)
        from db.models import record_model_event

        record_model_event("promoted", "v2", "v1", "analyst:ann", "beat the champion")
        enqueue("job_failed", {"job": "backfill", "reason": "exit code 1"}, "job_failed:7")
        worker = _worker_process(log)
        wait_for("5 events at both receivers", lambda: both(5))
        webhook.delay_s = 1.0
        commit_signals(signal_rows(["XOM"], "SELL"))
        wait_for("the slow send under way", lambda: len(webhook.posts) >= 6)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
        webhook.delay_s = 0.0
        worker = _worker_process(log)
        wait_for("all 12 deliveries sent", lambda: (deliveries()["status"] == "sent").sum() == 12)
        time.sleep(1.0)  # a few more passes: nothing is sent again
    finally:
        worker.terminate()
        worker.wait(20)
    ids = event_ids()
    assert len(ids) == 6
    assert webhook.accepted_ids() == dict.fromkeys(ids, 1), log.read_text()[-3000:]
    assert smtp.accepted_ids() == dict.fromkeys(ids, 1)
    post = next(p for p in webhook.accepted() if p.get("ticker") == "XOM")
    for field in ("event", "action", "confidence", "model_version", "role", "price", "bar_time"):
        assert post[field], field
    assert post["reason"] == "both models say UP" and post["role"] == "champion"
    assert post["link"] == "http://127.0.0.1:8501/stock_detail?ticker=XOM"
    assert post["title"].startswith("StockPulse · SELL XOM at 187.25")
    mail = next(m for m in smtp.messages if "promoted" in str(m["Subject"]))
    assert "model version: v2" in smtp.text(mail) and "link: http://127.0.0.1:8501/model_lab" in (
        smtp.text(mail)
    )


def test_a_failing_receiver_is_retried_then_failed_without_holding_up_the_others(
    alert_env: Env, webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    bad = WebhookReceiver()
    bad.status, bad.delay_s = 500, 0.2
    secret_url = bad.url(auth="stockpulse:hook-pass-0123456789")
    alert_env(ALERT_URLS=f"{secret_url} {webhook.url()}", ALERT_MAX_ATTEMPTS="3")
    worker = AlertWorker()
    try:
        with caplog.at_level(logging.INFO):
            commit_signals(signal_rows(["AAPL", "KO"]))
            worker.run_pass()
            wait_for("the good receiver", lambda: len(webhook.accepted_ids()) == 2, 1.5)
            assert bad.attempts().total() < 6  # the bad one is still at it
            worker.idle()

            def both_failed() -> bool:
                settle(worker)
                return bool((deliveries()["status"] == "failed").sum() == 2)

            wait_for("the bad channel's deliveries failed", both_failed, 15)
    finally:
        bad.close()
    ids = event_ids()
    state = deliveries()
    failed = state[state["status"] == "failed"]
    assert list(failed["channel"]) == ["settings-1", "settings-1"]
    assert list(failed["attempts"]) == [3, 3] and bad.attempts() == dict.fromkeys(ids, 3)
    assert webhook.accepted_ids() == dict.fromkeys(ids, 1)
    assert all("500" in e or "Internal Server Error" in e for e in failed["last_error"])
    everything = caplog.text + " ".join(state["last_error"].dropna())
    assert "hook-pass-0123456789" not in everything


def test_quiet_hours_hold_deliveries_until_they_end_on_the_wall_clock(
    alert_env: Env, webhook: WebhookReceiver
) -> None:
    """22:00-07:00 in New York, the night clocks go forward: held until 07:00 EDT (11:00 UTC)."""
    alert_env(ALERT_URLS=webhook.url(), ALERT_QUIET_HOURS="22:00-07:00")
    now = [pd.Timestamp("2026-03-08 04:30", tz="UTC")]  # Saturday 23:30 EST
    worker = AlertWorker(clock=lambda: now[0])
    enqueue("job_failed", {"job": "macro_fetch"}, "job_failed:1")
    settle(worker)
    held = deliveries().iloc[0]
    assert held["status"] == "pending" and held["waiting_reason"] == "quiet hours"
    assert held["attempts"] == 0 and webhook.posts == []
    assert held["next_attempt_at"] == pd.Timestamp("2026-03-08 11:00", tz="UTC")
    now[0] = pd.Timestamp("2026-03-08 10:59", tz="UTC")
    settle(worker)
    assert webhook.posts == []
    now[0] = pd.Timestamp("2026-03-08 11:00", tz="UTC")
    settle(worker)
    assert webhook.accepted_ids() == {event_ids()[0]: 1}


def test_rate_limits_hold_per_channel(alert_env: Env, webhook: WebhookReceiver) -> None:
    """ALERT_URLS' channel at 3 a minute; a channel added in the app at its own 10."""
    alert_env(ALERT_URLS=webhook.url("settings"), ALERT_RATE_PER_MIN="3")
    add_channel(name="desk", url=webhook.url("desk"), actor="analyst:ann", max_per_minute=10)
    add_rule(channel=EVERY_CHANNEL, kinds=["job_failed"], actor="analyst:ann")
    now = [T0]
    worker = AlertWorker(clock=lambda: now[0])
    for i in range(5):
        enqueue("job_failed", {"job": f"job{i}"}, f"job_failed:{i}")
    settle(worker)

    sent = deliveries()
    by_channel = sent.groupby("channel")["status"].apply(lambda s: (s == "sent").sum())
    assert by_channel.to_dict() == {"desk": 5, "settings-1": 3}
    waiting = sent[sent["status"] == "pending"]
    assert set(waiting["waiting_reason"]) == {"rate limit"} and len(waiting) == 2
    assert (waiting["next_attempt_at"] == T0 + pd.Timedelta(minutes=1)).all()
    assert webhook.accepted_ids().total() == 8  # one receiver behind both channels
    now[0] = T0 + pd.Timedelta(seconds=30)
    settle(worker)
    assert (deliveries()["status"] == "sent").sum() == 8
    now[0] = T0 + pd.Timedelta(minutes=1)
    settle(worker)
    assert (deliveries()["status"] == "sent").sum() == 10
    assert webhook.accepted_ids() == dict.fromkeys(event_ids(), 2)
