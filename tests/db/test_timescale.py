"""TimescaleDB for real, and the plain PostgreSQL fallback: every write path on compressed
history, aggregates that are right and current, corporate actions applied when read.

The tests run on whichever flavour serves (CI runs the suite on both). On TimescaleDB the
history is compressed first (every chunk); on plain PostgreSQL there is nothing to compress and
the same assertions hold for the plain tables.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from config.market_calendar import xnys
from config.settings import get_settings
from db.bars import interval_bars, read_bars
from db.connections import autocommit_cursor, execute
from db.flavour import database_flavour, has_aggregates
from db.reads import read_from_db
from db.signals import signal_markers
from db.writes import write_to_db
from tests.workers.price_support import queue, stored_bars
from workers import backfill
from workers import corporate_action_handler as handler
from workers.bar_store import write_bars
from workers.seed_history import seed_history
from workers.sources.base import ACTION_COLUMNS
from workers.sources.simulated import SimulatedMarket

TICKERS = ["AAPL", "NVDA", "KO"]
WEEK = pd.DatetimeIndex(["2026-10-05", "2026-10-06", "2026-10-07", "2026-10-08", "2026-10-09"])
FAR = pd.Timestamp("2262-01-01", tz="UTC")


def timescale_expected() -> bool:
    """TimescaleDB should serve when the server offers it and the settings do not turn it off."""
    offered = read_from_db(
        "SELECT count(*) AS n FROM pg_available_extensions WHERE name = :n", {"n": "timescaledb"}
    )["n"][0]
    return bool(offered) and get_settings().timescaledb != "off"


def compress_history() -> int:
    """Compress every chunk of `bars_1m` (TimescaleDB); returns how many chunks are compressed.
    Plain PostgreSQL has nothing to compress: 0."""
    if not has_aggregates():
        return 0
    execute(
        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks(:t) AS c",
        {"t": "bars_1m"},
    )
    return int(
        read_from_db(
            "SELECT count(*) AS n FROM timescaledb_information.chunks "
            "WHERE hypertable_name = :t AND is_compressed",
            {"t": "bars_1m"},
        )["n"][0]
    )


def materialize_all(view: str) -> None:
    """Materialize every bucket of an aggregate (TimescaleDB; nothing to do on plain tables)."""
    if has_aggregates():
        with autocommit_cursor() as cur:
            cur.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", (view,))


def week_bars(tickers: list[str] = TICKERS, seed: int = 3) -> pd.DataFrame:
    market = SimulatedMarket(seed=seed)
    frames = [market.session_bars(t, s) for s in WEEK for t in tickers]
    return pd.concat(frames, ignore_index=True).sort_values(["ticker", "ts"], ignore_index=True)


def test_the_flavour_offered_is_the_flavour_in_use() -> None:
    flavour = database_flavour()
    if not timescale_expected():
        assert flavour.timescaledb is None and not has_aggregates()
        assert read_from_db("SELECT to_regclass(:v) AS v", {"v": "bars_1d"})["v"][0] is None
        return
    assert flavour.timescaledb is not None and has_aggregates()
    settings = read_from_db(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = :t",
        {"t": "bars_1m"},
    )
    assert settings["compression_enabled"].tolist() == [True]
    jobs = read_from_db(
        "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs "
        "WHERE proc_name IN (:a, :b)",
        {"a": "policy_compression", "b": "policy_refresh_continuous_aggregate"},
    )
    assert "policy_compression" in set(jobs["proc_name"])
    aggregates = read_from_db(
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
    ).set_index("view_name")
    assert set(aggregates.index) == {"bars_5m", "bars_1h", "bars_1d"}
    assert not aggregates["materialized_only"].any()  # real-time: the newest bucket shows
    assert (jobs["proc_name"] == "policy_refresh_continuous_aggregate").sum() == 3


def test_the_hypertable_gets_week_chunks_also_when_made_with_daily_ones() -> None:
    """Week chunks for the bars and 10-week ones for the aggregates' materialized buckets, also
    in a schema made with daily chunks (whose aggregates got 10-day ones)."""
    from db import timescale

    with autocommit_cursor() as cur:
        if not has_aggregates():
            assert timescale.ensure(cur) == []  # plain tables stay plain
            return
        schema = timescale._current_schema(cur)
        stores = {view: timescale._materialization(cur, view) for view in timescale.AGGREGATES}

        def intervals() -> list[pd.Timedelta]:
            bars = timescale._chunk_interval(cur, schema, "bars_1m")
            return [bars] + [timescale._chunk_interval(cur, *stores[v]) for v in stores]

        assert intervals() == [pd.Timedelta(days=7)] + [pd.Timedelta(days=70)] * 3
        cur.execute("SELECT set_chunk_time_interval('bars_1m', INTERVAL '1 day')")
        for store in stores.values():
            cur.execute(
                "SELECT set_chunk_time_interval(format('%%I.%%I', %s, %s)::regclass, "
                "INTERVAL '10 days')",
                store,
            )
        assert timescale.ensure(cur) == ["chunk interval"] + [
            f"{view} chunk interval" for view in timescale.AGGREGATES
        ]
        assert intervals() == [pd.Timedelta(days=7)] + [pd.Timedelta(days=70)] * 3
        assert timescale.ensure(cur) == []


@pytest.mark.parametrize("rows", [30, 1950])  # the VALUES upsert and the COPY + staging path
def test_both_write_paths_work_on_compressed_history(clean_tables: None, rows: int) -> None:
    bars = week_bars()
    first = bars.iloc[:rows]
    assert write_to_db(first.assign(source="t"), table="bars_1m") == rows
    compressed = compress_history()
    assert compressed > 0 or not timescale_expected()
    write_to_db(first.assign(source="t"), table="bars_1m", on_conflict="nothing")
    write_to_db(first.assign(source="t"), table="bars_1m")  # the same bars again, updated
    assert len(stored_bars()) == rows
    corrected = first.iloc[[rows // 2]].assign(close=123.25, high=999.0)
    write_to_db(corrected.assign(source="t"), table="bars_1m")
    stored = stored_bars().set_index(["ticker", "ts"])
    key = (corrected["ticker"].iloc[0], corrected["ts"].iloc[0])
    assert stored.loc[key, "close"] == 123.25 and len(stored) == rows
    rest = bars.iloc[rows : rows + 40].assign(source="t")  # new bars into compressed days
    write_to_db(rest, table="bars_1m")
    assert len(stored_bars()) == rows + len(rest)


def test_backfill_into_a_compressed_week(clean_tables: None) -> None:
    market = SimulatedMarket(seed=3)
    bars = week_bars()
    holes = bars.index[bars["ts"].dt.minute.isin([7, 41]) & (bars["ticker"] == "KO")]
    write_bars(bars.drop(index=holes), source="simulated")
    gaps = bars.loc[holes, ["ticker", "ts"]].rename(columns={"ts": "gap_start"})
    write_bars(bars.iloc[0:0], source="simulated", gaps=gaps.assign(gap_end=gaps["gap_start"]))
    compress_history()
    report = backfill.drain_queue(market)
    assert report.filled == len(holes) and set(queue()["status"]) == {"filled"}
    pd.testing.assert_frame_equal(
        stored_bars(), bars[stored_bars().columns.tolist()], check_dtype=False
    )


def test_seeding_over_compressed_history_writes_only_what_is_missing(
    clean_tables: None, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.market_clock import SessionClock

    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    try:
        start = pd.Timestamp(xnys().session_open(pd.Timestamp("2026-10-12")))
        market = SimulatedMarket(seed=3, clock=SessionClock(start, speed=60.0))
        first = seed_history(3, source=market, adjust=False, progress=False)
        assert first.bars_written == len(stored_bars()) > 0
        compress_history()
        lost = execute(
            "DELETE FROM bars_1m WHERE ticker = :t AND ts < :cut",
            {"t": "KO", "cut": pd.Timestamp("2026-10-08", tz="America/New_York")},
        )
        again = seed_history(3, source=market, adjust=False, progress=False)
        # only KO's bars of the first seeded session come back (on_conflict nothing)
        assert again.skipped == 2 and again.bars_written == lost > 0
        third = seed_history(3, source=market, adjust=False, progress=False)
        assert third.bars_written == 0 and third.skipped == 3
    finally:
        get_settings.cache_clear()


def resampled(minute: pd.DataFrame, rule: str) -> pd.DataFrame:
    return (
        minute.set_index("ts")
        .resample(rule, origin=pd.Timestamp("2000-01-03", tz="UTC"))
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .dropna()
    )


def nvda_buy_signal(raw: pd.DataFrame) -> dict[str, object]:
    """A BUY signal on NVDA's 101st bar of `raw`, at that bar's unadjusted close."""
    return {
        "ticker": "NVDA",
        "bar_ts": raw[raw["ticker"] == "NVDA"]["ts"].iloc[100],
        "model_version": "v1",
        "action": "BUY",
        "confidence": 0.8,
        "lstm_label": "UP",
        "lstm_p_down": 0.1,
        "lstm_p_neutral": 0.1,
        "lstm_p_up": 0.8,
        "transformer_label": "UP",
        "transformer_p_down": 0.1,
        "transformer_p_neutral": 0.1,
        "transformer_p_up": 0.8,
        "close": float(raw[raw["ticker"] == "NVDA"]["close"].iloc[100]),
        "reason": "test",
    }


def adjusted_by_the_formulas(raw: pd.DataFrame, close_before: float) -> pd.DataFrame:
    """`raw` with NVDA's 4:1 split (2026-10-08) and KO's 0.46 dividend (ex 2026-10-07, the last
    close before it `close_before`) applied to the bars before them."""
    want = raw.copy()
    split = (want["ticker"] == "NVDA") & (
        want["ts"] < pd.Timestamp("2026-10-08", tz="America/New_York")
    )
    want.loc[split, ["open", "high", "low", "close"]] /= 4.0
    want.loc[split, "volume"] *= 4.0
    div = (want["ticker"] == "KO") & (
        want["ts"] < pd.Timestamp("2026-10-07", tz="America/New_York")
    )
    want.loc[div, ["open", "high", "low", "close"]] *= 1 - 0.46 / close_before
    return want


def test_a_split_and_a_dividend_on_compressed_history_adjust_every_interval(
    clean_tables: None,
) -> None:
    """A 4:1 split and a dividend applied to compressed history: nothing stored changes, the
    1-minute bars read back adjusted by the formulas, every aggregate equals resampling them,
    and signal markers sit on the adjusted scale."""
    raw = week_bars(["NVDA", "KO"])
    write_bars(raw, source="simulated")
    compress_history()
    close_before = float(
        raw[(raw["ticker"] == "KO") & (raw["ts"] < "2026-10-07 04:00Z")]["close"].iloc[-1]
    )
    actions = pd.DataFrame(
        [("NVDA", date(2026, 10, 8), "split", 4.0), ("KO", date(2026, 10, 7), "dividend", 0.46)],
        columns=ACTION_COLUMNS,
    )
    signal = nvda_buy_signal(raw)
    write_to_db(pd.DataFrame([signal]), table="signals")
    handler.record_actions(actions, "test")
    for action in handler.due_actions(date(2026, 10, 9), ["NVDA", "KO"]).itertuples():
        assert handler.apply_action(action, SimulatedMarket(seed=3))
    assert handler.due_actions(date(2026, 10, 9), ["NVDA", "KO"]).empty  # once only
    stored = stored_bars()
    pd.testing.assert_frame_equal(stored, raw[stored.columns.tolist()], check_dtype=False)

    got = read_bars(["NVDA", "KO"], raw["ts"].min(), FAR)
    want = adjusted_by_the_formulas(raw, close_before)
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-12, err_msg=col)

    start, end = raw["ts"].min(), raw["ts"].max() + pd.Timedelta(minutes=1)
    for ticker in ("NVDA", "KO"):
        minute = got[got["ticker"] == ticker]
        for interval, rule in (("5m", "5min"), ("1h", "1h"), ("1d", "24h")):
            bars = interval_bars(ticker, interval, start, end).set_index("ts")
            expected = resampled(minute, rule)
            expected.index = expected.index.as_unit(bars.index.unit)
            pd.testing.assert_frame_equal(
                bars, expected, check_freq=False, check_names=False, rtol=1e-12
            )
    marker = signal_markers("NVDA", start, end, None)
    assert marker["close"].iloc[0] == pytest.approx(signal["close"] / 4.0, rel=1e-12)


def test_late_bars_in_materialized_buckets_show_in_the_aggregates(clean_tables: None) -> None:
    """A bar written behind the aggregates' materialized range (a backfill, a correction) is
    there at once: the write re-materializes the buckets it touched."""
    raw = week_bars(["KO"])
    late = raw[raw["ts"].dt.minute == 17]
    write_bars(raw.drop(index=late.index), source="simulated")
    compress_history()
    materialize_all("bars_1h")
    write_bars(late, source="simulated")
    start, end = raw["ts"].min(), raw["ts"].max() + pd.Timedelta(minutes=1)
    got = interval_bars("KO", "1h", start, end).set_index("ts")
    expected = resampled(read_bars(["KO"], start, end), "1h")
    expected.index = expected.index.as_unit(got.index.unit)
    pd.testing.assert_frame_equal(got, expected, check_freq=False, check_names=False, rtol=1e-12)


def test_the_newest_bucket_is_visible_at_once(clean_tables: None) -> None:
    raw = week_bars(["KO"])
    write_bars(raw.iloc[:-3], source="simulated")
    materialize_all("bars_5m")
    write_bars(raw.iloc[-3:], source="simulated")  # the session's last minutes, live
    start, end = raw["ts"].min(), raw["ts"].max() + pd.Timedelta(minutes=1)
    got = interval_bars("KO", "5m", start, end)
    assert got["ts"].max() == raw["ts"].max().floor("5min")
    assert got["close"].iloc[-1] == pytest.approx(raw["close"].iloc[-1])


def test_history_written_after_the_migration_is_materialized(clean_tables: None) -> None:
    """Seeded or backfilled history is materialized by the write that stores it (the refresh
    policy only covers its last 30 days), up to the bucket holding the newest bar, which stays
    real-time; the candles equal resampling the 1-minute bars either way."""
    from db import timescale

    if has_aggregates():  # aggregates as a fresh migration leaves them: nothing materialized
        with autocommit_cursor() as cur:
            for view in timescale.AGGREGATES:
                cur.execute(f"DROP MATERIALIZED VIEW {view}")
            timescale.ensure(cur)
            assert all(timescale.watermark(cur, v) is None for v in timescale.WIDTHS)
    raw = week_bars(["KO", "AAPL"])
    write_bars(raw, source="simulated")
    start, end = raw["ts"].min(), raw["ts"].max() + pd.Timedelta(minutes=1)
    if has_aggregates():
        with autocommit_cursor() as cur:
            marks = {view: timescale.watermark(cur, view) for view in timescale.WIDTHS}
        for view, width in timescale.WIDTHS.items():
            assert marks[view] == raw["ts"].max().floor(width), view
    for interval, rule in (("5m", "5min"), ("1h", "1h"), ("1d", "24h")):
        got = interval_bars("KO", interval, start, end).set_index("ts")
        expected = resampled(read_bars(["KO"], start, end), rule)
        expected.index = expected.index.as_unit(got.index.unit)
        pd.testing.assert_frame_equal(
            got, expected, check_freq=False, check_names=False, rtol=1e-12
        )
