"""Triple-barrier labels on hand-built price paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.features.labels import CLASSES, DOWN, NEUTRAL, UP, LabelParams, triple_barrier_labels

pytestmark = pytest.mark.no_db

# Warm-up returns alternate +-1e-3: with lookback 4 their sample std is known exactly.
WARM = [1e-3, -1e-3] * 4
SESSION_OPEN = pd.Timestamp("2026-03-02 14:30", tz="UTC")  # a Monday, 09:30 New York
PARAMS = LabelParams(up_mult=1.0, down_mult=1.0, horizon_bars=4, vol_lookback=4)
SIGMA = float(np.std([1e-3, -1e-3, 1e-3, -1e-3], ddof=1))
BARRIER = SIGMA * np.sqrt(PARAMS.horizon_bars)  # in log-price units, both sides (mult 1)


def bars_from_returns(returns: list[float], start: pd.Timestamp = SESSION_OPEN) -> pd.DataFrame:
    """One ticker's bars whose close-to-close log returns are `returns` (first close 100)."""
    closes = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    ts = pd.date_range(start, periods=len(closes), freq="min")
    return pd.DataFrame(
        {
            "ticker": "TEST",
            "ts": ts,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": 1000.0,
        }
    )


def label_after_warmup(future: list[float], params: LabelParams = PARAMS) -> pd.Series:
    """The label row of the bar right after the warm-up, given its future returns."""
    labels = triple_barrier_labels(bars_from_returns(WARM + future), params)
    return labels.iloc[len(WARM)]


def test_class_order_is_fixed() -> None:
    assert CLASSES == ("DOWN", "NEUTRAL", "UP")
    assert (DOWN, NEUTRAL, UP) == (0, 1, 2)


def test_barrier_is_recent_volatility_times_sqrt_horizon() -> None:
    row = label_after_warmup([0.0] * 6)
    assert row["barrier"] == pytest.approx(BARRIER, rel=1e-9)


def test_up_when_upper_barrier_is_touched_first() -> None:
    row = label_after_warmup([0.0, 1.2 * BARRIER, -3 * BARRIER, 0.0, 0.0, 0.0])
    assert row["label"] == UP
    assert row["fwd_return"] == pytest.approx(1.2 * BARRIER, rel=1e-6)
    assert row["exit_ts"] == SESSION_OPEN + pd.Timedelta(minutes=len(WARM) + 2)


def test_down_when_lower_barrier_is_touched_first() -> None:
    row = label_after_warmup([-0.6 * BARRIER, -0.6 * BARRIER, 5 * BARRIER, 0.0, 0.0, 0.0])
    assert row["label"] == DOWN
    assert row["fwd_return"] == pytest.approx(-1.2 * BARRIER, rel=1e-6)


def test_neutral_when_only_the_vertical_barrier_is_reached() -> None:
    future = [0.4 * BARRIER, -0.3 * BARRIER, 0.5 * BARRIER, -0.2 * BARRIER, 9 * BARRIER, 0.0]
    row = label_after_warmup(future)
    assert row["label"] == NEUTRAL
    # exit at the vertical barrier: the return over exactly horizon_bars bars
    assert row["fwd_return"] == pytest.approx(0.4 * BARRIER, rel=1e-6)


def test_a_touch_after_the_horizon_does_not_count() -> None:
    row = label_after_warmup([0.0, 0.0, 0.0, 0.0, 3 * BARRIER, 0.0])
    assert row["label"] == NEUTRAL


def test_barrier_multiples_are_asymmetric_when_asked() -> None:
    params = LabelParams(up_mult=3.0, down_mult=0.5, horizon_bars=4, vol_lookback=4)
    up_not_reached = label_after_warmup([2.0 * BARRIER, 0, 0, 0, 0, 0], params)
    assert up_not_reached["label"] == NEUTRAL
    down_reached = label_after_warmup([-0.6 * BARRIER, 0, 0, 0, 0, 0], params)
    assert down_reached["label"] == DOWN


def test_no_label_without_enough_volatility_history_or_future() -> None:
    labels = triple_barrier_labels(bars_from_returns(WARM + [0.0] * 6), PARAMS)
    assert labels["label"].iloc[:1].isna().all()  # no returns yet: no volatility
    assert labels["label"].iloc[-PARAMS.horizon_bars :].isna().all()  # future not in data
    assert labels["label"].iloc[len(WARM)] == NEUTRAL


