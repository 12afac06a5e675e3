"""The live signals page under AppTest, against the real database and a real trained model."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pandas as pd
import pytest

from app import live, live_data
from config.settings import get_settings
from db.connections import dispose_engine
from db.reads import read_from_db
from db.writes import write_to_db
from ml.serving.generate_recommendation import DISCLAIMER, get_trade_recommendation
from tests.app.support import alerts, open_page, table_with, texts

PROBS = {"BUY": ([0.1, 0.2, 0.7], [0.1, 0.2, 0.7]), "SELL": ([0.7, 0.2, 0.1], [0.7, 0.2, 0.1])}


def store_signal(ticker: str, ts: pd.Timestamp, action: str, version: str) -> None:
    """A signal of `action` by the real recommendation rule, stored as the worker stores it."""
    rec = get_trade_recommendation(*PROBS[action], ticker=ticker, bar_ts=ts, model_version=version)
    write_to_db(pd.DataFrame([rec.to_row(close=100.0)]), table="signals")


def signal_rows() -> int:
    return int(read_from_db("SELECT count(*) AS n FROM signals").iloc[0]["n"])


def test_live_page_shows_the_universe_with_signals_and_the_disclaimer(app_env):
    feed = app_env.feed()
    newest = feed.seed()
    version = app_env.promote()
    # AAPL's two bars before the newest, as if scored earlier: a change of signal for the feed
    minute = pd.Timedelta(minutes=1)
    store_signal("AAPL", newest - 2 * minute, "BUY", version)
    store_signal("AAPL", newest - minute, "SELL", version)
    app_env.score()
    at = open_page("home")
    assert not at.exception
    assert DISCLAIMER in alerts(at, "warning")
    table = table_with(at, "ticker", "signal")
    assert list(table["ticker"]) == get_settings().universe
    assert table["last"].notna().all() and table["change_pct"].notna().all()
    assert set(table["signal"].str.split().str[-1]) <= {"BUY", "SELL", "HOLD"}
    assert table["confidence"].dropna().between(1 / 3, 1).all()
    assert all(p.count("/") == 2 for p in table["lstm"]) and all(
        p.count("/") == 2 for p in table["transformer"]
    )
    assert all(len(s) > 10 for s in table["spark"])
    # each signal explained: lean, distance to its trigger, reason, when it began
    assert set(table["models"]) <= {"both UP", "both NEUTRAL", "both DOWN", "split"}
    assert table["to_trigger"].str.fullmatch(r"\d\.\d\d (short of|past) (BUY|SELL) ≥ 0\.55").all()
    assert (table["reason"] != "—").all()
    assert table["since"].str.endswith("New York").all()
    assert table["bar"].str.contains(" UTC · ").all()
    config = board_columns(at)
    assert config["Last 90 min (% vs previous close)"]["type_config"]["color"] == "auto"
    spark = config["Last 90 min (% vs previous close)"]["type_config"]
    points = [v for line in table["spark"] for v in line]
    assert (spark["y_min"], spark["y_max"]) == pytest.approx((min(points), max(points)))
    assert config["Confidence (bar from chance 0.33)"]["type_config"]["min_value"] == (
        pytest.approx(1 / 3)
    )
    assert "Change since previous close" in config
    changes = table_with(at, "when", "change")
    assert changes.iloc[-1]["ticker"] == "AAPL" and changes.iloc[-1]["change"] == "BUY → SELL"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[f"Newest bar (UTC) · {newest:%a %m-%d}"] == f"{newest:%H:%M}"
    assert any(f"Serving model **{app_env.version}**" in c for c in texts(at))
    assert any("bar and signal times are market time (the simulated market clock" in c
               for c in texts(at))  # fmt: skip
    assert any(re.search(r"Refreshed \d\d:\d\d:\d\d UTC server time", c) for c in texts(at))
    assert any(f"scoring worker: current, newest bar scored {newest:%H:%M} UTC" in c
               for c in texts(at))  # fmt: skip
    # the first sight of each ticker scores its newest bar only: one signal per ticker
    assert signal_rows() == len(get_settings().universe) + 2


def board_columns(at: Any) -> dict[str, dict[str, Any]]:
    """The live table's column configuration, by column label."""
    proto = next(d.proto for d in at.dataframe if "spark" in d.value.columns)
    return {c.get("label", ""): c for c in json.loads(proto.columns).values()}


