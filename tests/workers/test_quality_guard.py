"""The data-quality guard's detection core (`workers.quality_guard.check_bars`).

Bad prints of the shapes Yahoo's minute data is known for, planted on simulated bars: each is
flagged with its reason, the same way whether the bars come as one batch or one live poll at a
time, and the good shapes (a news jump that holds, a split or dividend in the ledger, overnight
gaps) pass. Then the false alarms over 25 sessions x 20 tickers of the simulated market (its
news jumps, gaps, splits and dividends), a session per call, and one session polled minute by
minute as the live poller writes, with the same verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
import pytest

from config.market_calendar import session_minutes, sessions_between
from config.settings import DEFAULT_UNIVERSE
from workers.guard_rules import GuardParams
from workers.quality_guard import (
    LEVEL_SHIFT,
    OHLC_INCONSISTENT,
    QUARANTINE_REASONS,
    REASONS,
    SPIKE,
    STALE,
    UNIT_ERROR,
    ZERO_OR_NEGATIVE,
    check_bars,
)
from workers.sources.base import ACTION_COLUMNS
from workers.sources.simulated import SimulatedMarket

pytestmark = pytest.mark.no_db

PARAMS = GuardParams()
TICKER = "AAPL"
SESSIONS = sessions_between("2024-06-03", "2024-06-07")  # the faults go into the 4th one
FAULT = 200  # minute of the 4th session where a fault starts
PRICES = ["open", "high", "low", "close"]
Fault = Callable[[pd.DataFrame, int], tuple[pd.DataFrame, pd.DataFrame | None]]


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    """Five sessions of one simulated ticker, without news jumps (added where a test wants)."""
    market = SimulatedMarket(seed=5, events_per_session=0.0, missing_rate=0.0)
    return pd.concat([market.session_bars(TICKER, s) for s in SESSIONS], ignore_index=True)


def first_bar(bars: pd.DataFrame, session: pd.Timestamp) -> int:
    return int(np.searchsorted(bars["ts"], session_minutes(session)[0]))


def no_actions() -> pd.DataFrame:
    return pd.DataFrame(columns=ACTION_COLUMNS)


def found(flags: pd.DataFrame) -> set[tuple[pd.Timestamp, str]]:
    return {
        (pd.Timestamp(ts), str(reason)) for ts, reason in zip(flags.ts, flags.reason, strict=True)
    }


def as_batch(bars: pd.DataFrame, actions: pd.DataFrame | None, split: int) -> pd.DataFrame:
    """The bars from row `split` on written at once (a backfill), the rest stored before."""
    return check_bars(bars.iloc[split:], bars.iloc[:split], actions, PARAMS)


def as_polls(bars: pd.DataFrame, actions: pd.DataFrame | None, rows: range) -> pd.DataFrame:
    """Each bar of `rows` written alone (a live poll) on the stored bars before it; a flagged
    bar is quarantined, so it is not among the stored bars of the next polls."""
    frames: list[pd.DataFrame] = []
    stored = bars.iloc[: rows.start]
    for i in rows:
        history = stored.iloc[-PARAMS.history_bars :]
        frames.append(check_bars(bars.iloc[i : i + 1], history, actions, PARAMS))
        stored = pd.concat([stored, bars.iloc[i : i + 1]])
        bad = frames[-1].loc[frames[-1]["reason"].isin(QUARANTINE_REASONS), "ts"]
        stored = stored[~stored["ts"].isin(bad)]
    return pd.concat(frames, ignore_index=True)


def judged_both_ways(
    bars: pd.DataFrame, actions: pd.DataFrame | None, at: int
) -> set[tuple[pd.Timestamp, str]]:
    """The flags of the faulty stretch, asserting the batch and the live path agree."""
    batch = as_batch(bars, actions, first_bar(bars, SESSIONS[2]))
    live = as_polls(bars, actions, range(at - 30, at + 45))
    assert found(batch) == found(live)
    assert set(batch["reason"]) <= set(REASONS)
    return found(batch)


# --------------------------------------------------------------------------- the faults
def scaled_bar(factor: float) -> Fault:
    def plant(bars: pd.DataFrame, at: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        bars.loc[at, PRICES] *= factor
        return bars, None

    return plant


def high_only(bars: pd.DataFrame, at: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    bars.loc[at, "high"] *= 1.5
    return bars, None


def zeroed(bars: pd.DataFrame, at: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    bars.loc[at, [*PRICES, "volume"]] = 0.0
    return bars, None


def close_above_high(bars: pd.DataFrame, at: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    bars.loc[at, "close"] = bars.loc[at, "high"] * 1.01
    return bars, None


def split_applied_late(bars: pd.DataFrame, at: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """From a minute on, the source serves its history halved: a 2:1 split nobody recorded."""
    bars.loc[at:, PRICES] *= 0.5
    return bars, no_actions()


SINGLE_BAR_FAULTS = {
    "100x bar": (scaled_bar(100.0), UNIT_ERROR),
    "0.01x bar": (scaled_bar(0.01), UNIT_ERROR),
    "high-only spike (1.5x)": (high_only, SPIKE),
    "a bar 8% off that reverts": (scaled_bar(1.08), SPIKE),
    "a bar 8% low that reverts": (scaled_bar(0.92), SPIKE),
    "zeroed bar": (zeroed, ZERO_OR_NEGATIVE),
    "close outside low-high": (close_above_high, OHLC_INCONSISTENT),
    "split applied late (0.5x, no ledger row)": (split_applied_late, LEVEL_SHIFT),
}


@pytest.mark.parametrize("name", list(SINGLE_BAR_FAULTS))
def test_each_bad_print_is_flagged_once_with_its_reason(clean: pd.DataFrame, name: str) -> None:
    plant, reason = SINGLE_BAR_FAULTS[name]
    at = first_bar(clean, SESSIONS[3]) + FAULT
    bars, actions = plant(clean.copy(), at)
    assert judged_both_ways(bars, actions, at) == {(bars.loc[at, "ts"], reason)}


def test_the_detail_says_what_is_wrong(clean: pd.DataFrame) -> None:
    at = first_bar(clean, SESSIONS[3]) + FAULT
    bars, _ = scaled_bar(100.0)(clean.copy(), at)
    detail = as_batch(bars, None, at)["detail"].iloc[0]
    assert detail.startswith(f"close {bars.loc[at, 'close']:g} is ")
    assert "x the median" in detail and "of the previous 30 bars" in detail
    bars, _ = high_only(clean.copy(), at)
    assert "high" in as_batch(bars, None, at)["detail"].iloc[0]
    bars, _ = split_applied_late(clean.copy(), at)
    flags = as_polls(bars, None, range(at, at + PARAMS.shift_bars))
    assert flags["in_history"].tolist() == [True]  # judged when the 15th bar of it came
    assert "level moved 0.501x" in flags["detail"].iloc[0]
    assert (
        "the corporate-action ledger has nothing for AAPL on 2024-06-06" in flags["detail"].iloc[0]
    )


def test_a_run_of_100x_bars_is_flagged_to_its_end(clean: pd.DataFrame) -> None:
    at = first_bar(clean, SESSIONS[3]) + FAULT
    bars = clean.copy()
    bars.loc[at : at + 39, PRICES] *= 100.0  # longer than the 30-bar reference window
    expected = {(ts, UNIT_ERROR) for ts in bars.loc[at : at + 39, "ts"]}
    assert judged_both_ways(bars, None, at) == expected


def test_tickers_mixed_and_shuffled_are_judged_apart(clean: pd.DataFrame) -> None:
    at = first_bar(clean, SESSIONS[3]) + FAULT
    spiked, _ = high_only(clean.copy(), at)
    other = SimulatedMarket(seed=6).history(["KO"], clean["ts"].iloc[0], clean["ts"].iloc[-1])
    other.loc[len(other) - 100, "low"] = 0.0
    bars = pd.concat([spiked, other], ignore_index=True)
    stored = bars["ts"] < clean["ts"].iloc[at - 5]
    new = bars[~stored].sample(frac=1.0, random_state=3)
    flags = check_bars(new, bars[stored].sample(frac=1.0, random_state=4), None, PARAMS)
    assert list(zip(flags.ticker, flags.reason, strict=True)) == [
        (TICKER, SPIKE),
        ("KO", ZERO_OR_NEGATIVE),
    ]
    resent = check_bars(spiked.iloc[at - 1 : at + 1], spiked.iloc[: at - 1], None, PARAMS)
    assert found(resent) == {(spiked.loc[at, "ts"], SPIKE)}  # a re-sent stored bar is no dup


def test_a_stale_run_is_flagged_from_its_15th_bar(clean: pd.DataFrame) -> None:
    at = first_bar(clean, SESSIONS[3]) + FAULT
    bars = clean.copy()
    bars.loc[at + 1 : at + 19, [*PRICES, "volume"]] = bars.loc[at, [*PRICES, "volume"]].to_numpy()
    expected = {(ts, STALE) for ts in bars.loc[at + 14 : at + 19, "ts"]}
    assert judged_both_ways(bars, None, at) == expected


def test_a_late_split_across_the_night_is_a_level_shift_not_a_spike(clean: pd.DataFrame) -> None:
    at = first_bar(clean, SESSIONS[3])
    bars, actions = split_applied_late(clean.copy(), at)
    assert judged_both_ways(bars, actions, at) == {(bars.loc[at, "ts"], LEVEL_SHIFT)}


def split_at_open(bars: pd.DataFrame, ratio: float) -> tuple[pd.DataFrame, int]:
    """The raw prices of a `ratio`:1 split effective at the 4th session's open."""
    at = first_bar(bars, SESSIONS[3])
    bars.loc[at:, PRICES] /= ratio
    bars.loc[at:, "volume"] *= ratio
    return bars, at