def test_labels_never_cross_the_session_close() -> None:
    close = pd.Timestamp("2026-03-02 21:00", tz="UTC")
    start = close - pd.Timedelta(minutes=len(WARM) + 3)
    day1 = bars_from_returns(WARM + [0.0, 0.0], start=start)
    next_open = pd.Timestamp("2026-03-03 14:30", tz="UTC")
    day2 = bars_from_returns([5 * BARRIER] * 8, start=next_open)
    day2[["open", "high", "low", "close"]] *= day1["close"].iloc[-1] / 100
    labels = triple_barrier_labels(pd.concat([day1, day2], ignore_index=True), PARAMS)
    last_of_day1 = labels[labels["ts"] < close]
    # the huge overnight move is never a label: every bar near the close is unlabelled
    assert last_of_day1["label"].iloc[-PARAMS.horizon_bars :].isna().all()


def test_overnight_gap_is_not_counted_as_intraday_volatility() -> None:
    close = pd.Timestamp("2026-03-02 21:00", tz="UTC")
    day1 = bars_from_returns(WARM, start=close - pd.Timedelta(minutes=len(WARM) + 1))
    day2 = bars_from_returns(WARM + [0.0] * 6, start=pd.Timestamp("2026-03-03 14:30", tz="UTC"))
    day2[["open", "high", "low", "close"]] *= 1.10  # a 10% gap
    labels = triple_barrier_labels(pd.concat([day1, day2], ignore_index=True), PARAMS)
    day2_rows = labels[labels["ts"] >= pd.Timestamp("2026-03-03", tz="UTC")]
    # two bars after the open the lookback spans the gap; the gap return is left out
    assert day2_rows["barrier"].iloc[2] < 2 * BARRIER
    assert day2_rows["barrier"].iloc[len(WARM)] == pytest.approx(BARRIER, rel=1e-9)


def test_tickers_are_labelled_independently_and_sorted() -> None:
    a = bars_from_returns(WARM + [2 * BARRIER] * 6)
    b = bars_from_returns(WARM + [-2 * BARRIER] * 6).assign(ticker="AAA")
    labels = triple_barrier_labels(pd.concat([a, b]).sample(frac=1.0, random_state=1), PARAMS)
    assert list(labels["ticker"].unique()) == ["AAA", "TEST"]
    assert labels.groupby("ticker")["ts"].apply(lambda s: s.is_monotonic_increasing).all()
    at = labels.groupby("ticker").nth(len(WARM)).set_index("ticker")["label"]
    assert at["AAA"] == DOWN and at["TEST"] == UP


def test_label_params_round_trip_and_validation() -> None:
    assert LabelParams.from_dict(PARAMS.to_dict()) == PARAMS
    with pytest.raises(ValueError, match="positive"):
        LabelParams(0.0, 1.0, 4, 4)
    with pytest.raises(ValueError, match="horizon_bars"):
        LabelParams(1.0, 1.0, 0, 4)


def test_labelling_many_tickers_at_once_equals_labelling_each_alone() -> None:
    """Tickers are labelled in one pass; no path, volatility window or exit may reach into the
    neighbouring ticker's rows (random sessions, gaps and lengths)."""
    rng = np.random.default_rng(11)
    params = LabelParams(up_mult=1.2, down_mult=0.8, horizon_bars=5, vol_lookback=6)
    frames = []
    for i in range(12):
        days = []
        for d in range(int(rng.integers(1, 4))):
            open_ = pd.Timestamp("2026-03-02 14:30", tz="UTC") + pd.Timedelta(days=d)
            offset = int(rng.integers(0, 30))
            rets = list(rng.normal(0, 1e-3, int(rng.integers(3, 40))))
            days.append(bars_from_returns(rets, start=open_ + pd.Timedelta(minutes=offset)))
        frames.append(pd.concat(days, ignore_index=True).assign(ticker=f"T{i:02d}"))
    together = triple_barrier_labels(pd.concat(frames).sample(frac=1.0, random_state=2), params)
    alone = pd.concat(
        [triple_barrier_labels(f, params) for f in sorted(frames, key=lambda f: f.ticker.iat[0])],
        ignore_index=True,
    )
    assert together["label"].notna().sum() > 50  # the comparison covers labelled bars
    pd.testing.assert_frame_equal(together.reset_index(drop=True), alone, check_exact=True)
