"""The data-quality guard on the one bar write path (`workers.bar_store.write_bars`).

Three sessions of four simulated tickers are seeded as one batch, then a fourth is written minute
by minute as the live poller writes, with bad prints planted: each bad one ends in
`quarantined_bars` with its reason and raw values, never in `bars_1m` (so no read of prices,
candles included, sees it), and its minute is queued for the backfill, which stores the corrected
print when the source serves one. A news jump that holds and a split in the ledger pass; a split
nobody recorded holds its ticker until an analyst decides.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

import workers.bar_store
from config.market_calendar import session_minutes, sessions_between
from db import quality, quality_decisions
from db.bar_rule import BAR_COLUMNS
from db.bars import interval_bars, read_bars
from db.connections import connect
from db.reads import read_from_db
from workers.backfill import drain_queue
from workers.bar_store import write_bars
from workers.guard_tail import GuardTail
from workers.sources.base import MarketDataSource
from workers.sources.simulated import SimulatedMarket

pytestmark = pytest.mark.usefixtures("clean_tables")

SESSIONS = sessions_between("2024-06-03", "2024-06-06")
TICKERS = ["AAPL", "MSFT", "KO", "NVDA"]
PRICES = ["open", "high", "low", "close"]
LIVE = SESSIONS[-1]
F = 200  # the minute of the live session where the faults start


class Corrected(MarketDataSource):
    """The source a while later: it serves the good prints of every minute."""

    name = "simulated"

    def __init__(self, bars: pd.DataFrame) -> None:
        self.bars = bars

    def latest_bars(
        self, tickers: list[str], now: pd.Timestamp, since: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        raise NotImplementedError

    def history(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        b = self.bars
        return b[b["ticker"].isin(tickers) & (b["ts"] >= start) & (b["ts"] < end)]

    def corporate_actions(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        raise NotImplementedError

    def now(self) -> pd.Timestamp:
        return pd.Timestamp("2030-01-01", tz="UTC")


def market_bars() -> pd.DataFrame:
    market = SimulatedMarket(seed=5, events_per_session=0.0, missing_rate=0.0)
    frames = [market.session_bars(t, s) for t in TICKERS for s in SESSIONS]
    return pd.concat(frames, ignore_index=True)[BAR_COLUMNS]


def at(bars: pd.DataFrame, ticker: str, minute: int) -> int:
    ts = session_minutes(LIVE)[minute]
    return int(bars.index[(bars["ticker"] == ticker) & (bars["ts"] == ts)][0])


def plant(bars: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, str]]:
    """Bad prints on AAPL, a jump that holds on MSFT, an unrecorded 2:1 split on KO and a
    recorded 4:1 split on NVDA (its whole live session at a quarter of the price)."""
    bad = bars.copy()
    want = {}
    i = at(bad, "AAPL", F)
    bad.loc[i, PRICES] *= 100.0
    want[i] = "unit_error"
    i = at(bad, "AAPL", F + 20)
    bad.loc[i, PRICES] *= 0.01
    want[i] = "unit_error"
    i = at(bad, "AAPL", F + 40)
    bad.loc[i, "high"] *= 1.5
    want[i] = "spike"
    i = at(bad, "AAPL", F + 60)
    bad.loc[i, PRICES] *= 1.08  # and the next bar is back: a close spike
    want[i] = "spike"
    i = at(bad, "AAPL", F + 80)
    bad.loc[i, [*PRICES, "volume"]] = 0.0
    want[i] = "zero_or_negative"
    i = at(bad, "AAPL", F + 100)
    bad.loc[i, "close"] = bad.loc[i, "high"] * 1.01
    want[i] = "ohlc_inconsistent"
    i = at(bad, "AAPL", F + 120)
    for k in range(1, 20):  # 20 identical bars: the 15th and later are stale
        bad.loc[i + k, [*PRICES, "volume"]] = bad.loc[i, [*PRICES, "volume"]].to_numpy()
        if k >= 14:
            want[i + k] = "stale"
    j = at(bad, "MSFT", F)
    bad.loc[j:, PRICES] = bad.loc[j:, PRICES].where(bad.loc[j:, "ticker"] != "MSFT") * 1.0
    msft = (bad["ticker"] == "MSFT") & (bad.index >= j)
    bad.loc[msft, PRICES] = bars.loc[msft, PRICES] * 1.06  # news: +6% and it holds
    ko = (bad["ticker"] == "KO") & (bad.index >= at(bad, "KO", F))
    bad.loc[ko, PRICES] = bars.loc[ko, PRICES] * 0.5
    nvda = (bad["ticker"] == "NVDA") & (bad["ts"] >= session_minutes(LIVE)[0])
    bad.loc[nvda, PRICES] = bars.loc[nvda, PRICES] / 4
    bad.loc[nvda, "volume"] = bars.loc[nvda, "volume"] * 4
    return bad, want


def stored(ticker: str) -> pd.DataFrame:
    frame = read_from_db(
        "SELECT ts, open, high, low, close, volume FROM bars_1m WHERE ticker = :t ORDER BY ts",
        {"t": ticker},
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def write_live(bad: pd.DataFrame) -> None:
    """The sessions as batches (seeding, the backfill), the faulty stretch of the live one a
    minute at a time (the live poller)."""
    minutes = session_minutes(LIVE)
    polled = (bad["ts"] >= minutes[F - 5]) & (bad["ts"] <= minutes[F + 150])
    write_bars(bad[bad["ts"] < minutes[F - 5]], source="simulated")
    tail = GuardTail()  # as the price ingestor keeps it
    for _, poll in bad[polled].groupby("ts"):
        write_bars(poll, source="simulated", tail=tail)
    write_bars(bad[bad["ts"] > minutes[F + 150]], source="simulated")


@pytest.fixture
def guarded() -> tuple[pd.DataFrame, pd.DataFrame, dict[int, str]]:
    bars = market_bars()
    bad, want = plant(bars)
    with connect() as conn:
        conn.execute(
            text(
                "INSERT INTO corporate_actions (ticker, ex_date, action_type, value, source) "
                "VALUES ('NVDA', :d, 'split', 4, 'simulated')"
            ),
            {"d": LIVE.date()},
        )
    write_live(bad)
    return bars, bad, want


def test_each_bad_print_is_quarantined_and_no_read_of_prices_sees_it(guarded) -> None:  # type: ignore[no-untyped-def]
    bars, bad, want = guarded
    q = quality.quarantined(statuses=(quality.QUARANTINED, quality.PENDING))
    q["ts"] = pd.to_datetime(q["ts"], utc=True)
    got = {(t, ts): r for t, ts, r in zip(q["ticker"], q["ts"], q["reason"], strict=True)}
    expected = {(bad.loc[i, "ticker"], bad.loc[i, "ts"]): r for i, r in want.items()}
    assert got == expected  # nothing else: the jump that holds and the split in the ledger pass
    assert set(q["status"]) == {quality.QUARANTINED}  # the close spike waited, then was judged
    raw = q.set_index("ts").loc[bad.loc[at(bad, "AAPL", F), "ts"]]
    assert raw["close"] == pytest.approx(bad.loc[at(bad, "AAPL", F), "close"])
    assert raw["source"] == "simulated" and "100x" in raw["detail"].replace("0.0x", "x")

    aapl = stored("AAPL")
    assert not aapl["ts"].isin(q["ts"]).any()
    assert len(aapl) == (bad["ticker"] == "AAPL").sum() - len(want)
    assert len(stored("MSFT")) == len(stored("NVDA")) == len(SESSIONS) * 390  # all passed
    events = read_from_db("SELECT kind, payload FROM alert_events ORDER BY id")  # the outbox
    assert events["kind"].value_counts().to_dict() == {
        "quarantined_bar": len(want),
        "held_ticker": 1,
    }
    held = events[events["kind"] == "held_ticker"]["payload"].iloc[0]
    assert held["ticker"] == "KO" and "ledger has nothing" in held["reason"]

    # no read of prices sees a quarantined bar
    day = session_minutes(LIVE)
    start, end = day[0], day[-1] + pd.Timedelta(minutes=1)
    good = bars[(bars["ticker"] == "AAPL") & (bars["ts"] >= start)]
    level = good["close"].median()
    features_view = read_bars(["AAPL"], start, end)  # what features, training and scoring read
    assert features_view["high"].max() < 1.1 * good["high"].max()
    assert features_view["low"].min() > 0.9 * good["low"].min()
    for interval in ("1m", "5m"):  # the charts' candles
        candles = interval_bars("AAPL", interval, start, end)
        assert candles["high"].max() < 1.1 * good["high"].max(), interval
        assert candles["close"].between(0.9 * level, 1.1 * level).all(), interval


def test_quarantined_minutes_are_retried_and_a_corrected_print_is_stored(guarded) -> None:  # type: ignore[no-untyped-def]
    bars, bad, want = guarded
    queued = read_from_db(
        "SELECT ticker, gap_start FROM backfill_queue WHERE status = 'pending' ORDER BY gap_start"
    )
    minutes = sorted(bad.loc[i, "ts"] for i in want)
    assert sorted(pd.to_datetime(queued["gap_start"], utc=True)) == minutes
    report = drain_queue(Corrected(bars))
    assert report.filled == len(minutes)
    aapl = stored("AAPL").set_index("ts")
    good = bars[bars["ticker"] == "AAPL"].set_index("ts")
    np.testing.assert_allclose(aapl.loc[minutes, PRICES], good.loc[minutes, PRICES])
    q = quality.quarantined(statuses=(quality.REPLACED,))
    assert len(q) == len(want)
    assert quality.quarantined().empty  # nothing open any more


def test_an_unrecorded_split_holds_its_ticker_until_an_analyst_decides(guarded) -> None:  # type: ignore[no-untyped-def]
    _, bad, _ = guarded
    holds = quality.held_tickers()
    assert holds["ticker"].tolist() == ["KO"]
    assert holds["onset_ts"].iloc[0] == bad.loc[at(bad, "KO", F), "ts"]
    assert "ledger has nothing" in holds["detail"].iloc[0]
    assert len(stored("KO")) == len(SESSIONS) * 390  # the bars stay: later ones build on them
    with pytest.raises(quality_decisions.DecisionError, match="say why"):
        quality_decisions.decide_hold(int(holds["id"].iloc[0]), "accepted", "analyst:ann", "")
    said = quality_decisions.decide_hold(
        int(holds["id"].iloc[0]), "rejected", "analyst:ann", "the source halved its history"
    )
    assert "KO rejected by analyst:ann" in said and "moved to quarantine" in said
    assert quality.held_tickers().empty
    assert len(stored("KO")) == len(SESSIONS) * 390 - (390 - F)
    history = quality.hold_history()
    assert history["decided_by"].tolist() == ["analyst:ann"]
    assert history["decision_reason"].tolist() == ["the source halved its history"]
    with pytest.raises(quality_decisions.DecisionError, match="already"):
        quality_decisions.decide_hold(
            int(holds["id"].iloc[0]), "accepted", "analyst:bob", "changed mind"
        )


def test_the_pollers_tail_stands_in_for_the_stored_bars_until_another_write_comes_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bars = market_bars()
    minutes = session_minutes(LIVE)
    write_bars(bars[bars["ts"] < minutes[F]], source="simulated")
    reads: list[int] = []
    real = workers.bar_store.read_raw_neighbours

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(workers.bar_store, "read_raw_neighbours", counted)
    tail = GuardTail()

    def poll(minute: int) -> int:
        before = len(reads)
        write_bars(bars[bars["ts"] == minutes[minute]], source="simulated", tail=tail)
        return len(reads) - before

    assert [poll(F + k) for k in range(4)] == [1, 0, 0, 0]  # read once, then the tail
    kept = tail.ts[tail.index["AAPL"]]
    stored = stored_times("AAPL")[-tail.depth :]
    assert (pd.to_datetime(kept, utc=True) == stored).all()  # the tail is the stored bars

    write_bars(bars[bars["ts"] == minutes[F - 50]], source="simulated")  # another writer
    assert [poll(F + 4), poll(F + 5)] == [1, 0]  # noticed: read again, then the tail again

    spiked = bars[bars["ts"] == minutes[F + 6]].copy()
    spiked.loc[spiked["ticker"] == "MSFT", PRICES] *= 100.0
    write_bars(spiked, source="simulated", tail=tail)  # judged on the tail: caught
    assert quality.quarantined()["ticker"].tolist() == ["MSFT"]
    assert poll(F + 7) == 1  # after a flag the tail is rebuilt from the database


def stored_times(ticker: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(stored(ticker)["ts"], utc=True))
