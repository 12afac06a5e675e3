"""Alerts end to end: the outbox written with its causes, the alert worker delivering to real
local receivers (a JSON webhook and an SMTP server on 127.0.0.1), once per event and channel
across restarts, retries, quiet hours, rate limits, and stale feeds judged on the market clock."""

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

from config.market_calendar import xnys
from config.market_clock import MarketTime
from config.settings import get_settings
from db import alerts as db_alerts
from db.alert_channels import EVERY_CHANNEL, Rule, add_channel, add_rule
from db.alerts import Event, enqueue, enqueue_signals
from db.connections import connect
from db.notify import SIGNALS, notify
from db.reads import read_from_db
from db.writes import write_to_db
from tests.workers.alert_receivers import SmtpReceiver, WebhookReceiver
from workers.alert_worker import AlertWorker
from workers.alerts import Channel, render, route, stale_prices, url_secrets, with_fields

ROOT = Path(__file__).resolve().parents[2]
Env = Callable[..., None]
T0 = pd.Timestamp("2026-12-08 15:00", tz="UTC")  # a Tuesday, 10:00 in New York


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


@pytest.fixture
def alert_env(clean_tables: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Settings for a test (`ALERT_*` given as keyword arguments): short retries and polls, a
    simulated market whose clock has not started (so no stale-feed check runs)."""

    def configure(**env: str) -> None:
        base = {
            "DATA_DIR": str(tmp_path),
            "MARKET_SOURCE": "simulated",
            "ALERT_RETRY_S": "0.05",
            "ALERT_POLL_S": "0.3",
        }
        for key, value in {**base, **env}.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    configure()
    return configure


def signal_rows(
    tickers: list[str], action: str = "BUY", bar: str = "2026-12-08 15:31"
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": tickers,
            "bar_ts": pd.Timestamp(bar, tz="UTC"),
            "model_version": "v1",
            "action": action,
            "confidence": 0.8,
            "close": 187.25,
            "reason": "both models say UP",
            "role": "champion",
            "provisional": False,
        }
    )


def commit_signals(rows: pd.DataFrame) -> None:
    """As the scorer commits them: the alerts in the signals' transaction, with its NOTIFY."""
    with connect() as conn:
        enqueue_signals(conn, rows)
        notify(conn, SIGNALS, rows["bar_ts"].max().isoformat())


def deliveries() -> pd.DataFrame:
    return read_from_db(
        "SELECT event_id, channel, status, attempts, waiting_reason, next_attempt_at, last_error "
        "FROM alert_deliveries ORDER BY event_id, channel"
    )


def event_ids() -> list[int]:
    return [int(i) for i in read_from_db("SELECT id FROM alert_events ORDER BY id")["id"]]


def settle(worker: AlertWorker) -> None:
    worker.run_pass()
    worker.idle()


# --------------------------------------------------------------------------- the outbox


def test_events_exist_only_with_their_cause_and_once_per_fingerprint(alert_env: Env) -> None:
    with pytest.raises(RuntimeError), connect() as conn:
        db_alerts.enqueue_event(conn, "job_failed", {"job": "x"}, "job_failed:1")
        raise RuntimeError("the cause is rolled back")
    assert event_ids() == []
    first = enqueue("job_failed", {"job": "x", "at": T0}, "job_failed:1")
    assert first is not None and enqueue("job_failed", {"job": "x"}, "job_failed:1") is None
    payload = read_from_db("SELECT payload FROM alert_events")["payload"].iloc[0]
    assert payload == {"job": "x", "at": "2026-12-08T15:00:00+00:00"}
    with pytest.raises(ValueError, match="unknown alert kind"):
        enqueue("nonsense", {}, "x")


def test_signals_alert_for_the_champions_newest_buy_or_sell_per_ticker(alert_env: Env) -> None:
    rows = pd.concat(
        [
            signal_rows(["AAPL", "KO"], bar="2026-12-08 15:30"),
            signal_rows(["AAPL"], "SELL", bar="2026-12-08 15:31"),  # AAPL's newest
            signal_rows(["MSFT"], "HOLD"),
            signal_rows(["XOM"]).assign(role="shadow"),
        ],
        ignore_index=True,
    )
    commit_signals(rows)
    commit_signals(rows)  # the same bars again: nothing new
    events = read_from_db("SELECT kind, fingerprint, payload FROM alert_events ORDER BY id")
    assert list(events["fingerprint"]) == [
        "signal:v1:KO:2026-12-08T15:30:00+00:00",
        "signal:v1:AAPL:2026-12-08T15:31:00+00:00",
    ]
    aapl = events["payload"].iloc[1]
    assert aapl["action"] == "SELL" and aapl["role"] == "champion" and aapl["price"] == 187.25


def test_only_a_change_of_signal_alerts_not_every_bar_of_a_run(alert_env: Env) -> None:
    def scored(action: str, minute: int) -> None:  # stored and enqueued as the scorer does
        rows = signal_rows(["AAPL"], action, bar=f"2026-12-08 15:{minute:02d}").assign(
            **{
                f"{m}_{c}": v
                for m in ("lstm", "transformer")
                for c, v in (("label", "UP"), ("p_down", 0.1), ("p_neutral", 0.2), ("p_up", 0.7))
            }
        )
        with connect() as conn:
            write_to_db(rows, table="signals", on_conflict="nothing", conn=conn)
            enqueue_signals(conn, rows)

    for minute, action in enumerate(["HOLD", "BUY", "BUY", "BUY", "HOLD", "BUY", "SELL"], 30):
        scored(action, minute)
    events = read_from_db("SELECT payload FROM alert_events ORDER BY id")["payload"]
    assert [(e["action"], e["bar_time"][11:16]) for e in events] == [
        ("BUY", "15:31"),  # the run of BUYs alerts once, when it begins
        ("BUY", "15:35"),  # after a HOLD: a new BUY
        ("SELL", "15:36"),
    ]


def test_promotions_rollbacks_drift_alarms_and_failed_jobs_enqueue_with_their_records(
    alert_env: Env,
) -> None:
    from db.models import record_model_event
    from ml.features.drift import AlarmState
    from ml.lifecycle.drift_monitor import DriftReport, _enqueue_alarms
    from workers.cron_job import guarded_run

    record_model_event("promoted", "v2", "v1", "analyst:ann", "beat the champion")
    record_model_event("pinned", "v3", "v2", "analyst:ann", "compare")  # no alert
    record_model_event("rolled_back", "v1", "v2", "drift_monitor", "severe drift")
    report = DriftReport("v2", figures={"drifted_share": 0.6})
    report.alarms = {n: AlarmState(3, n == "data") for n in ("data", "confidence", "accuracy")}
    thresholds = {"data": 0.3, "confidence": 0.15, "accuracy": 0.15}
    for previous in ({}, {"data": AlarmState(4, True)}):  # raised now, then already raised
        with connect() as conn:
            _enqueue_alarms(conn, report, previous, thresholds, T0)
    code = guarded_run(
        "nightly_training",
        [sys.executable, "-c", "print('out of memory'); raise SystemExit(3)"],
        session_day=False,
        today=T0.date(),
    )
    assert code == 3
    events = read_from_db("SELECT kind, payload FROM alert_events ORDER BY id")
    assert list(events["kind"]) == ["promotion", "rollback", "drift_alarm", "job_failed"]
    promotion, rollback, drift, job = events["payload"]
    assert promotion["model_version"] == "v2" and promotion["actor"] == "analyst:ann"
    assert rollback["previous_version"] == "v2" and rollback["reason"] == "severe drift"
    assert drift["alarm"] == "data" and drift["value"] == 0.6 and "rolled back" in drift["reason"]
    assert job["job"] == "nightly_training" and "exit code 3" in job["reason"]
    assert "out of memory" in job["reason"]


# --------------------------------------------------------------------------- delivery


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


# --------------------------------------------------------------------------- routing, messages


def _event(kind: str, **payload: Any) -> Event:
    return Event(1, kind, f"{kind}:1", payload, T0)


@pytest.mark.no_db
def test_routing_follows_the_watch_list_the_confidence_and_the_kinds() -> None:
    channels = {
        "settings-1": Channel("settings-1", "json://a", None, 20),
        "desk": Channel("desk", "json://b", None, 20),
        "off": Channel("off", "json://c", None, 20, enabled=False),
    }
    rules = [
        Rule("settings-1", frozenset({"signal", "promotion"}), frozenset({"AAPL"}), 0.7),
        Rule(EVERY_CHANNEL, frozenset({"stale_feed"})),
    ]
    assert route(_event("signal", ticker="AAPL", confidence=0.8), rules, channels) == ["settings-1"]
    assert route(_event("signal", ticker="AAPL", confidence=0.65), rules, channels) == []
    assert route(_event("signal", ticker="KO", confidence=0.9), rules, channels) == []
    assert route(_event("promotion", model_version="v2"), rules, channels) == ["settings-1"]
    assert route(_event("stale_feed", feed="prices"), rules, channels) == ["desk", "settings-1"]
    assert route(_event("job_failed", job="x"), rules, channels) == []


@pytest.mark.no_db
def test_messages_name_everything_and_json_webhooks_get_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALERT_APP_URL", "https://desk.example/")
    get_settings.cache_clear()
    event = _event(
        "signal",
        ticker="AAPL",
        action="BUY",
        confidence=0.71234,
        model_version="v9",
        role="champion",
        price=187.25,
        bar_time="2026-12-08T15:31:00+00:00",
        reason="both UP",
        type="not apprise's",
    )
    message = render(event, get_settings())
    assert message.title == "StockPulse · BUY AAPL at 187.25 (confidence 0.7123)"
    for line in ("event: signal", "ticker: AAPL", "model version: v9", "role: champion"):
        assert line in message.body
    assert "link: https://desk.example/stock_detail?ticker=AAPL" in message.body
    assert "type" not in message.fields  # apprise's own field is left alone
    url = with_fields("json://127.0.0.1:9/hook?method=POST", {"ticker": "AAPL", "reason": "a b&c"})
    assert url == "json://127.0.0.1:9/hook?method=POST&:ticker=AAPL&:reason=a%20b%26c"
    assert with_fields("tgram://token/chat", {"ticker": "AAPL"}) == "tgram://token/chat"
    secrets = url_secrets("slack://T1234ABCD/B5678EFGH/abcdefghijklmnop/#desk")
    assert {"T1234ABCD", "B5678EFGH", "abcdefghijklmnop"} <= set(secrets)
    assert "127.0.0.1" not in url_secrets("json://u:pw-123456@127.0.0.1:9/x")


# --------------------------------------------------------------------------- stale feeds


@pytest.mark.no_db
@pytest.mark.parametrize(
    ("now", "newest", "behind"),
    [
        ("2026-12-08 15:00", "2026-12-07 20:59", 30),  # Tuesday 10:00: nothing since the open
        ("2026-12-08 15:00", "2026-12-08 14:55", None),  # 4 minutes behind: not yet
        ("2026-12-08 15:01", "2026-12-08 14:55", 5),
        ("2026-12-08 14:33", None, None),  # 3 minutes after the open, no bar ever
        ("2026-07-03 15:00", "2026-07-02 19:59", None),  # Independence Day (observed)
        ("2026-12-12 15:00", "2026-12-11 20:59", None),  # a Saturday
        ("2026-11-27 19:30", "2026-11-27 17:30", None),  # after the 13:00 early close
        ("2026-12-08 21:30", "2026-12-08 20:00", None),  # after the close
        ("2026-12-08 13:00", "2026-12-07 20:59", None),  # before the open
    ],
)
def test_a_stale_feed_is_judged_on_the_market_clock(
    now: str, newest: str | None, behind: int | None
) -> None:
    market = MarketTime(pd.Timestamp(now, tz="UTC"), "wall")
    bar = None if newest is None else pd.Timestamp(newest, tz="UTC")
    stale = stale_prices(bar, market, after_min=5)
    assert (None if stale is None else stale.minutes_behind) == behind


@pytest.mark.dates
def test_the_stale_check_at_this_instant(alert_env: Env) -> None:
    """Run under libfaketime by `make test-dates`: with the last bar at the previous session's
    close, a stale-feed alert comes only while the market is open, 5 minutes after the open."""
    alert_env(MARKET_SOURCE="yfinance")
    cal = xnys()
    now = pd.Timestamp.now(tz="UTC")
    previous = cal.minute_to_past_session(now.floor("min"), 1)
    last = pd.Timestamp(cal.session_close(previous)) - pd.Timedelta(minutes=1)
    bar = {"ticker": "AAPL", "ts": last, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}
    write_to_db(pd.DataFrame([{**bar, "volume": 1.0, "source": "test"}]), table="bars_1m")
    worker = AlertWorker()
    first, again = worker.check_stale(), worker.check_stale()
    minute = now.floor("min")
    is_open = cal.is_trading_minute(minute)
    opened = pd.Timestamp(cal.session_open(cal.minute_to_session(minute))) if is_open else None
    expected = is_open and opened is not None and minute - opened >= pd.Timedelta(minutes=5)
    assert (first is not None) == expected, f"at {now} (open: {is_open})"
    assert again is None  # one alert per stale episode
