"""Alerts: the outbox written with its causes, routing and messages, and stale feeds judged on
the market clock (delivery to real receivers: test_alert_delivery.py)."""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
import pytest

from config.market_calendar import xnys
from config.market_clock import MarketTime
from config.settings import get_settings
from db import alerts as db_alerts
from db.alert_channels import EVERY_CHANNEL, Rule
from db.alerts import Event, enqueue, enqueue_signals
from db.connections import connect
from db.reads import read_from_db
from db.writes import write_to_db
from tests.workers.alert_support import T0, Env, commit_signals, event_ids, signal_rows
from workers.alert_worker import AlertWorker
from workers.alerts import Channel, render, route, stale_prices, url_secrets, with_fields

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
