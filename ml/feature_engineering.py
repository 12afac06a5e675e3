"""Causal features for every 1-minute bar, shared by training, validation and live scoring.

A bar stamped `ts` is final at its close `ts + 1 min`; its features use that bar and earlier
bars only, news StockPulse could have known before that close (`available_at`), and macro
figures released before it. Technical indicators come from pandas-ta (`pandas_ta_classic`),
computed per ticker over the bar sequence.

- `create_features(bars, news, macro)`: the feature frame (ticker, ts, FEATURE_COLUMNS).
- `FeatureScaler`: standardisation fitted on the training range only, saved in metadata.
- `latest_windows(...)`: the live path, the scaled window ending at each ticker's newest bar,
  from the last `required_history_bars(metadata)` bars (equal to the batch result).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandas_ta_classic as ta

from config.market_calendar import xnys
from config.settings import Settings, get_settings
from ml.windows import FeatureScaler, gather_windows, window_ready

__all__ = [
    "FEATURE_COLUMNS",
    "FeatureParams",
    "FeatureScaler",
    "create_features",
    "latest_windows",
    "ready_mask",
    "required_history_bars",
]

NEW_YORK = "America/New_York"
PRICE_FEATURES = (
    "ret_1",
    "ret_5",
    "ret_15",
    "ret_30",
    "rsi_14",
    "macd_norm",
    "macd_hist_norm",
    "bb_pos",
    "bb_width",
    "atr_norm",
    "range_norm",
    "volume_z",
    "realised_vol_30",
    "vwap_dist",
)
TIME_FEATURES = ("session_frac", "minutes_to_close", "tod_sin", "tod_cos", "dow_sin", "dow_cos")
NEWS_FEATURES = ("news_sentiment", "news_count")
MACRO_SERIES = ("DGS10", "DGS2", "T10Y2Y", "FEDFUNDS", "CPIAUCSL", "UNRATE", "VIXCLS")
MACRO_FEATURES = tuple(f"macro_{s.lower()}" for s in MACRO_SERIES)
FEATURE_COLUMNS = PRICE_FEATURES + TIME_FEATURES + NEWS_FEATURES + MACRO_FEATURES
REQUIRED_FEATURES = PRICE_FEATURES + TIME_FEATURES  # NaN here = warm-up, row not usable
BAR_INPUT_COLUMNS = ("ticker", "ts", "open", "high", "low", "close", "volume")
# Rows of history before a window's first bar that make the live result equal the batch one:
# a whole session for the session VWAP, and enough for EMAs (RSI, MACD, ATR) to forget their
# start (weight of the start after 450 bars: (13/14)^450 ~ 3e-15).
HISTORY_MARGIN_BARS = 450
BAR = pd.Timedelta(minutes=1)


class FeatureError(ValueError):
    """Inputs or metadata that features cannot be built from."""


@dataclass(frozen=True)
class FeatureParams:
    """Knobs of the feature pipeline (saved in metadata as `feature_params`)."""

    news_half_life_min: float = 240.0
    news_lookback_min: float = 1440.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> FeatureParams:
        s = settings or get_settings()
        return cls(s.news_half_life_min, 6.0 * s.news_half_life_min)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FeatureParams:
        return cls(**data) if data else cls()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- price indicators
def _series(result: pd.Series | None, index: pd.Index) -> pd.Series:
    """pandas-ta returns None when the input is shorter than the indicator; make that NaN."""
    if result is None:
        return pd.Series(np.nan, index=index)
    return result.astype(float)


def _column(frame: pd.DataFrame | None, prefix: str, index: pd.Index) -> pd.Series:
    if frame is None:
        return pd.Series(np.nan, index=index)
    return frame[next(c for c in frame.columns if c.startswith(prefix))].astype(float)


def price_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Technical indicators of one ticker's bars (sorted by ts); row i uses rows <= i only."""
    local = pd.DatetimeIndex(bars["ts"]).tz_convert(NEW_YORK).tz_localize(None)
    c = pd.Series(bars["close"].to_numpy(float), index=local)
    h = pd.Series(bars["high"].to_numpy(float), index=local)
    lo = pd.Series(bars["low"].to_numpy(float), index=local)
    v = pd.Series(bars["volume"].to_numpy(float), index=local)
    ix = c.index
    out = {f"ret_{k}": _series(ta.log_return(c, length=k), ix) for k in (1, 5, 15, 30)}
    out["rsi_14"] = _series(ta.rsi(c, length=14, talib=False), ix) / 100.0
    macd = ta.macd(c, fast=12, slow=26, signal=9, talib=False)
    out["macd_norm"] = _column(macd, "MACD_", ix) / c
    out["macd_hist_norm"] = _column(macd, "MACDh_", ix) / c
    bb = ta.bbands(c, length=20, std=2.0, talib=False)
    out["bb_pos"] = _column(bb, "BBP_", ix)
    out["bb_width"] = _column(bb, "BBB_", ix)
    out["atr_norm"] = _series(ta.atr(h, lo, c, length=14, talib=False), ix) / c
    out["range_norm"] = (h - lo) / c
    out["volume_z"] = _series(ta.zscore(np.log1p(v), length=30), ix)
    out["realised_vol_30"] = _series(ta.stdev(out["ret_1"], length=30, ddof=1, talib=False), ix)
    out["vwap_dist"] = np.log(c / _series(ta.vwap(h, lo, c, v, anchor="D"), ix))
    frame = pd.DataFrame(out, index=ix)[list(PRICE_FEATURES)]
    frame = frame.replace([np.inf, -np.inf], np.nan)
    # after warm-up, a momentary gap (flat prices, zero volume) keeps the last value: causal
    started = frame.notna().all(axis=1).cummax()
    return frame.where(~started, frame.ffill()).reset_index(drop=True)


