"""Seeding simulated history: where it ends, idempotence, the corporate actions of the window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from config.market_calendar import xnys
from config.settings import get_settings
from db.bars import read_bars
from db.reads import read_from_db
from tests.workers.price_support import stored_bars
from workers import seed_history
from workers.sources import make_source

pytestmark = pytest.mark.dates


@pytest.fixture
def demo_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UNIVERSE", "AAPL,KO,NVDA")
    monkeypatch.setenv("MARKET_SOURCE", "simulated")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_seeds_the_sessions_before_the_clock_once(clean_tables: None, demo_settings: None) -> None:
    report = seed_history.seed_history(4, adjust=False, progress=False)
    market = make_source(get_settings())
    live = xnys().minute_to_session(market.clock.start, direction="next")  # type: ignore[attr-defined]
    sessions = xnys().sessions_window(live, -5)[:-1]
    assert report.sessions == 4 and report.last == str(sessions[-1].date())
    stored = stored_bars()
    want = pd.concat(
        [market.session_bars(t, s) for t in ("AAPL", "KO", "NVDA") for s in sessions],  # type: ignore[attr-defined]
        ignore_index=True,
    ).sort_values(["ticker", "ts"], ignore_index=True)
    pd.testing.assert_frame_equal(stored, want, check_dtype=False)
    assert stored["ts"].max() < market.clock.start  # type: ignore[attr-defined]
    again = seed_history.seed_history(4, adjust=False, progress=False)
    assert again.skipped == 4 and again.bars_written == 0


def test_cli_seeds_and_applies_the_window_s_dividends(
    clean_tables: None, demo_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIVERSE", "AAPL,KO")  # both pay a dividend every 63 sessions
    get_settings.cache_clear()
    assert seed_history.main(["--days", "63"]) == 0
    market = make_source(get_settings())
    sessions = seed_history.seed_sessions(market, 63)  # type: ignore[arg-type]
    lo, hi = sessions[0].date(), sessions[-1].date()
    window = market.corporate_actions(["AAPL", "KO"], lo, hi)
    assert len(window) >= 2
    ledger = read_from_db(
        "SELECT ticker, ex_date, value, factor, applied_at FROM corporate_actions"
    )
    got = ledger[(ledger["ex_date"] >= lo) & (ledger["ex_date"] <= hi)]
    assert set(zip(got["ticker"], got["ex_date"], strict=True)) == set(
        zip(window["ticker"], window["ex_date"], strict=True)
    )
    assert ledger["applied_at"].notna().all()
    far = pd.Timestamp("2262-01-01", tz="UTC")
    stored = read_bars(["AAPL", "KO"], pd.Timestamp("2000-01-01", tz="UTC"), far)  # adjusted
    action = got.iloc[0]
    ex = pd.Timestamp(action["ex_date"]).tz_localize("America/New_York")
    session_before = xnys().sessions_window(pd.Timestamp(action["ex_date"]), -2)[0]
    raw = market.session_bars(action["ticker"], session_before)  # type: ignore[attr-defined]
    mine = stored[(stored["ticker"] == action["ticker"]) & (stored["ts"] < ex)]
    last = mine[mine["ts"] >= raw["ts"].min()]
    assert len(last) == len(raw)
    assert last["close"].to_numpy() == pytest.approx(raw["close"].to_numpy() * action["factor"])
    assert stored_bars()["close"].sum() != pytest.approx(stored["close"].sum())  # stored raw
    assert 0.99 < action["factor"] < 1.0  # 1 - D / previous close
