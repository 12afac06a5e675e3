"""Corporate actions: the adjustment formulas, idempotence, a crash halfway, and late bars on
the adjusted scale. Bars are stored raw (the table is never rewritten: its checksum holds) and
every read adjusts them (`db.bars.read_bars`)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest

from db.bar_rule import BAR_COLUMNS
from db.bars import read_bars
from db.reads import read_from_db
from tests.workers.price_support import stored_bars
from workers import corporate_action_handler as handler
from workers.backfill import drain_queue
from workers.bar_store import write_bars
from workers.sources.base import ACTION_COLUMNS, MarketDataSource, empty_bars

SESSIONS = ["2024-06-05", "2024-06-06", "2024-06-07", "2024-06-10"]
TODAY = date(2024, 6, 11)  # before Tuesday's open
TICKERS = ["SPL", "DIV", "BOTH", "NONE"]
ACTIONS = [
    ("SPL", date(2024, 6, 10), "split", 4.0),
    ("DIV", date(2024, 6, 10), "dividend", 0.5),
    ("BOTH", date(2024, 6, 7), "dividend", 1.0),
    ("BOTH", date(2024, 6, 11), "split", 2.0),
    ("DIV", date(2024, 7, 9), "dividend", 0.5),  # upcoming: recorded, not applied
]


def raw_bars(minutes: tuple[str, ...] = ("13:30", "13:31", "19:59")) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for i, ticker in enumerate(TICKERS):
        for day in SESSIONS:
            for hhmm in minutes:
                close = round(50.0 + 10 * i + rng.normal(0, 1), 2)
                rows.append(
                    (
                        ticker,
                        pd.Timestamp(f"{day} {hhmm}", tz="UTC"),
                        close - 0.1,
                        close + 0.3,
                        close - 0.4,
                        close,
                        float(rng.integers(100, 10_000)),
                    )
                )
    frame = pd.DataFrame(rows, columns=BAR_COLUMNS)
    frame["ts"] = frame["ts"].dt.as_unit("ns")
    return frame


class StubSource(MarketDataSource):
    name = "stub"

    def __init__(self, bars: pd.DataFrame, actions: list[tuple[object, ...]]) -> None:
        self.bars = bars
        self.actions = pd.DataFrame(actions, columns=ACTION_COLUMNS)

    def now(self) -> pd.Timestamp:
        return pd.Timestamp("2024-06-11 12:00", tz="UTC")

    def latest_bars(self, tickers, now, since=None):  # type: ignore[no-untyped-def]
        return empty_bars()

    def history(self, tickers, start, end):  # type: ignore[no-untyped-def]
        b = self.bars
        return b[b["ticker"].isin(tickers) & (b["ts"] >= start) & (b["ts"] < end)]

    def corporate_actions(self, tickers, start, end):  # type: ignore[no-untyped-def]
        a = self.actions
        return a[a["ticker"].isin(tickers) & (a["ex_date"] >= start) & (a["ex_date"] <= end)]


def checksum() -> str:
    """md5 over every row of bars_1m in key order (full float text of each value)."""
    return str(
        read_from_db(
            "SELECT md5(string_agg(concat_ws(:comma, ticker, ts, open, high, low, close, volume), "
            ":semi ORDER BY ticker, ts)) AS h FROM bars_1m",
            {"comma": ",", "semi": ";"},
        )["h"].iloc[0]
    )


def expected_after(raw: pd.DataFrame) -> pd.DataFrame:
    """The formulas, applied by hand in ex-date order."""
    out = raw.copy()
    prices = ["open", "high", "low", "close"]

    def before(ticker: str, day: str) -> pd.Series:
        return (out["ticker"] == ticker) & (out["ts"] < pd.Timestamp(day, tz="America/New_York"))

    def prev_close(ticker: str, day: str) -> float:
        return float(raw[before(ticker, day) & (raw["ticker"] == ticker)]["close"].iloc[-1])

    for ticker, day, kind, value in sorted(ACTIONS[:4], key=lambda a: a[1]):
        mask = before(ticker, str(day))
        if kind == "split":
            out.loc[mask, prices] = out.loc[mask, prices] * (1.0 / value)
            out.loc[mask, "volume"] = out.loc[mask, "volume"] * value
        else:
            out.loc[mask, prices] = out.loc[mask, prices] * (
                1.0 - value / prev_close(ticker, str(day))
            )
    return out.sort_values(["ticker", "ts"], ignore_index=True)


def adjusted() -> pd.DataFrame:
    """Every stored bar as every reader gets it: adjusted for the applied actions."""
    far = pd.Timestamp("2262-01-01", tz="UTC")
    return read_bars(TICKERS, pd.Timestamp("2000-01-01", tz="UTC"), far)


def assert_close_frames(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal keys; prices and volumes equal to 1e-12 relative (factors multiply in SQL)."""
    got, want = got.reset_index(drop=True), want.reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["ticker", "ts"]], want[["ticker", "ts"]])
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-12, err_msg=col)


