"""The data-quality guard in the app: the data-health page's held tickers, quarantined bars and
flagged inputs with the analysts' decisions, and the held-ticker notice on the signal pages."""

from __future__ import annotations

import pandas as pd

from db import quality
from db.connections import connect
from db.reads import read_from_db
from tests.app.support import alerts, open_page, table_with

PASSWORD = "stockpulse-demo"  # the local profile's default analyst password
INJECTED = "level moved 0.5x [click](http://evil.example) ![x](http://evil.example/x.png)"


def plant_bad_print_and_hold(app_env) -> pd.Timestamp:  # type: ignore[no-untyped-def]
    """The feed with one 100x print of MSFT written through the write path, and a hold on KO."""
    feed = app_env.feed()
    bars = feed.bars
    at = bars.index[(bars["ticker"] == "MSFT")][200]
    bars.loc[at, ["open", "high", "low", "close"]] *= 100.0
    feed.seed()
    onset = pd.Timestamp(bars.loc[bars["ticker"] == "KO", "ts"].iloc[300])
    hold = pd.DataFrame(
        [{"ticker": "KO", "onset_ts": onset, "reason": "level_shift", "detail": INJECTED}]
    ).assign(source="simulated")
    with connect() as conn:
        quality.hold_tickers(conn, hold)
    return pd.Timestamp(bars.loc[at, "ts"])


def submit_decision(at, form: str, reason: str, password: str):  # type: ignore[no-untyped-def]
    at.text_input(key=f"{form}_reason").input(reason)
    at.text_input(key=f"{form}_name").input("alice")
    at.text_input(key=f"{form}_password").input(password)
    buttons = [b for b in at.button if b.label == "Record the decision"]
    (buttons[0] if form == "hold" else buttons[-1]).click()
    return at.run()


def test_data_health_shows_the_guard_and_records_decisions(app_env) -> None:  # type: ignore[no-untyped-def]
    bad_minute = plant_bad_print_and_hold(app_env)
    at = open_page("health")
    assert not at.exception
    held = table_with(at, "ticker", "onset", "detail")
    assert held["ticker"].tolist() == ["KO"]
    counts = table_with(at, "ticker", "reason", "open", "total")
    assert counts[["ticker", "reason", "open"]].values.tolist() == [["MSFT", "unit_error", 1]]
    bars = table_with(at, "minute", "reason", "close")
    assert bars["reason"].tolist() == ["unit_error"]
    assert bars["close"].iloc[0] > 1000  # the raw print, as served

    at = submit_decision(at, "hold", "a real 2:1 split the feed missed", "wrong-password")
    assert any("Wrong analyst password" in e for e in alerts(at, "error"))
    assert len(quality.held_tickers()) == 1  # nothing changed
    at = submit_decision(at, "hold", "a real 2:1 split the feed missed", PASSWORD)
    assert not at.exception
    assert any("Hold #" in s and "accepted by analyst:alice" in s for s in alerts(at, "success"))
    assert quality.held_tickers().empty
    decided = read_from_db("SELECT status, decided_by, decision_reason FROM ticker_holds")
    assert decided.values.tolist() == [
        ["accepted", "analyst:alice", "a real 2:1 split the feed missed"]
    ]

    at.radio(key="bar_decision_choice").set_value("rejected")
    at = submit_decision(at, "bar", "a currency-unit slip", PASSWORD)
    assert not at.exception
    row = read_from_db("SELECT ts, status, decided_by FROM quarantined_bars")
    assert row[["status", "decided_by"]].values.tolist() == [["rejected", "analyst:alice"]]
    assert pd.Timestamp(row["ts"].iloc[0]) == bad_minute


def test_signal_pages_name_a_held_ticker_with_the_reason_escaped(app_env) -> None:  # type: ignore[no-untyped-def]
    plant_bad_print_and_hold(app_env)
    for page, query in (("home", None), ("detail", {"ticker": "KO"})):
        at = open_page(page, query)
        assert not at.exception
        notices = [w for w in alerts(at, "warning") if "data-quality guard" in w]
        assert len(notices) == 1, page
        assert "**KO**" in notices[0]
        assert "\\[click\\]\\(http" in notices[0] and "!\\[x\\]" in notices[0]  # shown as typed
    at = open_page("detail", {"ticker": "AAPL"})
    assert not [w for w in alerts(at, "warning") if "data-quality guard" in w]