def ledger(kind: str, value: float, day: pd.Timestamp = SESSIONS[3]) -> pd.DataFrame:
    return pd.DataFrame([(TICKER, day.date(), kind, value)], columns=ACTION_COLUMNS)


def test_a_split_in_the_ledger_passes_raw_or_already_adjusted(clean: pd.DataFrame) -> None:
    bars, at = split_at_open(clean.copy(), 4.0)
    assert judged_both_ways(bars, ledger("split", 4.0), at) == set()
    adjusted = clean.copy()  # history read through the applied action: no jump at all
    adjusted[PRICES] /= 4.0
    assert judged_both_ways(adjusted, ledger("split", 4.0), at) == set()


def test_a_split_the_ledger_does_not_explain_is_flagged(clean: pd.DataFrame) -> None:
    bars, at = split_at_open(clean.copy(), 4.0)
    assert judged_both_ways(bars, ledger("split", 2.0), at) == {(bars.loc[at, "ts"], LEVEL_SHIFT)}
    other_day = ledger("split", 4.0, SESSIONS[2])
    assert judged_both_ways(bars, other_day, at) == {(bars.loc[at, "ts"], LEVEL_SHIFT)}


def test_a_large_dividend_in_the_ledger_passes(clean: pd.DataFrame) -> None:
    bars = clean.copy()
    at = first_bar(bars, SESSIONS[3])
    amount = 0.3 * bars.loc[at - 1, "close"]  # a 30% special dividend
    bars.loc[at:, PRICES] -= amount
    assert judged_both_ways(bars, ledger("dividend", amount), at) == set()
    assert judged_both_ways(bars, no_actions(), at) == {(bars.loc[at, "ts"], LEVEL_SHIFT)}