def test_split_and_dividend_adjust_history_by_the_formulas_once(clean_tables: None) -> None:
    raw = raw_bars()
    write_bars(raw, source="stub")
    source = StubSource(raw, ACTIONS)
    stored = checksum()
    report = handler.run_daily_adjustment(source, tickers=TICKERS, today=TODAY)
    assert len(report.applied) == 4 and report.detected == 5 and not report.waiting
    once = adjusted()
    assert_close_frames(once, expected_after(raw))
    assert checksum() == stored  # nothing stored is rewritten: prices are adjusted when read
    again = handler.run_daily_adjustment(source, tickers=TICKERS, today=TODAY)
    assert again.applied == [] and again.detected == 0
    pd.testing.assert_frame_equal(adjusted(), once)  # twice applied equals once
    ledger = read_from_db("SELECT ticker, ex_date, factor, applied_at FROM corporate_actions")
    upcoming = ledger[ledger["ex_date"] == date(2024, 7, 9)]
    assert upcoming["applied_at"].isna().all() and ledger["applied_at"].notna().sum() == 4
    spl = ledger[ledger["ticker"] == "SPL"]["factor"].iloc[0]
    assert spl == 0.25


def test_a_dividend_found_after_a_later_split_uses_the_raw_close(clean_tables: None) -> None:
    raw = raw_bars()
    write_bars(raw, source="stub")
    only_split = StubSource(raw, [a for a in ACTIONS if a[0] == "BOTH" and a[2] == "split"])
    handler.run_daily_adjustment(only_split, tickers=["BOTH"], today=TODAY)
    handler.run_daily_adjustment(StubSource(raw, ACTIONS), tickers=["BOTH"], today=TODAY)
    got = adjusted()
    want = expected_after(raw)
    both = got["ticker"] == "BOTH"
    np.testing.assert_allclose(
        got.loc[both, "close"], want.loc[want["ticker"] == "BOTH", "close"], rtol=1e-12
    )


def test_a_crash_halfway_applies_nothing_and_the_rerun_applies_once(clean_tables: None) -> None:
    raw = raw_bars()
    write_bars(raw, source="stub")
    handler.record_actions(pd.DataFrame([ACTIONS[0]], columns=ACTION_COLUMNS), "stub")
    before = adjusted()
    script = (
        "import os, signal\n"
        "from datetime import date\n"
        "from types import SimpleNamespace\n"
        "from workers import corporate_action_handler as h\n"
        "mark = h._mark_applied\n"
        "def crash(*args, **kwargs):\n"
        "    mark(*args, **kwargs)  # the ledger row is stamped, the transaction not committed\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "h._mark_applied = crash\n"
        "h.apply_action(SimpleNamespace(ticker='SPL', ex_date=date(2024, 6, 10),\n"
        "               action_type='split', value=4.0), source=None)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": "."}, timeout=120
    )
    assert proc.returncode == -9  # killed inside the transaction that applies the split
    pd.testing.assert_frame_equal(adjusted(), before)
    assert read_from_db("SELECT applied_at FROM corporate_actions")["applied_at"].isna().all()
    report = handler.run_daily_adjustment(
        StubSource(raw, [ACTIONS[0]]), tickers=["SPL"], today=TODAY
    )
    assert report.applied == ["SPL split 4 ex 2024-06-10"]
    spl = adjusted().query("ticker == 'SPL'").reset_index(drop=True)
    raw_spl = raw[raw["ticker"] == "SPL"].reset_index(drop=True)
    old = spl["ts"] < pd.Timestamp("2024-06-10", tz="America/New_York")
    np.testing.assert_allclose(spl.loc[old, "close"], raw_spl.loc[old, "close"] * 0.25, rtol=1e-12)
    np.testing.assert_array_equal(spl.loc[~old, "close"], raw_spl.loc[~old, "close"])


def test_bars_arriving_late_land_on_the_adjusted_scale(clean_tables: None) -> None:
    full = raw_bars()
    minute = full["ts"].dt.strftime("%H:%M")
    write_bars(full[minute != "13:31"], source="stub")  # 13:31 arrives after the adjustment
    source = StubSource(full, ACTIONS)
    handler.run_daily_adjustment(source, tickers=TICKERS, today=TODAY)
    late = full[minute == "13:31"]
    write_bars(late[late["ticker"] != "DIV"], source="stub")  # e.g. a replayed batch
    gap = pd.DataFrame(
        {"ticker": ["DIV"] * 4, "gap_start": late[late["ticker"] == "DIV"]["ts"].to_list()}
    ).assign(gap_end=lambda d: d["gap_start"])
    write_bars(empty_bars(), source="stub", gaps=gap)
    report = drain_queue(source)  # and the backfill path
    assert report.filled == 4
    pd.testing.assert_frame_equal(
        stored_bars(), full.sort_values(["ticker", "ts"], ignore_index=True), check_dtype=False
    )  # stored raw
    # the dividend factor came from the close stored at the time (19:59 of the day before)
    assert_close_frames(adjusted(), expected_after(full))


def ledger() -> pd.DataFrame:
    return read_from_db(
        "SELECT ticker, ex_date, action_type, value, factor, applied_at FROM corporate_actions "
        "ORDER BY ticker, ex_date, action_type"
    )


