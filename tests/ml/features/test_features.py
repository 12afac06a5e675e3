"""Features: indicator values against reference formulas, time and as-of context alignment,
the scaler, and the live (bounded history) path against the batch result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.features.feature_engineering import (
    FEATURE_COLUMNS,
    MACRO_FEATURES,
    FeatureError,
    FeatureParams,
    check_feature_list,
    create_features,
    ready_mask,
    required_history_bars,
    time_features,
)
from ml.features.live_features import LiveFeatures
from ml.features.windows import FeatureScaler, gather_windows, window_ready
from workers.sources.simulated import SimulatedMarket

pytestmark = [pytest.mark.no_db, pytest.mark.xdist_group("features")]

WARMUP = 300  # rows after which EMA seeding conventions no longer matter (< 1e-9)


def sim_bars(tickers: list[str], start: str, end: str, seed: int = 5) -> pd.DataFrame:
    market = SimulatedMarket(seed, planted_signal=0.5)
    return market.history(tickers, pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"))


@pytest.fixture(scope="module")
def one_ticker() -> tuple[pd.DataFrame, pd.DataFrame]:
    bars = sim_bars(["MSFT"], "2026-02-02", "2026-02-07")
    return bars, create_features(bars)


def _wilder(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(alpha=1.0 / n, adjust=False).mean()


def _check(actual: pd.Series, expected: pd.Series, rtol: float = 1e-6, atol: float = 1e-10) -> None:
    a, e = actual.to_numpy(float)[WARMUP:], expected.to_numpy(float)[WARMUP:]
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def test_feature_columns_are_fixed_and_ordered(one_ticker: tuple) -> None:
    _, feats = one_ticker
    assert list(feats.columns) == ["ticker", "ts", *FEATURE_COLUMNS]
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)
    assert ready_mask(feats)[WARMUP:].all()


def test_returns_rsi_macd_against_reference(one_ticker: tuple) -> None:
    bars, feats = one_ticker
    c = bars["close"].astype(float)
    for k in (1, 5, 15, 30):
        _check(feats[f"ret_{k}"], np.log(c / c.shift(k)))
    delta = c.diff()
    gain, loss = _wilder(delta.clip(lower=0), 14), _wilder((-delta).clip(lower=0), 14)
    _check(feats["rsi_14"], gain / (gain + loss))
    macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    signal = macd.ewm(span=9, adjust=False).mean()
    _check(feats["macd_norm"], macd / c, atol=1e-9)
    _check(feats["macd_hist_norm"], (macd - signal) / c, atol=1e-9)


def test_bollinger_atr_volume_vwap_against_reference(one_ticker: tuple) -> None:
    bars, feats = one_ticker
    c, h, lo, v = (bars[k].astype(float) for k in ("close", "high", "low", "volume"))
    mid, sd = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
    upper, lower = mid + 2 * sd, mid - 2 * sd
    _check(feats["bb_pos"], (c - lower) / (upper - lower))
    _check(feats["bb_width"], 100 * (upper - lower) / mid)
    prev = c.shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
    _check(feats["atr_norm"], _wilder(tr, 14) / c, atol=1e-9)
    lv = np.log1p(v)
    _check(feats["volume_z"], (lv - lv.rolling(30).mean()) / lv.rolling(30).std(ddof=1))
    r1 = np.log(c / prev)
    _check(feats["realised_vol_30"], r1.rolling(30).std(ddof=1))
    day = bars["ts"].dt.tz_convert("America/New_York").dt.date
    typical = (h + lo + c) / 3
    vwap = (typical * v).groupby(day).cumsum() / v.groupby(day).cumsum()
    _check(feats["vwap_dist"], np.log(c / vwap))
    _check(feats["range_norm"], (h - lo) / c)


def test_time_features_follow_the_exchange_calendar() -> None:
    stamps = pd.DatetimeIndex(
        [
            "2026-02-02 14:30",  # Monday open (09:30 New York)
            "2026-02-02 20:59",  # last bar of a full session
            "2025-11-28 17:59",  # last bar of an early close (13:00 New York)
            "2026-07-06 13:30",  # summer time: 09:30 New York is 13:30 UTC
        ],
        tz="UTC",
    )
    tf = time_features(stamps)
    assert tf["session_frac"].iloc[0] == 0.0
    assert tf["minutes_to_close"].iloc[0] == pytest.approx(389 / 390)
    assert tf["minutes_to_close"].iloc[1] == 0.0
    assert tf["minutes_to_close"].iloc[2] == 0.0
    assert tf["session_frac"].iloc[2] == pytest.approx(209 / 210)
    assert tf["session_frac"].iloc[3] == 0.0
    assert tf["dow_sin"].iloc[0] == 0.0 and tf["dow_cos"].iloc[0] == 1.0  # Monday
    assert tf["tod_cos"].iloc[0] == 1.0


def _two_bars_frame() -> pd.DataFrame:
    ts = pd.date_range("2026-02-02 14:30", periods=600, freq="min", tz="UTC")
    ts = ts[(ts.hour < 21)]
    close = 100 + np.sin(np.arange(len(ts)) / 7.0)
    return pd.DataFrame(
        {
            "ticker": "AAA",
            "ts": ts,
            "open": close,
            "high": close + 0.1,
            "low": close - 0.1,
            "close": close,
            "volume": 1000.0 + np.arange(len(ts)) % 13,
        }
    )


def test_news_counts_only_after_publication_and_decays() -> None:
    bars = _two_bars_frame()
    news = pd.DataFrame(
        {
            "ticker": ["AAA", "AAA", "BBB"],
            "available_at": pd.to_datetime(
                ["2026-02-02 14:35:30", "2026-02-02 16:00:00", "2026-02-02 14:31:00"], utc=True
            ),
            "sentiment": [0.8, -0.4, 1.0],
        }
    )
    params = FeatureParams(news_half_life_min=60.0, news_lookback_min=360.0)
    f = create_features(bars, news, params=params).set_index("ts")
    at = lambda t: f.loc[pd.Timestamp(t, tz="UTC")]  # noqa: E731
    assert at("2026-02-02 14:34")["news_sentiment"] == 0.0  # closes 14:35, before publication
    assert at("2026-02-02 14:35")["news_count"] == 1  # closes 14:36, after it
    assert at("2026-02-02 14:35")["news_sentiment"] == pytest.approx(0.8 * 2 ** (-0.5 / 60))
    one_hour = at("2026-02-02 15:35")["news_sentiment"]
    assert one_hour == pytest.approx(0.8 * 2 ** (-60.5 / 60))
    both = at("2026-02-02 16:00")["news_sentiment"]
    assert both == pytest.approx(0.8 * 2 ** (-85.5 / 60) - 0.4 * 2 ** (-1 / 60))
    # beyond the lookback an article no longer counts at all
    assert at("2026-02-02 20:34")["news_count"] == 2  # closes 20:35, 359.5 min after it
    assert at("2026-02-02 20:35")["news_count"] == 1


def test_macro_is_joined_as_of_its_release_not_its_observation_date() -> None:
    bars = _two_bars_frame()
    macro = pd.DataFrame(
        {
            "series_id": ["VIXCLS", "VIXCLS", "VIXCLS", "CPIAUCSL", "CPIAUCSL"],
            "obs_date": pd.to_datetime(
                ["2026-01-29", "2026-01-30", "2026-01-29", "2025-12-01", "2025-12-01"]
            ).date,
            "realtime_start": pd.to_datetime(
                [
                    "2026-01-29 23:00",
                    "2026-02-02 15:00",  # released during the session
                    "2026-02-02 16:00",  # a revision of an older observation
                    "2026-01-13 13:30",
                    "2026-02-02 17:00",  # a revision of the latest CPI figure
                ],
                utc=True,
            ),
            "value": [17.0, 18.5, 99.0, 320.0, 321.0],
        }
    )
    f = create_features(bars, macro=macro).set_index("ts")
    vix = f["macro_vixcls"]
    # the 14:59 bar closes at 15:00, the release time: not yet known (strictly before the close)
    assert vix[pd.Timestamp("2026-02-02 14:59", tz="UTC")] == 17.0
    assert vix[pd.Timestamp("2026-02-02 15:00", tz="UTC")] == 18.5
    assert vix[pd.Timestamp("2026-02-02 17:30", tz="UTC")] == 18.5  # old revision ignored
    cpi = f["macro_cpiaucsl"]
    assert cpi[pd.Timestamp("2026-02-02 16:59", tz="UTC")] == 320.0
    assert cpi[pd.Timestamp("2026-02-02 17:00", tz="UTC")] == 321.0
    assert f["macro_dgs10"].isna().all()  # never released: missing, mapped to 0 by the scaler


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(FeatureError, match="lack column"):
        create_features(pd.DataFrame({"ticker": ["A"], "ts": [pd.Timestamp.now(tz="UTC")]}))
    with pytest.raises(FeatureError, match="not_a_feature"):
        check_feature_list(["ret_1", "not_a_feature"])


def test_scaler_round_trip_missing_values_and_clipping() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan], "b": [5.0, 5.0, 5.0, 5.0]})
    scaler = FeatureScaler.fit(frame, ["a", "b"])
    assert scaler.mean.tolist() == [2.0, 5.0]
    again = FeatureScaler.from_dict(scaler.to_dict())
    out = again.transform(pd.DataFrame({"a": [2.0, np.nan, 1e9], "b": [5.0, 6.0, 5.0]}))
    assert out.dtype == np.float32
    assert out[0].tolist() == [0.0, 0.0]
    assert out[1, 0] == 0.0  # missing -> the training mean
    assert out[2, 0] == scaler.clip and out[1, 1] == scaler.clip  # clipped, never inf
    with pytest.raises(KeyError, match="b"):
        scaler.transform(pd.DataFrame({"a": [1.0]}))


def test_window_ready_needs_full_windows_within_one_ticker() -> None:
    ready = np.array([False, True, True, True, True, True, True])
    groups = np.array(["A", "A", "A", "A", "B", "B", "B"])
    assert window_ready(ready, groups, 3).tolist() == [
        False,
        False,
        False,
        True,
        False,
        False,
        True,
    ]
    scaled = np.arange(14, dtype=np.float32).reshape(7, 2)
    win = gather_windows(scaled, np.array([3, 6]), 3)
    assert win.shape == (2, 3, 2) and win[0, -1].tolist() == [6.0, 7.0]


def _scaler(feats: pd.DataFrame) -> FeatureScaler:
    return FeatureScaler.fit(feats.iloc[: len(feats) // 2], list(FEATURE_COLUMNS))


def _context(tickers: list[str], bars: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, ...]:
    """Scored news (available two minutes after publication) and a daily VIX release."""
    market = SimulatedMarket(seed, planted_signal=0.5)
    days = sorted(
        bars["ts"].dt.tz_convert("America/New_York").dt.normalize().dt.tz_localize(None).unique()
    )
    news = pd.concat([market.news_events(t, d) for t in tickers for d in days], ignore_index=True)
    news["sentiment"] = 0.7 * news["sign"]
    news["available_at"] = news["published_at"] + pd.Timedelta(minutes=2)
    macro = pd.DataFrame(
        {
            "series_id": "VIXCLS",
            "obs_date": [d.date() for d in days],
            "realtime_start": [pd.Timestamp(d, tz="UTC") + pd.Timedelta(hours=16) for d in days],
            "value": 15 + np.arange(len(days), dtype=float),
        }
    )
    return news, macro


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_incremental_features_equal_the_batch_features_at_random_cuts(seed: int) -> None:
    """Property: fed the bars up to a random cut at once, then minute by minute (a late ticker
    and a skipped minute included), the live state yields the batch (pandas-ta) rows."""
    tickers = ["AAPL", "KO", "NVDA"]
    bars = sim_bars(tickers, "2026-03-02", "2026-03-06", seed=seed)
    news, macro = _context(tickers, bars, seed)
    batch = create_features(bars, news, macro).set_index(["ticker", "ts"])
    rng = np.random.default_rng(seed)
    stamps = np.sort(bars["ts"].unique())
    cut = stamps[int(rng.integers(50, len(stamps) - 200))]
    live = LiveFeatures(tickers, FeatureParams())
    live.set_context(news, macro)
    frames = [live.update(bars[bars["ts"] <= cut]).frame()]
    rest = bars[bars["ts"] > cut]
    late = rest[(rest["ticker"] == "KO") & (rest["ts"] <= rest["ts"].min() + pd.Timedelta("5min"))]
    for _, minute in rest.drop(late.index).groupby("ts"):
        if len(late) and minute["ts"].iloc[0] > late["ts"].max():
            frames.append(live.update(late).frame())  # KO's bars arrive five minutes late
            late = late.iloc[0:0]
        frames.append(live.update(minute).frame())
    out = pd.concat(frames).set_index(["ticker", "ts"])
    assert not out.index.duplicated().any()
    out = out.loc[batch.index, list(FEATURE_COLUMNS)].to_numpy()
    ref = batch[list(FEATURE_COLUMNS)].to_numpy()
    assert (np.isnan(out) == np.isnan(ref)).all()
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_a_late_bar_older_than_the_state_is_not_applied_twice() -> None:
    bars = sim_bars(["AAPL"], "2026-03-02", "2026-03-03")
    live = LiveFeatures(["AAPL"], FeatureParams())
    first = live.update(bars)
    again = live.update(bars.iloc[-5:])
    assert len(first.ts_ns) == len(bars) and len(again.ts_ns) == 0


def test_live_windows_from_bounded_history_equal_the_batch_windows() -> None:
    """What the scorer builds from `required_history_bars` recent bars per ticker equals the
    windows of the batch over the whole history."""
    tickers = ["AAPL", "KO", "NVDA"]
    bars = sim_bars(tickers, "2026-02-02", "2026-02-10", seed=9)
    news, macro = _context(tickers, bars, 9)
    full = create_features(bars, news, macro)
    scaler, window = _scaler(full), 32
    need = required_history_bars(window)
    scaled = scaler.transform(full)
    for now in ("2026-02-05 15:07", "2026-02-06 20:59", "2026-02-09 14:45"):
        cut = pd.Timestamp(now, tz="UTC")
        recent = bars[bars["ts"] <= cut].groupby("ticker").tail(need)
        live = LiveFeatures(tickers, FeatureParams(), capacity=need)
        live.set_context(news, macro)
        live.update(recent)
        keys, X = live.windows({t: [cut] for t in tickers}, list(FEATURE_COLUMNS), window, scaler)
        assert keys["ticker"].tolist() == tickers and (keys["ts"] == cut).all()
        ends = np.array(
            [full.index[(full["ticker"] == t) & (full["ts"] == cut)][0] for t in tickers]
        )
        batch = gather_windows(scaled, ends, window)
        assert X.shape == batch.shape == (3, window, len(FEATURE_COLUMNS))
        np.testing.assert_allclose(X, batch, atol=1e-5)


def test_live_windows_skip_tickers_without_enough_history() -> None:
    bars = sim_bars(["AAPL", "KO"], "2026-02-02", "2026-02-04")
    scaler = _scaler(create_features(bars))
    young = bars[
        (bars["ticker"] == "AAPL") | (bars["ts"] < bars["ts"].min() + pd.Timedelta(minutes=40))
    ]
    live = LiveFeatures(["AAPL", "KO"], FeatureParams())
    live.update(young)
    targets = {t: [live.last_ts(t)] for t in ("AAPL", "KO")}
    keys, X = live.windows(targets, list(FEATURE_COLUMNS), 64, scaler)
    assert keys["ticker"].tolist() == ["AAPL"] and X.shape[0] == 1
    assert MACRO_FEATURES[0] in FEATURE_COLUMNS