@pytest.mark.parametrize("jump", [1.06, 0.94, 1.2])
def test_a_news_jump_that_holds_passes(clean: pd.DataFrame, jump: float) -> None:
    bars = clean.copy()
    at = first_bar(bars, SESSIONS[3]) + FAULT
    bars.loc[at, "open"] = bars.loc[at - 1, "close"]  # the jump happens inside the minute
    bars.loc[at:, ["high", "low", "close"]] *= jump
    bars.loc[at + 1 :, "open"] *= jump
    bars.loc[at, "high"] = bars.loc[at, PRICES].max()
    bars.loc[at, "low"] = bars.loc[at, PRICES].min()
    assert judged_both_ways(bars, None, at) == set()


def test_overnight_gaps_and_the_first_bars_pass(clean: pd.DataFrame) -> None:
    bars = clean.copy()
    at = first_bar(bars, SESSIONS[3])
    bars.loc[at:, PRICES] *= 1.08  # an 8% gap at the open that holds
    assert judged_both_ways(bars, None, at) == set()
    first = check_bars(bars.iloc[:100], None, None, PARAMS)  # no history at all
    assert first.empty


def test_malformed_input_is_refused_by_name(clean: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="close"):
        check_bars(clean.drop(columns=["close"]), None)
    with pytest.raises(ValueError, match="revert_fraction"):
        GuardParams(revert_fraction=1.5)
    assert check_bars(clean.iloc[:0], clean).empty


