"""Causal features for every 1-minute bar, shared by training, validation and live scoring.

A bar stamped `ts` is final at its close `ts + 1 min`; its features use that bar and earlier
bars only, news StockPulse could have known before that close (`available_at`), and macro
figures released before it. Technical indicators come from pandas-ta (`pandas_ta_classic`),
computed per ticker over the bar sequence.

- `create_features(bars, news, macro)`: the feature frame (ticker, ts, FEATURE_COLUMNS).
- `FeatureScaler`: standardisation fitted on the training range only, saved in metadata.
- The live path is `ml.features.live_features`: the same rows, bar by bar, from state carried
  forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandas_ta_classic as ta

from config.market_calendar import xnys
from config.settings import Settings, get_settings
from core.timeutil import NEW_YORK
from ml.features.windows import FeatureScaler

__all__ = [
    "FEATURE_COLUMNS",
    "FeatureParams",
    "FeatureScaler",
    "create_features",
    "ready_mask",
    "required_history_bars",
]

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
TIME_SCALE = 390.0  # minutes of a full session


def session_bounds(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XNYS open and close (UTC ns) of New York dates `days` (datetime64[ns], midnight)."""
    sched = xnys().schedule
    opens = pd.DatetimeIndex(sched["open"].reindex(pd.DatetimeIndex(days)))
    closes = pd.DatetimeIndex(sched["close"].reindex(pd.DatetimeIndex(days)))
    return opens.as_unit("ns").asi8, closes.as_unit("ns").asi8


def time_feature_values(
    stamps_ns: np.ndarray, open_ns: np.ndarray, close_ns: np.ndarray, weekday: np.ndarray
) -> np.ndarray:
    """[n, 6] TIME_FEATURES of bars opening at `stamps_ns` in sessions [open_ns, close_ns)."""
    bar = BAR.value
    since_open = (stamps_ns - open_ns) / bar
    length = (close_ns - open_ns) / bar
    to_close = (close_ns - stamps_ns) / bar - 1.0
    angle = 2 * np.pi * since_open / TIME_SCALE
    dow = 2 * np.pi * weekday.astype(float) / 5.0
    return np.column_stack(
        [
            since_open / length,
            to_close / TIME_SCALE,
            np.sin(angle),
            np.cos(angle),
            np.sin(dow),
            np.cos(dow),
        ]
    )


def time_features(ts: pd.Series | pd.DatetimeIndex) -> pd.DataFrame:
    """Position in the XNYS session (early closes included) and day of week, per bar."""
    stamps = pd.DatetimeIndex(ts)
    local = stamps.tz_convert(NEW_YORK)
    days = local.normalize().tz_localize(None).as_unit("ns").to_numpy()
    opens, closes = session_bounds(days)
    values = time_feature_values(
        stamps.as_unit("ns").asi8, opens, closes, np.asarray(local.dayofweek)
    )
    return pd.DataFrame(values, columns=list(TIME_FEATURES))


# --------------------------------------------------------------------------- context (as of)
def _ns(values: Any) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8)


@dataclass(frozen=True)
class NewsTimeline:
    """One ticker's articles by the time they became available (sorted, ns) with scores."""

    available_ns: np.ndarray
    score: np.ndarray

    @classmethod
    def of(cls, news: pd.DataFrame | None) -> NewsTimeline:
        if news is None or not len(news):
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0))
        pub = _ns(news["available_at"])
        order = np.argsort(pub, kind="stable")
        score = pd.to_numeric(news["sentiment"], errors="coerce").fillna(0.0).to_numpy()
        return cls(pub[order], score[order])


