"""The drift & history page (fed by the real drift monitor) and the data-health page."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from config.settings import get_settings
from db.database_manager import dispose_engine, execute, write_to_db
from db.jobs import heartbeat, job_run
from tests.app.support import alerts, figures, open_page, table_with, texts


def test_drift_page_shows_history_drift_against_thresholds_and_live_confidence(
    app_env, monkeypatch: pytest.MonkeyPatch
):
    from ml.drift_monitor import check

    monkeypatch.setenv("DRIFT_WINDOW_BARS", "60")
    get_settings.cache_clear()
    app_env.feed().seed()
    app_env.promote()
    now = pd.Timestamp.now(tz="UTC").floor("min")
    for minutes_ago in (20, 10):
        check(checked_at=now - pd.Timedelta(minutes=minutes_ago))
    at = open_page("drift")
    assert not at.exception and not alerts(at, "error")
    history = table_with(at, "event", "reason")
    assert list(history["version"]) == [app_env.version]
    charts = figures(at)
    assert {"drift_psi", "drift_ks_pvalue", "drift_drifted_share", "confidence_chart"} <= set(
        charts
    )
    psi = charts["drift_psi"]
    assert len(psi["data"]) >= 1 and len(psi["data"][0]["x"]) == 2  # two checks
    assert psi["layout"]["shapes"][0]["y0"] == get_settings().drift_psi_threshold
    names = {t["name"] for t in charts["confidence_chart"]["data"]}
    assert {"lstm confidence", "transformer confidence", "confidence lstm"} <= names
    assert "raised" in table_with(at, "alarm", "raised").columns


def test_a_raised_drift_alarm_is_called_out(app_env):
    row = {
        "checked_at": pd.Timestamp.now(tz="UTC"),
        "model_version": "v1",
        "metric": "alarm_data",
        "feature": "",
        "value": 3.0,
        "threshold": 0.3,
        "alarm": True,
    }
    write_to_db(pd.DataFrame([row]), table="drift_metrics")
    at = open_page("drift")
    assert any("Drift alarm raised (data)" in e for e in alerts(at, "error"))


def test_drift_page_empty_states(app_env):
    at = open_page("drift")
    assert not at.exception
    infos = alerts(at, "info")
    assert any("No promotion or rollback yet" in i for i in infos)
    assert any("No drift checks in this period" in i for i in infos)
    assert any("No model is serving yet" in i for i in infos)


def test_data_health_shows_tickers_gaps_workers_and_jobs(app_env):
    app_env.feed().seed()
    gap = pd.Timestamp.now(tz="UTC").floor("min") - pd.Timedelta(hours=2)
    queue = pd.DataFrame(
        [
            {
                "ticker": "TSLA",
                "gap_start": gap,
                "gap_end": gap + pd.Timedelta(minutes=4),
                "status": "pending",
                "attempts": 0,
                "last_error": None,
            },
            {
                "ticker": "KO",
                "gap_start": gap,
                "gap_end": gap,
                "status": "failed",
                "attempts": 3,
                "last_error": "no data",
            },
        ]
    )
    write_to_db(queue, table="backfill_queue")
    heartbeat("price_ingestor", "ok", bars=20)
    execute(
        "INSERT INTO worker_heartbeats (worker, last_beat, pid, status, details) "
        "VALUES (:w, :t, 1, :s, CAST(:d AS jsonb))",
        {"w": "news_ingestor", "t": gap, "s": "ok", "d": json.dumps({"articles": 3})},
    )
    with job_run("macro_ingestor"):
        pass
    with pytest.raises(RuntimeError), job_run("corporate_action_handler"):
        raise RuntimeError("source unreachable")
    at = open_page("health")
    assert not at.exception
    assert all("corporate_action_handler" in e for e in alerts(at, "error"))
    tickers = table_with(at, "ticker", "latest_bar", "gaps_pending")
    assert list(tickers["ticker"]) == get_settings().universe
    assert tickers.set_index("ticker").loc["TSLA", "gaps_pending"] == 1
    assert tickers.set_index("ticker").loc["KO", "gaps_failed"] == 1
    assert tickers["latest_bar"].str.endswith("UTC").all()
    assert set(table_with(at, "gap_start", "status")["status"]) == {"pending", "failed"}
    workers = table_with(at, "worker", "state").set_index("worker")
    assert workers.loc["price_ingestor", "state"] == "alive"
    assert workers.loc["news_ingestor", "state"] == "stale"
    assert any("news_ingestor" in w for w in alerts(at, "warning"))
    jobs = table_with(at, "job", "status").set_index("job")
    assert jobs.loc["macro_ingestor", "status"] == "ok"
    assert jobs.loc["corporate_action_handler", "status"] == "failed"
    assert any("corporate_action_handler" in e for e in alerts(at, "error"))


def test_data_health_with_the_database_down_then_back(app_env, monkeypatch: pytest.MonkeyPatch):
    good_url = get_settings().database_url.get_secret_value()
    monkeypatch.setenv("DATABASE_URL", "postgresql://ops:hunter2-secret@127.0.0.1:9/none")
    get_settings.cache_clear()
    dispose_engine()
    at = open_page("health")
    assert not at.exception
    assert any("database is not reachable" in e for e in alerts(at, "error"))
    assert any("Retrying every" in c for c in texts(at))
    assert not any("hunter2-secret" in t for t in texts(at))
    monkeypatch.setenv("DATABASE_URL", good_url)
    get_settings.cache_clear()
    dispose_engine()
    at.run()
    assert not alerts(at, "error")
    assert len(table_with(at, "ticker", "latest_bar")) == len(get_settings().universe)
