"""The drift & history page (fed by the real drift monitor) and the data-health page."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from config.settings import get_settings
from db.connections import dispose_engine, execute
from db.ops import heartbeat, job_run
from db.writes import write_to_db
from tests.app.support import alerts, figures, open_page, table_with, texts


def test_drift_page_shows_history_drift_against_thresholds_and_live_confidence(
    app_env, monkeypatch: pytest.MonkeyPatch
):
    from ml.lifecycle.drift_monitor import check

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
    assert list(history["trained"]) == ["quick, 1 epoch"]  # how the version was trained
    assert any("server time (the machine's clock, UTC)" in t for t in texts(at))
    [checks] = [t for t in texts(at) if t.startswith("2 checks, the latest ")]
    assert checks.endswith("UTC server time; check times are server time.")
    assert any("Confidence per hour of bars: market time" in t for t in texts(at))
    charts = figures(at)
    assert {"drift_psi", "drift_ks_pvalue", "drift_drifted_share", "confidence_chart"} <= set(
        charts
    )
    psi = charts["drift_psi"]
    assert len(psi["data"]) >= 1 and len(psi["data"][0]["x"]) == 2  # two checks
    assert psi["layout"]["shapes"][0]["y0"] == get_settings().drift_psi_threshold
    names = {t["name"] for t in charts["confidence_chart"]["data"]}
    assert {"lstm confidence", "transformer confidence", "confidence lstm"} <= names
    alarms = table_with(at, "alarm", "raised")
    assert alarms["checked (server time)"].str.endswith("UTC server time").all()


@pytest.mark.dates
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


@pytest.mark.dates
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
    from db.flavour import database_flavour

    assert f"Database: {database_flavour()}" in texts(at)  # which flavour serves
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


@pytest.mark.dates
def test_data_health_judges_freshness_on_the_market_clock(app_env):
    """With the simulated clock anchored in a past session, freshness, the session and the
    missing minutes are judged at the market's now, not the wall clock's."""
    from config.market_calendar import xnys
    from config.market_clock import anchored_clock

    feed = app_env.feed(sessions=2)
    session = xnys().minute_to_session(feed.minutes[-1], direction="previous")
    market_start = pd.Timestamp(xnys().session_open(session)) + pd.Timedelta(minutes=125)
    held_back = sum(1 for m in feed.minutes if m >= market_start)
    newest = feed.seed(hold_back=held_back)
    assert newest < market_start
    anchored_clock(get_settings().data_dir, "simulated", speed=1.0, start=market_start)
    at = open_page("health")
    assert not at.exception and not alerts(at, "error")
    assert any(f"session {session.date()}" in h for h in texts(at))
    assert any("simulated market clock at 1x" in c for c in texts(at))
    tickers = table_with(at, "ticker", "age", "missing_in_session").set_index("ticker")
    # minutes old on the market clock (a ticker's last minute may have had no trade), never
    # the hours or days the wall clock would give
    parts = tickers["age"].str.split(" ", n=1, expand=True)
    value, unit = parts[0].astype(float), parts[1]
    assert set(unit) <= {"s", "min"} and (value[unit == "min"] <= 10).all()
    opened = pd.Timestamp(xnys().session_open(session))
    in_session = feed.bars[(feed.bars["ts"] >= opened) & (feed.bars["ts"] < market_start)]
    stored = in_session.groupby("ticker").size()
    assert (tickers["bars_in_session"] == stored.reindex(tickers.index)).all()
    # 125 minutes of the session have passed on the market clock (missing ones are minutes
    # without trades in the simulated market, about 1 %)
    assert ((tickers["bars_in_session"] + tickers["missing_in_session"]) == 125).all()
    assert tickers["missing_in_session"].max() < 10


@pytest.mark.dates
def test_data_health_on_the_wall_clock_counts_the_session_so_far(
    app_env, monkeypatch: pytest.MonkeyPatch
):
    """A live source is judged on the wall clock: the session is the latest one opened by now
    (early closes, holidays, weekends and daylight saving from the XNYS schedule), and the
    expected minutes are those elapsed in it."""
    import exchange_calendars as xcals

    monkeypatch.setenv("MARKET_SOURCE", "yfinance")
    get_settings.cache_clear()
    schedule = xcals.get_calendar("XNYS").schedule

    def expected(now: pd.Timestamp) -> tuple[object, int]:
        opened = schedule[schedule["open"] <= now].iloc[-1]
        elapsed = min(now.floor("min"), opened["close"]) - opened["open"]
        return opened.name.date(), int(elapsed / pd.Timedelta(minutes=1))

    before = expected(pd.Timestamp.now(tz="UTC"))
    at = open_page("health")
    after = expected(pd.Timestamp.now(tz="UTC"))  # the page ran between the two instants
    assert not at.exception and not alerts(at, "error")
    assert any(f"session {d}" in h for h in texts(at) for d in {before[0], after[0]})
    assert any("wall clock (live market data)" in c for c in texts(at))
    shown = next(c for c in texts(at) if "session minutes so far" in c)
    assert any(shown.startswith(f"{n} session minutes") for n in {before[1], after[1]}), shown