def test_sessions_only_read_what_the_scoring_worker_stored(app_env):
    """However many sessions refresh, the app calls no model: each new bar is scored once, by
    the scoring worker, in one batch per model, and every session shows its signal."""
    feed = app_env.feed()
    feed.seed(hold_back=3)
    app_env.promote()
    worker = app_env.worker
    worker.run_pass()
    sessions = [open_page("home") for _ in range(3)]
    app_models = live.serving_models()
    assert app_models is not None
    base_rows, base_calls = signal_rows(), worker.stats.invocations
    batch = app_models.lstm.batch
    for _ in range(2):
        ts, n_bars = feed.next_minute()
        worker.run_pass()  # what the bars' notification makes the worker do
        for at in sessions:
            at.run()
            assert not at.exception
            metrics = {m.label: m.value for m in at.metric}
            assert metrics[f"Newest signal (UTC) · {ts:%a %m-%d}"] == f"{ts:%H:%M}"
        assert signal_rows() - base_rows == n_bars
        # both models run once per batch of new bars: not once per session
        assert worker.stats.invocations - base_calls == 2 * math.ceil(n_bars / batch)
        base_rows, base_calls = signal_rows(), worker.stats.invocations
    assert app_models.invocations == 0  # the app loaded the models and never called them
    stored = read_from_db(
        "SELECT ticker, bar_ts, count(*) AS n FROM signals GROUP BY ticker, bar_ts"
    )
    assert (stored["n"] == 1).all()


def test_the_page_says_when_the_scoring_worker_is_down_or_behind(app_env):
    """Signals older than the newest bar are not shown as current."""
    from db.connections import execute

    feed = app_env.feed()
    feed.seed(hold_back=5)
    app_env.promote()
    at = open_page("home")
    assert any("scoring worker has not reported yet" in w for w in alerts(at, "warning"))
    app_env.score()
    at.run()
    assert not alerts(at, "error")
    assert not any("scoring worker" in w for w in alerts(at, "warning"))
    for _ in range(3):  # three bars arrive and nothing scores them
        newest, _ = feed.next_minute()
    at.run()
    [behind] = [w for w in alerts(at, "warning") if "scoring worker is behind" in w]
    assert "3 bar-minute(s) before the newest stored bar" in behind
    execute(
        "UPDATE worker_heartbeats SET last_beat = now() - interval '5 minutes' WHERE worker = :w",
        {"w": live.SCORER},
    )
    at.run()
    [down] = alerts(at, "error")
    assert "scoring worker is silent for" in down and "are not current" in down
    app_env.score()  # it is back: caught up, and the page says nothing
    at.run()
    assert not alerts(at, "error")
    assert not any("scoring worker" in w for w in alerts(at, "warning"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[f"Newest signal (UTC) · {newest:%a %m-%d}"] == f"{newest:%H:%M}"


def test_without_a_model_prices_show_and_signals_appear_once_one_is_promoted(app_env):
    app_env.feed().seed()
    at = open_page("home")
    assert not at.exception
    assert any("No model is trained yet" in m for m in alerts(at, "info"))
    table = table_with(at, "ticker", "signal")
    assert table["last"].notna().all()
    assert (table["signal"] == "—").all()
    app_env.promote()
    app_env.score()
    at.run()
    assert not any("No model is trained yet" in m for m in alerts(at, "info"))
    assert (table_with(at, "ticker", "signal")["signal"] != "—").all()


def test_empty_database_says_so(app_env):
    app_env.promote()
    at = open_page("home")
    assert not at.exception
    assert any("No bars in the database yet" in m for m in alerts(at, "info"))
    assert DISCLAIMER in alerts(at, "warning")


def test_database_down_shows_a_plain_message_without_secrets_and_recovers(
    app_env, monkeypatch: pytest.MonkeyPatch
):
    app_env.feed().seed()
    app_env.promote()
    app_env.score()
    good_url = get_settings().database_url.get_secret_value()
    monkeypatch.setenv("DATABASE_URL", "postgresql://analyst:s3cr3t-pw-42@127.0.0.1:9/nowhere")
    get_settings.cache_clear()
    dispose_engine()
    at = open_page("home")
    assert not at.exception
    errors = alerts(at, "error")
    assert any("database is not reachable" in e for e in errors)
    assert DISCLAIMER in alerts(at, "warning")
    assert not any("s3cr3t-pw-42" in t for t in texts(at))
    monkeypatch.setenv("DATABASE_URL", good_url)
    get_settings.cache_clear()
    dispose_engine()
    at.run()
    assert not alerts(at, "error")
    assert len(table_with(at, "ticker", "signal")) == len(get_settings().universe)


def test_warm_rerun_reuses_the_cached_table(app_env, monkeypatch: pytest.MonkeyPatch):
    app_env.feed().seed()
    app_env.promote()
    at = open_page("home")
    calls = []
    original = live_data._live_frame
    monkeypatch.setattr(live_data, "_live_frame", lambda *a: calls.append(a) or original(*a))
    at.run()
    open_page("home")
    assert calls == []  # same newest bar and signals: both sessions reused the cached table