# --------------------------------------------------------------------------- time features
def time_features(ts: pd.Series | pd.DatetimeIndex) -> pd.DataFrame:
    """Position in the XNYS session (early closes included) and day of week, per bar."""
    stamps = pd.DatetimeIndex(ts)
    local = stamps.tz_convert(NEW_YORK)
    day = local.normalize().tz_localize(None).as_unit("ns")
    sched = xnys().schedule
    opens = pd.DatetimeIndex(sched["open"].reindex(day))
    closes = pd.DatetimeIndex(sched["close"].reindex(day))
    since_open = np.asarray((stamps - opens) / BAR, dtype=float)
    length = np.asarray((closes - opens) / BAR, dtype=float)
    to_close = np.asarray((closes - stamps) / BAR, dtype=float) - 1.0
    angle = 2 * np.pi * since_open / 390.0
    dow = 2 * np.pi * np.asarray(local.dayofweek, dtype=float) / 5.0
    return pd.DataFrame(
        {
            "session_frac": since_open / length,
            "minutes_to_close": to_close / 390.0,
            "tod_sin": np.sin(angle),
            "tod_cos": np.cos(angle),
            "dow_sin": np.sin(dow),
            "dow_cos": np.cos(dow),
        }
    )


# --------------------------------------------------------------------------- context (as of)
def _ns(values: Any) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8)


def news_features(
    bar_ts: pd.Series, news: pd.DataFrame | None, params: FeatureParams
) -> pd.DataFrame:
    """Decayed sentiment sum and article count of one ticker's news available before each close.

    Only articles within `news_lookback_min` before the close count, so a bounded history gives
    the same values as the whole one.
    """
    n = len(bar_ts)
    sent, count = np.zeros(n), np.zeros(n)
    if news is not None and len(news):
        pub = _ns(news["available_at"])
        order = np.argsort(pub, kind="stable")
        pub = pub[order]
        score = pd.to_numeric(news["sentiment"], errors="coerce").fillna(0.0).to_numpy()[order]
        close = _ns(bar_ts) + BAR.value
        lookback = int(params.news_lookback_min * 60e9)
        lo = np.searchsorted(pub, close - lookback, side="left")
        hi = np.searchsorted(pub, close, side="left")  # strictly before the close
        k = hi - lo
        half_life_ns = params.news_half_life_min * 60e9
        for j in range(int(k.max(initial=0))):
            use = j < k
            at = np.minimum(lo + j, len(pub) - 1)
            weight = np.exp2(-(close - pub[at]) / half_life_ns) * use
            sent += weight * score[at]
            count += use
    return pd.DataFrame({"news_sentiment": sent, "news_count": count})


