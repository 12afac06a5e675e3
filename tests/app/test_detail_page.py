"""The stock detail page and the bar aggregation it relies on."""

from __future__ import annotations

import pandas as pd
import pytest

from db.bars import interval_bars
from db.database_manager import write_to_db
from ml.generate_recommendation import DISCLAIMER
from tests.app.support import alerts, figures, open_page, table_with


def store_signal(ticker: str, ts: pd.Timestamp, action: str, version: str) -> None:
    p = {"BUY": (0.1, 0.1, 0.8), "SELL": (0.8, 0.1, 0.1)}[action]
    label = "UP" if action == "BUY" else "DOWN"
    row = {
        "ticker": ticker,
        "bar_ts": ts,
        "model_version": version,
        "action": action,
        "confidence": 0.8,
        "lstm_label": label,
        "lstm_p_down": p[0],
        "lstm_p_neutral": p[1],
        "lstm_p_up": p[2],
        "transformer_label": label,
        "transformer_p_down": p[0],
        "transformer_p_neutral": p[1],
        "transformer_p_up": p[2],
        "close": 100.0,
        "reason": "test",
    }
    write_to_db(pd.DataFrame([row]), table="signals")


def test_chart_has_candles_volume_signals_news_and_macro(app_env):
    feed = app_env.feed()
    newest = feed.seed()
    version = app_env.promote()
    store_signal("MSFT", newest - pd.Timedelta(minutes=30), "BUY", version)
    store_signal("MSFT", newest - pd.Timedelta(minutes=10), "SELL", version)
    article = {
        "article_key": "k1",
        "ticker": "MSFT",
        "published_at": newest - pd.Timedelta(minutes=45),
        "available_at": newest - pd.Timedelta(minutes=44),
        "source": "simulated",
        "title": "MSFT wins major contract",
        "sentiment": 0.7,
    }
    write_to_db(pd.DataFrame([article]), table="news_articles")
    macro = {
        "series_id": "DGS10",
        "obs_date": (newest - pd.Timedelta(days=3)).date(),
        "realtime_start": newest - pd.Timedelta(days=2),
        "value": 4.21,
        "source": "fred",
    }
    write_to_db(pd.DataFrame([macro]), table="macro_observations")
    at = open_page("detail", {"ticker": "MSFT"})
    assert not at.exception and not alerts(at, "error")
    fig = figures(at)["price_chart"]
    kinds = {trace.get("name"): trace["type"] for trace in fig["data"]}
    assert kinds["price"] == "candlestick" and kinds["volume"] == "bar"
    assert {"BUY", "SELL", "news", "SMA 20"} <= set(kinds)
    news_trace = next(t for t in fig["data"] if t.get("name") == "news")
    assert news_trace["text"] == ["MSFT wins major contract"]
    assert "MSFT wins major contract" in set(table_with(at, "title")["title"])
    assert {m.label for m in at.metric} >= {"Latest signal"}
    assert any(m.label.startswith("DGS10") and m.value == "4.21" for m in at.metric)
    assert DISCLAIMER in alerts(at, "warning")


@pytest.mark.parametrize("interval", ["1m", "5m", "1h", "1d"])
def test_every_interval_draws_bars(app_env, interval):
    app_env.feed().seed()
    at = open_page("detail", {"ticker": "AAPL"})
    at.sidebar.radio[0].set_value(interval).run()
    assert not at.exception and not alerts(at, "error")
    candles = figures(at)["price_chart"]["data"][0]
    assert candles["type"] == "candlestick" and len(candles["x"]) > 1


def test_database_aggregates_match_resampling(app_env):
    feed = app_env.feed()
    feed.seed()
    minute = feed.bars[feed.bars["ticker"] == "JPM"].set_index("ts").sort_index()
    start, end = minute.index[0], minute.index[-1] + pd.Timedelta(minutes=1)
    for interval, rule in (("5m", "5min"), ("1h", "1h"), ("1d", "24h")):
        got = interval_bars("JPM", interval, start, end).set_index("ts")
        want = (
            minute.resample(rule, origin=pd.Timestamp("2000-01-03", tz="UTC"))
            .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
            .dropna()
        )
        want.index = want.index.as_unit(got.index.unit)
        pd.testing.assert_frame_equal(got, want, check_freq=False, check_names=False)


def test_unknown_ticker_gets_a_clear_message(app_env):
    app_env.feed().seed()
    at = open_page("detail", {"ticker": "XYZ"})
    assert not at.exception
    assert any("'XYZ' is not in the universe" in w for w in alerts(at, "warning"))
    assert figures(at)["price_chart"]["data"][0]["type"] == "candlestick"


def test_empty_range_and_empty_database_get_clear_messages(app_env):
    at = open_page("detail", {"ticker": "AAPL"})
    assert not at.exception
    assert any("No bars stored for AAPL yet" in m for m in alerts(at, "info"))
    app_env.feed().seed()
    at.run()  # the cached extent is keyed on the newest bar: the new bars show at once
    at.sidebar.selectbox(key="range_5m").set_value("Custom dates").run()
    at.sidebar.date_input[0].set_value(
        (pd.Timestamp("2019-01-07").date(), pd.Timestamp("2019-01-08").date())
    ).run()
    assert not at.exception
    assert any("No 5m bars for AAPL" in m for m in alerts(at, "info"))
    assert "price_chart" not in figures(at)
