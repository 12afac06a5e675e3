"""The alerts page: the delivery log, channels and rules behind the analyst password, and
channel URLs never shown."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from config.settings import get_settings
from db.alerts import enqueue
from db.reads import read_from_db
from tests.app.support import APP_DIR, alerts, table_with, texts
from workers.alert_worker import AlertWorker

PASSWORD = "stockpulse-demo"  # the local profile's default analyst password
SECRET_URL = "json://desk:hook-pass-0123456789@127.0.0.1:9/alerts"
SETTINGS_URL = "json://ops:settings-pass-0123456789@127.0.0.1:9/ops"


def open_alerts() -> AppTest:
    at = AppTest.from_file(str(APP_DIR / "main.py"), default_timeout=90)
    at.switch_page("views/alerts.py")
    return at.run()


def submit(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click()
    return at.run()


def shown(at: AppTest) -> str:
    """Everything the page shows: texts and the cells of every table."""
    cells = [frame.to_csv() for frame in (d.value for d in at.dataframe)]
    return "\n".join(texts(at) + cells)


def test_channels_and_rules_are_added_by_a_signed_in_analyst_and_urls_stay_secret(
    app_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_URLS", SETTINGS_URL)
    get_settings.cache_clear()
    at = open_alerts()
    assert not at.exception
    assert any("No alert event yet" in i for i in alerts(at, "info"))
    assert list(table_with(at, "name", "scheme")["name"]) == ["settings-1"]
    at.text_input(key="channel_name").input("desk")
    at.text_input(key="channel_url").input(SECRET_URL)
    at.text_input(key="add_channel_name").input("ann")
    at.text_input(key="add_channel_password").input("wrong")
    at = submit(at, "Add channel")
    assert any("Wrong analyst password" in e for e in alerts(at, "error"))
    assert read_from_db("SELECT count(*) AS n FROM alert_channels")["n"].iloc[0] == 0
    at.text_input(key="channel_name").input("desk")
    at.text_input(key="channel_url").input(SECRET_URL)
    at.text_input(key="channel_quiet").input("22:00-07:00")
    at.text_input(key="add_channel_name").input("ann")
    at.text_input(key="add_channel_password").input(PASSWORD)
    at = submit(at, "Add channel")
    assert not at.exception and not alerts(at, "error")
    assert any("desk added by analyst:ann" in s.replace("\\", "") for s in alerts(at, "success"))
    channels = table_with(at, "name", "scheme", "created_by")
    assert channels.iloc[0][["name", "scheme", "created_by", "quiet_hours"]].tolist() == [
        "desk",
        "json",
        "analyst:ann",
        "22:00-07:00",
    ]
    at.multiselect(key="rule_kinds").set_value(["signal", "stale_feed"])
    at.multiselect(key="rule_tickers").set_value(["AAPL"])
    at.selectbox(key="rule_channel").set_value("desk")
    at.text_input(key="add_rule_name").input("bob")
    at.text_input(key="add_rule_password").input(PASSWORD)
    at = submit(at, "Add rule")
    assert not alerts(at, "error")
    rule = read_from_db("SELECT channel, kinds, tickers, created_by FROM alert_rules").iloc[0]
    assert (rule["channel"], list(rule["kinds"]), list(rule["tickers"])) == (
        "desk",
        ["signal", "stale_feed"],
        ["AAPL"],
    )
    assert rule["created_by"] == "analyst:bob"
    at.selectbox(key="enable_channel_choice").set_value("desk")
    at.text_input(key="enable_channel_name").input("carol")
    at.text_input(key="enable_channel_password").input(PASSWORD)
    at = submit(at, "Apply")
    state = read_from_db("SELECT enabled, updated_by FROM alert_channels").iloc[0]
    assert (bool(state["enabled"]), state["updated_by"]) == (False, "analyst:carol")
    page = shown(at)
    for secret in ("hook-pass-0123456789", "settings-pass-0123456789", "127.0.0.1:9"):
        assert secret not in page


def test_the_delivery_log_shows_each_delivery_and_its_error(
    app_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_URLS", "json://127.0.0.1:1/refused")  # nothing listens there
    monkeypatch.setenv("ALERT_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    enqueue("job_failed", {"job": "backfill", "reason": "exit code 1"}, "job_failed:1")
    worker = AlertWorker()
    worker.run_pass()
    worker.idle()
    at = open_alerts()
    assert not at.exception
    log = table_with(at, "kind", "channel", "status", "last_error")
    row = log.iloc[0]
    assert (row["kind"], row["channel"], row["status"], row["attempts"]) == (
        "job_failed",
        "settings-1",
        "failed",
        1,
    )
    assert isinstance(row["last_error"], str) and row["last_error"]
    assert {m.label: m.value for m in at.metric}["Deliveries failed (newest 200)"] == "1"
    assert not pd.isna(log.iloc[0]["created_at"])