# --------------------------------------------------------------------------- false alarms
SEED = 42
FIRST, SESSION_COUNT = "2025-10-09", 25  # holds NVDA's 4:1 split (2025-10-24) and dividends


def simulated(sessions: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The universe's bars of `sessions`, with the session before them (stored history) and the
    one after (whose bars complete the spike and level-shift verdicts of the last ones), sorted
    by (ticker, ts); the corporate actions over them; and which bars are in `sessions`."""
    market = SimulatedMarket(seed=SEED)
    tickers = list(DEFAULT_UNIVERSE)
    around = sessions_between(
        sessions[0] - pd.Timedelta(days=7), sessions[-1] + pd.Timedelta(days=7)
    )
    before, after = around[around < sessions[0]][-1], around[around > sessions[-1]][0]
    bars = market.history(
        tickers, before.tz_localize("UTC"), (after + pd.Timedelta(days=1)).tz_localize("UTC")
    )
    actions = market.corporate_actions(tickers, before.date(), after.date())
    minute = pd.DatetimeIndex(bars["ts"]).asi8
    judged = (minute >= session_minutes(sessions[0])[0].value) & (
        minute < session_minutes(after)[0].value
    )
    return bars, actions, judged


def stored_before(start: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The rows of the last `history_bars` bars of each ticker before its first row in `rows`
    (ascending; `start`: the first row of each bar's ticker, bars sorted by ticker and time)."""
    first = rows[np.r_[True, start[rows[1:]] != start[rows[:-1]]]]
    depth = np.minimum(first - start[first], PARAMS.history_bars)
    return np.concatenate([np.arange(r - d, r) for r, d in zip(first, depth, strict=True)])


def ticker_start(bars: pd.DataFrame) -> np.ndarray:
    return np.arange(len(bars)) - bars.groupby("ticker").cumcount().to_numpy()


def session_batches(bars: pd.DataFrame, actions: pd.DataFrame, judged: np.ndarray) -> pd.DataFrame:
    """Each session of all tickers written at once (as seeding and the backfill write), on the
    stored bars before it; the flags of the `judged` bars."""
    day, start = pd.DatetimeIndex(bars["ts"]).asi8 // (86_400 * 10**9), ticker_start(bars)
    flags = []
    for d in np.unique(day[day > day.min()]):
        rows = np.flatnonzero(day == d)
        flags.append(check_bars(bars.iloc[rows], bars.iloc[stored_before(start, rows)], actions))
    return only_judged(pd.concat(flags, ignore_index=True), bars, judged)


def live_polls(bars: pd.DataFrame, actions: pd.DataFrame, judged: np.ndarray) -> pd.DataFrame:
    """Each minute of all tickers written alone (the live poller: one bar per ticker); the
    flags of the `judged` bars."""
    minute, start = pd.DatetimeIndex(bars["ts"]).asi8, ticker_start(bars)
    live = minute >= minute[judged].min()
    order = np.flatnonzero(live)[np.argsort(minute[live], kind="stable")]
    flags = []
    for rows in np.split(order, np.flatnonzero(np.diff(minute[order])) + 1):
        rows = np.sort(rows)
        flags.append(check_bars(bars.iloc[rows], bars.iloc[stored_before(start, rows)], actions))
    return only_judged(pd.concat(flags, ignore_index=True), bars, judged)


def only_judged(flags: pd.DataFrame, bars: pd.DataFrame, judged: np.ndarray) -> pd.DataFrame:
    keys = pd.MultiIndex.from_frame(bars.loc[judged, ["ticker", "ts"]])
    return flags[pd.MultiIndex.from_frame(flags[["ticker", "ts"]]).isin(keys)]


def test_false_alarms_stay_below_one_per_100k_bars() -> None:
    """Fed a session at a time (the backfill's and seeding's path): the live path, one call per
    minute, gives the same verdicts (the test below, and the fault tests) at 390 calls a
    session, 16x the time of this test."""
    sessions = sessions_between(FIRST, "2025-12-31")[:SESSION_COUNT]
    bars, actions, judged = simulated(sessions)
    assert {"split", "dividend"} <= set(actions["action_type"])
    flags = session_batches(bars, actions, judged)
    count, rate = len(flags), len(flags) / judged.sum() * 100_000
    print(
        f"\nquality guard false alarms: {count} flag(s) over {judged.sum()} bars "
        f"({SESSION_COUNT} sessions x {len(DEFAULT_UNIVERSE)} tickers, seed {SEED}, "
        f"{len(actions)} corporate actions) = {rate:.2f} per 100,000 bars"
    )
    if count:
        print(flags.to_string())
    assert judged.sum() >= 190_000
    assert rate <= 1.0


def test_live_polls_and_session_batches_agree_on_the_simulated_market() -> None:
    sessions = sessions_between("2025-10-24", "2025-10-24")  # NVDA's 4:1 split, MSFT's dividend
    bars, actions, judged = simulated(sessions)
    assert (actions["ticker"] + actions["action_type"]).tolist().count("NVDAsplit") == 1
    late = np.flatnonzero(judged & (bars["ticker"] == "JPM").to_numpy())[FAULT]
    bars.loc[late : np.flatnonzero(bars["ticker"] == "JPM")[-1], PRICES] *= 0.5
    batches = session_batches(bars, actions, judged)
    assert found(batches) == {(bars.loc[late, "ts"], LEVEL_SHIFT)}
    assert found(live_polls(bars, actions, judged)) == found(batches)
    unrecorded = session_batches(bars, actions[actions["ticker"] != "NVDA"], judged)
    nvda_open = session_minutes(sessions[0])[0]
    assert found(unrecorded) == found(batches) | {(nvda_open, LEVEL_SHIFT)}
    assert unrecorded["ticker"].tolist() == ["JPM", "NVDA"]


def test_the_simulated_market_has_what_the_guard_must_let_through() -> None:
    """The false-alarm run is only worth something if news jumps, gaps and actions are in it."""
    market = SimulatedMarket(seed=SEED)
    sessions = sessions_between(FIRST, "2025-12-31")[:SESSION_COUNT]
    news = sum(len(market.news_events(t, s)) for t in DEFAULT_UNIVERSE for s in sessions)
    actions = market.corporate_actions(
        list(DEFAULT_UNIVERSE), sessions[0].date(), sessions[-1].date()
    )
    assert news >= 100
    assert (actions["action_type"] == "split").sum() >= 1
    assert (actions["action_type"] == "dividend").sum() >= 3
    assert isinstance(actions["ex_date"].iloc[0], date)