def _macro_asof_table(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Release times and the latest known value of the latest observation after each release."""
    rows = rows.sort_values(["realtime_start", "obs_date"], kind="stable")
    times, values = _ns(rows["realtime_start"]), rows["value"].to_numpy(float)
    obs = pd.to_datetime(rows["obs_date"]).to_numpy()
    current = np.empty(len(rows))
    newest, value = None, np.nan
    for i in range(len(rows)):
        if newest is None or obs[i] >= newest:  # a newer observation, or a revision of it
            newest, value = obs[i], values[i]
        current[i] = value
    return times, current


def macro_features(bar_ts: pd.Series, macro: pd.DataFrame | None) -> pd.DataFrame:
    """Each MACRO_SERIES value as known before each bar's close (release time, not obs date)."""
    close = _ns(bar_ts) + BAR.value
    out = {}
    for series_id, name in zip(MACRO_SERIES, MACRO_FEATURES, strict=True):
        col = np.full(len(close), np.nan)
        if macro is not None and len(macro):
            rows = macro[macro["series_id"] == series_id]
            if len(rows):
                times, current = _macro_asof_table(rows)
                at = np.searchsorted(times, close, side="left") - 1
                col = np.where(at >= 0, current[np.maximum(at, 0)], np.nan)
        out[name] = col
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- assembly
def clean_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars sorted by (ticker, ts), one per minute, UTC; a clear error for missing columns."""
    missing = [c for c in BAR_INPUT_COLUMNS if c not in bars.columns]
    if missing:
        raise FeatureError(f"bars lack column(s) {missing}; need {list(BAR_INPUT_COLUMNS)}")
    out = bars.loc[:, list(BAR_INPUT_COLUMNS)].copy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    out = out.drop_duplicates(["ticker", "ts"], keep="last")
    return out.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)


def create_features(
    bars: pd.DataFrame,
    news: pd.DataFrame | None = None,
    macro: pd.DataFrame | None = None,
    *,
    settings: Settings | None = None,
    params: FeatureParams | None = None,
) -> pd.DataFrame:
    """Features of every bar, from that bar and the past only.

    Parameters
    ----------
    bars : 1-minute bars (ticker, ts UTC, open, high, low, close, volume), any tickers and order.
    news : articles (ticker, available_at UTC: when StockPulse could first have known the
        article, sentiment in [-1, 1]) or None.
    macro : releases (series_id, obs_date, realtime_start UTC = release time, value) or None.
    settings, params : feature knobs (`params` wins; default from settings).

    Returns
    -------
    DataFrame sorted by (ticker, ts): ticker, ts, then FEATURE_COLUMNS in order (float64).
    Price and time features are NaN during warm-up (see `ready_mask`); macro features are NaN
    before a series' first release.
    """
    params = params or FeatureParams.from_settings(settings)
    bars = clean_bars(bars)
    news_by_ticker = dict(tuple(news.groupby("ticker"))) if news is not None and len(news) else {}
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for ticker, group in bars.groupby("ticker", sort=True):
            part = price_features(group)
            ctx = news_features(group["ts"], news_by_ticker.get(ticker), params)
            frames.append(pd.concat([part, ctx], axis=1))
    if frames:
        body = pd.concat(frames, ignore_index=True)
    else:
        body = pd.DataFrame(columns=list(PRICE_FEATURES + NEWS_FEATURES), dtype=float)
    head = bars[["ticker", "ts"]].reset_index(drop=True)
    parts = [head, body, time_features(head["ts"]), macro_features(head["ts"], macro)]
    return pd.concat(parts, axis=1)[["ticker", "ts", *FEATURE_COLUMNS]]


def ready_mask(features: pd.DataFrame) -> np.ndarray:
    """True for rows whose price and time features are all defined (past the warm-up)."""
    return np.asarray(features[list(REQUIRED_FEATURES)].notna().all(axis=1))


# --------------------------------------------------------------------------- live path
def required_history_bars(metadata: dict[str, Any]) -> int:
    """Recent bars per ticker that live scoring must load to reproduce the batch features."""
    return int(metadata["window_length"]) + HISTORY_MARGIN_BARS


def check_feature_list(metadata: dict[str, Any]) -> list[str]:
    """The model's ordered feature list, refused when this code cannot compute one of them."""
    features = list(metadata["features"])
    unknown = [f for f in features if f not in FEATURE_COLUMNS]
    if unknown:
        raise FeatureError(f"model needs feature(s) {unknown} this version cannot compute")
    return features


def latest_windows(
    bars: pd.DataFrame,
    news: pd.DataFrame | None,
    macro: pd.DataFrame | None,
    metadata: dict[str, Any],
) -> tuple[list[str], list[pd.Timestamp], np.ndarray]:
    """The scaled input window ending at the newest bar of each ticker.

    Parameters
    ----------
    bars : recent bars; only the last `required_history_bars(metadata)` per ticker are used.
    news : articles available from `feature_params.news_lookback_min` before the oldest bar.
    macro : releases, including the last one of each series before the oldest bar.
    metadata : a model version's metadata (features, scaler, window_length, feature_params).

    Returns
    -------
    (tickers, bar_ts, X): X is float32 [n, window_length, F]; a ticker without a complete
    window yet is left out. Equal (to float rounding) to the batch features on full history.
    """
    features = check_feature_list(metadata)
    window = int(metadata["window_length"])
    scaler = FeatureScaler.from_dict(metadata["scaler"])
    params = FeatureParams.from_dict(metadata.get("feature_params"))
    recent = clean_bars(bars).groupby("ticker", sort=True).tail(required_history_bars(metadata))
    feats = create_features(recent.reset_index(drop=True), news, macro, params=params)
    if feats.empty:
        return [], [], np.zeros((0, window, len(features)), dtype=np.float32)
    tick = feats["ticker"].to_numpy()
    ok = window_ready(ready_mask(feats), tick, window)
    last = np.r_[tick[1:] != tick[:-1], True]
    ends = np.flatnonzero(last & ok)
    scaled = scaler.transform(feats[features])
    X = gather_windows(scaled, ends, window)
    return [str(t) for t in tick[ends]], list(feats["ts"].iloc[ends]), X
