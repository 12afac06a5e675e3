"""The stock detail page and the bar aggregation it relies on."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.proto.Metric_pb2 import Metric

from db.bars import interval_bars
from db.writes import write_to_db
from ml.serving.generate_recommendation import DISCLAIMER
from tests.app.support import alerts, figures, open_page, table_with, texts


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


def macro_rows(newest: pd.Timestamp) -> pd.DataFrame:
    """DGS10 once; VIX rising; 14 months of CPI index (each released 40 days after its month),
    so the latest has a year-on-year change and so has the one before."""
    month0 = (newest.tz_localize(None) - pd.DateOffset(months=15)).to_period("M").start_time
    cpi = [
        {
            "series_id": "CPIAUCSL",
            "obs_date": (month0 + pd.DateOffset(months=k)).date(),
            "realtime_start": (month0 + pd.DateOffset(months=k, days=40)).tz_localize("UTC"),
            "value": 300.0 + k,
        }
        for k in range(14)
    ]
    day = pd.Timedelta(days=1)
    others = [
        ("DGS10", newest - 3 * day, newest - 2 * day, 4.21),
        ("VIXCLS", newest - 4 * day, newest - 3 * day, 15.0),
        ("VIXCLS", newest - 3 * day, newest - 2 * day, 17.5),
    ]
    rows = cpi + [
        {"series_id": s, "obs_date": o.date(), "realtime_start": r, "value": v}
        for s, o, r, v in others
    ]
    return pd.DataFrame(rows).assign(source="fred")


def test_chart_has_candles_volume_signals_news_and_macro(app_env):
    from ml.models.metadata import read_metadata_file
    from ml.serving.outcomes import label_key

    feed = app_env.feed()
    newest = feed.seed()
    version = app_env.promote()
    minute = pd.Timedelta(minutes=1)
    buys = [newest - k * minute for k in (30, 29, 28)]  # one run: one marker
    for ts in buys:
        store_signal("MSFT", ts, "BUY", version)
    store_signal("MSFT", newest - 10 * minute, "SELL", version)
    meta = read_metadata_file(app_env.models_dir / version / "metadata.json")
    key = label_key(meta.labels)
    outcome = {"ticker": "MSFT", "bar_ts": buys[0], "label_key": key, "label": 2}
    write_to_db(pd.DataFrame([outcome | {"fwd_return": 0.003}]), table="outcomes")
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
    write_to_db(macro_rows(newest), table="macro_observations")
    at = open_page("detail", {"ticker": "MSFT"})
    assert not at.exception and not alerts(at, "error")
    fig = figures(at)["price_chart"]
    kinds = {trace.get("name"): trace["type"] for trace in fig["data"]}
    assert kinds["price"] == "candlestick" and kinds["volume"] == "bar"
    # markers where a run starts, coloured by how it turned out
    assert {"BUY right", "SELL pending", "news", "SMA 20"} <= set(kinds)
    buy = next(t for t in fig["data"] if t.get("name") == "BUY right")
    assert len(buy["x"]) == 1 and buy["marker"]["color"] == "#16a34a"
    assert "held 3 bar(s)" in buy["hovertext"][0] and "went UP (+0.30 %)" in buy["hovertext"][0]
    assert "New York" in buy["hovertext"][0]
    assert pd.Timestamp(buy["x"][0]) == buys[0].floor("5min").tz_localize(None)
    assert fig["layout"]["xaxis2"]["title"]["text"] == "market time, UTC"
    news_trace = next(t for t in fig["data"] if t.get("name") == "news")
    assert news_trace["text"] == ["MSFT wins major contract"]
    assert "MSFT wins major contract" in set(table_with(at, "title")["title"])
    assert {m.label for m in at.metric} >= {"Latest signal"}
    shown = texts(at)
    assert any("BUY then UP, SELL then DOWN" in c and "market time" in c for c in shown)
    assert any(c.startswith("Since ") and "New York" in c for c in shown)  # the signal card
    # macro: what a rise means, CPI year on year, each figure's release
    macro = {m.label.split(" · ")[0]: m for m in at.metric if " · " in m.label}
    assert macro["DGS10"].value == "4.21%"
    assert macro["DGS10"].proto.color == Metric.MetricColor.GRAY
    assert macro["VIXCLS"].proto.color == Metric.MetricColor.RED  # rising VIX: red
    assert macro["VIXCLS"].proto.direction == Metric.MetricDirection.UP
    cpi = macro["CPIAUCSL"]
    assert cpi.label == "CPIAUCSL · CPI inflation, year on year"
    assert cpi.value == f"{(313 / 301 - 1) * 100:.2f}%" and cpi.proto.delta == "-0.01 pp"
    assert cpi.proto.color == Metric.MetricColor.GREEN  # inflation easing: inverse colour
    released = (newest - 2 * pd.Timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    assert any(f"released {released} UTC · " in c for c in shown)
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


@pytest.mark.no_db
def test_a_long_one_minute_range_is_capped_to_its_last_sessions():
    from app import chart_data

    start, end = pd.Timestamp("2025-03-03", tz="UTC"), pd.Timestamp("2025-04-12", tz="UTC")
    window = chart_data.chart_range("1m", start, end)
    assert window.capped and window.minute_bars == 30 * 390  # 30 sessions, none short
    # the last 20 sessions: from the week of March 17 (New York on daylight time: 13:30 UTC)
    assert window.end == end and window.start == pd.Timestamp("2025-03-17 13:30", tz="UTC")
    newest = pd.Timestamp("2025-04-04 19:59", tz="UTC")  # bars stop before the range ends
    assert chart_data.chart_range("1m", start, end, newest).start == pd.Timestamp(
        "2025-03-10 13:30", tz="UTC"
    )
    week = chart_data.chart_range("1m", start, start + pd.Timedelta(days=7))
    assert not week.capped and week.start == start and week.minute_bars == 5 * 390
    assert not chart_data.chart_range("5m", start, end).capped


def test_a_custom_one_minute_range_over_the_cap_says_so_and_reads_no_more(app_env, monkeypatch):
    from app import chart_data
    from db import bars as db_bars

    cap = 300
    monkeypatch.setattr(chart_data, "MAX_MINUTE_BARS", cap)
    fetched: list[int] = []

    def counted(*args, **kwargs):
        frame = interval_bars(*args, **kwargs)
        fetched.append(len(frame))
        return frame

    monkeypatch.setattr(db_bars, "interval_bars", counted)
    newest = app_env.feed(sessions=2).seed()  # 780 bars a ticker
    at = open_page("detail", {"ticker": "AAPL"})
    at.sidebar.radio[0].set_value("1m").run()
    at.sidebar.selectbox(key="range_1m").set_value("Custom dates").run()
    first = (newest - pd.Timedelta(days=10)).date()
    at.sidebar.date_input[0].set_value((first, newest.date())).run()
    assert not at.exception
    [notice] = [w for w in alerts(at, "warning") if "1-minute bars" in w]
    assert "more than the 300 one chart reads: showing the last 300" in notice
    assert "Choose a coarser interval (5m, 1h or 1d) or a shorter range" in notice
    candles = figures(at)["price_chart"]["data"][0]
    assert cap - 20 < len(candles["x"]) <= cap  # the simulated feed skips a few minutes
    assert pd.Timestamp(candles["x"][-1]) == newest.tz_localize(None)  # the newest bars
    assert fetched and max(fetched) <= cap