def news_feature_values(
    close_ns: np.ndarray, timeline: NewsTimeline, params: FeatureParams
) -> np.ndarray:
    """[n, 2]: decayed sentiment sum and article count of the articles available strictly
    before each close, within `news_lookback_min` of it."""
    n = len(close_ns)
    sent, count = np.zeros(n), np.zeros(n)
    pub, score = timeline.available_ns, timeline.score
    if len(pub):
        lookback = int(params.news_lookback_min * 60e9)
        lo = np.searchsorted(pub, close_ns - lookback, side="left")
        hi = np.searchsorted(pub, close_ns, side="left")  # strictly before the close
        k = hi - lo
        half_life_ns = params.news_half_life_min * 60e9
        for j in range(int(k.max(initial=0))):
            use = j < k
            at = np.minimum(lo + j, len(pub) - 1)
            weight = np.exp2(-(close_ns - pub[at]) / half_life_ns) * use
            sent += weight * score[at]
            count += use
    return np.column_stack([sent, count])


def news_features(
    bar_ts: pd.Series, news: pd.DataFrame | None, params: FeatureParams
) -> pd.DataFrame:
    """Decayed sentiment sum and article count of one ticker's news available before each close.

    Only articles within `news_lookback_min` before the close count, so a bounded history gives
    the same values as the whole one.
    """
    values = news_feature_values(_ns(bar_ts) + BAR.value, NewsTimeline.of(news), params)
    return pd.DataFrame(values, columns=list(NEWS_FEATURES))


MacroTables = dict[str, tuple[np.ndarray, np.ndarray]]


def macro_tables(macro: pd.DataFrame | None) -> MacroTables:
    """Per series: release times (ns) and the value current after each release (the newest
    observation so far, in its newest revision; revisions of older figures change nothing)."""
    out: MacroTables = {}
    if macro is None or not len(macro):
        return out
    for series_id in MACRO_SERIES:
        rows = macro[macro["series_id"] == series_id]
        if not len(rows):
            continue
        rows = rows.sort_values(["realtime_start", "obs_date"], kind="stable")
        values = rows["value"].to_numpy(float)
        obs = pd.to_datetime(rows["obs_date"]).to_numpy()
        current = np.empty(len(rows))
        newest, value = None, np.nan
        for i in range(len(rows)):
            if newest is None or obs[i] >= newest:  # a newer observation, or a revision of it
                newest, value = obs[i], values[i]
            current[i] = value
        out[series_id] = (_ns(rows["realtime_start"]), current)
    return out


def macro_feature_values(close_ns: np.ndarray, tables: MacroTables) -> np.ndarray:
    """[n, len(MACRO_SERIES)]: each series' value as released strictly before each close."""
    out = np.full((len(close_ns), len(MACRO_SERIES)), np.nan)
    for j, series_id in enumerate(MACRO_SERIES):
        if series_id in tables:
            times, current = tables[series_id]
            at = np.searchsorted(times, close_ns, side="left") - 1
            out[:, j] = np.where(at >= 0, current[np.maximum(at, 0)], np.nan)
    return out


def macro_features(bar_ts: pd.Series, macro: pd.DataFrame | None) -> pd.DataFrame:
    """Each MACRO_SERIES value as known before each bar's close (release time, not obs date)."""
    values = macro_feature_values(_ns(bar_ts) + BAR.value, macro_tables(macro))
    return pd.DataFrame(values, columns=list(MACRO_FEATURES))


# --------------------------------------------------------------------------- assembly
def bars_for_features(bars: pd.DataFrame) -> pd.DataFrame:
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
    bars = bars_for_features(bars)
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


# --------------------------------------------------------------------------- what a model needs
def required_history_bars(window_length: int) -> int:
    """Bars per ticker before a window's last bar that reproduce the batch features: the window
    and `HISTORY_MARGIN_BARS` of indicator warm-up."""
    return int(window_length) + HISTORY_MARGIN_BARS


def check_feature_list(features: Sequence[str]) -> list[str]:
    """A model's ordered feature list, refused when this code cannot compute one of them."""
    unknown = [f for f in features if f not in FEATURE_COLUMNS]
    if unknown:
        raise FeatureError(f"model needs feature(s) {unknown} this version cannot compute")
    return list(features)
