"""Triple-barrier labels: UP / DOWN / NEUTRAL by the first barrier a price path touches.

For a bar t of one ticker with close c_t and recent volatility sigma_t (standard deviation of the
last `vol_lookback` intraday 1-minute log returns, known at t), the barriers on the log price are

    upper = log c_t + up_mult * sigma_t * sqrt(horizon_bars)
    lower = log c_t - down_mult * sigma_t * sqrt(horizon_bars)

and the vertical barrier is `horizon_bars` bars later. The label is UP if the close path of the
next `horizon_bars` bars reaches the upper barrier first, DOWN if it reaches the lower first,
NEUTRAL if neither is reached. A label never crosses a session close (overnight gaps are not
part of the path): bars whose horizon does not fit in the rest of their session, or whose future
is not in the data yet, have no label (NaN). Labels look ahead by design, by at most
`horizon_bars` bars; features never do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings
from core.timeutil import NEW_YORK

CLASSES = ("DOWN", "NEUTRAL", "UP")
DOWN, NEUTRAL, UP = 0, 1, 2
LABEL_COLUMNS = ["ticker", "ts", "label", "fwd_return", "exit_ts", "barrier"]


@dataclass(frozen=True)
class LabelParams:
    """Triple-barrier parameters (saved in a model's metadata as `label_params`)."""

    up_mult: float
    down_mult: float
    horizon_bars: int
    vol_lookback: int

    def __post_init__(self) -> None:
        if self.up_mult <= 0 or self.down_mult <= 0:
            raise ValueError("barrier multiples must be positive")
        if self.horizon_bars < 1 or self.vol_lookback < 2:
            raise ValueError("horizon_bars must be >= 1 and vol_lookback >= 2")

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LabelParams:
        s = settings or get_settings()
        return cls(
            s.barrier_up_mult, s.barrier_down_mult, s.label_horizon_bars, s.barrier_vol_lookback
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelParams:
        return cls(
            float(data["up_mult"]),
            float(data["down_mult"]),
            int(data["horizon_bars"]),
            int(data["vol_lookback"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def session_codes(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """An integer per bar naming its trading day (the New York calendar date)."""
    local = pd.DatetimeIndex(ts).tz_convert(NEW_YORK).tz_localize(None)
    return np.asarray(local.to_numpy().astype("datetime64[D]").astype(np.int64))


def barrier_volatility(
    log_close: np.ndarray, segment: np.ndarray, group: np.ndarray, lookback: int
) -> np.ndarray:
    """Rolling std of intraday 1-bar log returns over `lookback` bars of the same ticker (NaN
    until enough). `segment` numbers each (ticker, session) run of rows, `group` each ticker's;
    a return across a segment boundary (overnight gap, or another ticker) is left out."""
    ret = np.diff(log_close, prepend=np.nan)
    ret[1:][segment[1:] != segment[:-1]] = np.nan
    rolling = (
        pd.Series(ret)
        .groupby(group, sort=False)
        .rolling(lookback, min_periods=max(2, lookback // 2))
    )
    return np.asarray(rolling.std().to_numpy())


def _labels(ordered: pd.DataFrame, params: LabelParams) -> pd.DataFrame:
    """Labels of bars sorted by (ticker, ts), all tickers at once: a path never leaves its
    (ticker, session) segment."""
    h = params.horizon_bars
    n = len(ordered)
    ticker = ordered["ticker"].to_numpy()
    lc = np.log(ordered["close"].to_numpy(dtype=float))
    ts = pd.DatetimeIndex(ordered["ts"])
    session = session_codes(ts)
    new_ticker = np.r_[True, ticker[1:] != ticker[:-1]]
    group = np.cumsum(new_ticker) - 1
    segment = np.cumsum(new_ticker | np.r_[True, session[1:] != session[:-1]])
    sigma = barrier_volatility(lc, segment, group, params.vol_lookback)
    width = sigma * np.sqrt(h)
    # future log returns over 1..h bars, NaN when beyond the data or the segment
    idx = np.arange(n)[:, None] + np.arange(1, h + 1)[None, :]
    inside = idx < n
    idx_c = np.minimum(idx, n - 1)
    same = inside & (segment[idx_c] == segment[:, None])
    fut = np.where(same, lc[idx_c] - lc[:, None], np.nan)
    complete = same[:, -1]
    up_hit = fut >= (params.up_mult * width)[:, None]
    down_hit = fut <= -(params.down_mult * width)[:, None]
    first_up = np.where(up_hit.any(axis=1), up_hit.argmax(axis=1), h)
    first_down = np.where(down_hit.any(axis=1), down_hit.argmax(axis=1), h)
    label = np.full(n, float(NEUTRAL))
    label[first_up < first_down] = UP
    label[first_down < first_up] = DOWN
    exit_step = np.minimum(np.minimum(first_up, first_down), h - 1)
    ok = complete & np.isfinite(width) & (width > 0)
    label[~ok] = np.nan
    rows = np.arange(n)
    fwd = np.where(ok, fut[rows, exit_step], np.nan)
    exit_ts = ts[idx_c[rows, exit_step]]
    return pd.DataFrame(
        {
            "ticker": ticker,
            "ts": ts,
            "label": label,
            "fwd_return": fwd,
            "exit_ts": exit_ts.where(ok),
            "barrier": width,
        }
    )


def triple_barrier_labels(bars: pd.DataFrame, params: LabelParams | None = None) -> pd.DataFrame:
    """Label every bar by the first barrier its future close path touches.

    Parameters
    ----------
    bars : DataFrame with ticker, ts (UTC), close; any number of tickers, any order.
    params : barrier parameters (default: from settings).

    Returns
    -------
    DataFrame sorted by (ticker, ts) with ticker, ts, label (0 DOWN / 1 NEUTRAL / 2 UP as float,
    NaN where the horizon is incomplete), fwd_return (log return from the bar's close to the
    close at the exit bar), exit_ts, barrier (sigma * sqrt(horizon)). Uses up to
    `horizon_bars` future bars of the same session, by construction.
    """
    params = params or LabelParams.from_settings()
    if bars.empty:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    ordered = bars.sort_values(["ticker", "ts"], kind="stable")
    return _labels(ordered, params)[LABEL_COLUMNS]