@pytest.mark.parametrize(
    "action, logged",
    [
        (("SPL", date(2024, 6, 10), "split", 1e6), "SPL split ratio 1000000.0 on 2024-06-10 is"),
        (("SPL", date(2024, 6, 10), "split", 0.001), "SPL split ratio 0.001 on 2024-06-10 is"),
        (("DIV", date(2024, 6, 10), "dividend", 500.0), "DIV dividend 500.0 on 2024-06-10 gives"),
    ],
)
def test_an_implausible_action_is_recorded_and_waits_unapplied(
    clean_tables: None, caplog: pytest.LogCaptureFixture, action: tuple[object, ...], logged: str
) -> None:
    raw = raw_bars()
    write_bars(raw, source="stub")
    before = adjusted()
    with caplog.at_level("ERROR", logger=handler.__name__):
        report = handler.run_daily_adjustment(StubSource(raw, [action]), TICKERS, today=TODAY)
    assert report.detected == 1 and report.applied == []
    assert report.waiting == [f"{action[0]} {action[2]} {action[3]:g} ex {action[1]}"]
    assert f"waiting 1: {report.waiting[0]}" in str(report)
    assert logged in caplog.text and "recorded, not applied" in caplog.text
    pd.testing.assert_frame_equal(adjusted(), before)  # prices read back unchanged
    row = ledger().iloc[0]
    assert row["value"] == action[3] and pd.isna(row["applied_at"]) and pd.isna(row["factor"])
    again = handler.run_daily_adjustment(StubSource(raw, [action]), TICKERS, today=TODAY)
    assert again.waiting == report.waiting  # still waiting, logged again on every run


@pytest.mark.parametrize("value", [0.0, -4.0, float("inf"), float("nan")])
def test_a_value_the_ledger_cannot_hold_is_logged_and_not_recorded(
    clean_tables: None, caplog: pytest.LogCaptureFixture, value: float
) -> None:
    actions = [("SPL", date(2024, 6, 10), "split", value), ACTIONS[1]]
    with caplog.at_level("ERROR", logger=handler.__name__):
        changes = handler.record_actions(pd.DataFrame(actions, columns=ACTION_COLUMNS), "stub")
    assert changes.new == 1 and ledger()["ticker"].tolist() == ["DIV"]
    assert f"SPL split on 2024-06-10: value {value!r} is not a finite positive number" in (
        caplog.text
    )


def test_a_corrected_value_replaces_the_first_until_it_is_applied(
    clean_tables: None, caplog: pytest.LogCaptureFixture
) -> None:
    raw = raw_bars()
    write_bars(raw, source="stub")
    wrong = StubSource(raw, [("SPL", date(2024, 6, 10), "split", 1e6)])
    assert handler.run_daily_adjustment(wrong, ["SPL"], today=TODAY).waiting
    fixed = StubSource(raw, [ACTIONS[0]])  # the source corrects the ratio to 4
    with caplog.at_level("WARNING", logger=handler.__name__):
        report = handler.run_daily_adjustment(fixed, ["SPL"], today=TODAY)
    assert (report.detected, report.corrected) == (0, 1)
    assert report.applied == ["SPL split 4 ex 2024-06-10"] and report.waiting == []
    assert "SPL split ex 2024-06-10: corrected value 4 from stub replaces 1e+06" in caplog.text
    row = ledger().iloc[0]
    assert (row["value"], row["factor"]) == (4.0, 0.25) and pd.notna(row["applied_at"])
    want = expected_after(raw)
    spl = adjusted()["ticker"] == "SPL"
    np.testing.assert_allclose(
        adjusted().loc[spl, "close"], want.loc[want["ticker"] == "SPL", "close"], rtol=1e-12
    )
    # once applied, a further different value changes nothing and is logged for review
    caplog.clear()
    with caplog.at_level("WARNING", logger=handler.__name__):
        late = handler.run_daily_adjustment(
            StubSource(raw, [("SPL", date(2024, 6, 10), "split", 2.0)]), ["SPL"], today=TODAY
        )
    assert (late.detected, late.corrected, late.applied) == (0, 0, [])
    assert "SPL split ex 2024-06-10: stub now gives 2, but 4 is applied already" in caplog.text
    assert (ledger().iloc[0]["value"], ledger().iloc[0]["factor"]) == (4.0, 0.25)
    np.testing.assert_allclose(
        adjusted().loc[spl, "close"], want.loc[want["ticker"] == "SPL", "close"], rtol=1e-12
    )


def test_the_same_value_served_again_is_no_correction(clean_tables: None) -> None:
    upcoming = [ACTIONS[4]]
    first = handler.record_actions(pd.DataFrame(upcoming, columns=ACTION_COLUMNS), "stub")
    again = handler.record_actions(pd.DataFrame(upcoming, columns=ACTION_COLUMNS), "stub")
    assert (first.new, first.corrected, again.new, again.corrected) == (1, 0, 0, 0)


@pytest.mark.parametrize("argv", [["--help"]])
def test_cli_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        handler.main(argv)
    assert info.value.code == 0 and "--lookback-days" in capsys.readouterr().out
