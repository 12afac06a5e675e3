"""Gap detection on the exchange calendar: which session minutes lack a bar.

A gap is a run of consecutive session minutes of one ticker, within one session, for which no
bar arrived although a later bar did (or the session closed). Gaps go to `backfill_queue`;
a minute that the backfill also finds empty is a minute without trades, not a gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from config.market_calendar import xnys

GAP_COLUMNS = ["ticker", "gap_start", "gap_end"]
MINUTE = pd.Timedelta(minutes=1)
NA = np.iinfo("int64").min  # "no timestamp" in the int64 nanosecond arrays below


def empty_gaps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": pd.Series(dtype="object"),
            "gap_start": pd.Series(dtype="datetime64[ns, UTC]"),
            "gap_end": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )


def _minutes(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """Session minutes with start <= minute <= end."""
    if end < start:
        return pd.DatetimeIndex([], tz="UTC")
    return xnys().minutes_in_range(start, end)


def runs(
    ticker: str, missing: pd.DatetimeIndex, minutes: pd.DatetimeIndex
) -> list[dict[str, object]]:
    """Split missing minutes into runs consecutive on the calendar and within one session."""
    if missing.empty:
        return []
    pos = minutes.get_indexer(missing)
    sessions = xnys().minutes_to_sessions(missing)
    rows = []
    start = 0
    for i in range(1, len(missing) + 1):
        if i == len(missing) or pos[i] != pos[i - 1] + 1 or sessions[i] != sessions[i - 1]:
            rows.append({"ticker": ticker, "gap_start": missing[start], "gap_end": missing[i - 1]})
            start = i
    return rows


def find_gaps(
    last_ts: dict[str, pd.Timestamp],
    bars: pd.DataFrame,
    through: pd.Timestamp | None = None,
    lookback: pd.Timedelta = pd.Timedelta(days=30),
) -> pd.DataFrame:
    """Missing minutes of each ticker between its last known bar and its newest new bar.

    Parameters
    ----------
    last_ts : ticker -> open time of the newest bar already received (absent: none yet).
    bars : new bars (ts > last_ts of their ticker).
    through : also treat minutes up to and including this one as due (a closed session),
        for tickers with a known last bar or new bars.
    lookback : minutes older than the newest expected one minus this are not searched.

    Returns
    -------
    DataFrame with ticker, gap_start, gap_end (inclusive), one row per run.
    """
    names, start, end, count = _spans(last_ts, bars, through, lookback)
    if not names:
        return empty_gaps()
    minutes = _minutes(pd.Timestamp(start.min(), tz="UTC"), pd.Timestamp(end.max(), tz="UTC"))
    grid = minutes.asi8
    expected = np.searchsorted(grid, end, side="right") - np.searchsorted(grid, start, side="left")
    # the common case: as many bars as session minutes in the span -> nothing missing
    rows: list[dict[str, object]] = []
    suspects = np.flatnonzero(np.maximum(expected, 0) != count)
    if len(suspects):
        codes = pd.Index(names).get_indexer(bars["ticker"]) if not bars.empty else np.array([])
        stamps = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8 if not bars.empty else codes
    for i in suspects:
        window = grid[(grid >= start[i]) & (grid <= end[i])]
        missing = window[~np.isin(window, stamps[codes == i])]
        if len(missing):
            rows.extend(runs(names[i], pd.DatetimeIndex(missing, tz="UTC"), minutes))
    if not rows:
        return empty_gaps()
    out = pd.DataFrame(rows, columns=GAP_COLUMNS)
    for col in ("gap_start", "gap_end"):
        out[col] = pd.to_datetime(out[col], utc=True).dt.as_unit("ns")
    return out


def _spans(
    last_ts: dict[str, pd.Timestamp],
    bars: pd.DataFrame,
    through: pd.Timestamp | None,
    lookback: pd.Timedelta,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per ticker: the span of minutes due (start, end inclusive, ns) and the bars received."""
    if bars.empty:
        codes, names, stamps = np.array([], dtype="int64"), [], np.array([], dtype="int64")
    else:
        codes, uniques = pd.factorize(bars["ticker"])
        names = [str(t) for t in uniques]
        stamps = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
    if through is not None:
        known = set(names)
        names = names + sorted(t for t in last_ts if t not in known)
    n = len(names)
    newest = np.full(n, NA, dtype="int64")
    first = np.full(n, np.iinfo("int64").max, dtype="int64")
    np.maximum.at(newest, codes, stamps)
    np.minimum.at(first, codes, stamps)
    count = np.bincount(codes, minlength=n)
    end = newest if through is None else np.maximum(newest, through.as_unit("ns").value)
    if n == 0:
        return [], end, end, count
    last = np.array([last_ts[t].as_unit("ns").value if t in last_ts else NA for t in names])
    floor = end.max() - lookback.value
    start = np.where(last != NA, np.maximum(last + MINUTE.value, floor), first)
    keep = (end != NA) & (start != np.iinfo("int64").max)
    return [t for t, k in zip(names, keep, strict=True) if k], start[keep], end[keep], count[keep]


def missing_minutes(gaps: pd.DataFrame) -> set[tuple[str, pd.Timestamp]]:
    """Every (ticker, minute) covered by gap rows."""
    out: set[tuple[str, pd.Timestamp]] = set()
    for row in gaps.itertuples(index=False):
        for minute in _minutes(pd.Timestamp(row.gap_start), pd.Timestamp(row.gap_end)):
            out.add((str(row.ticker), minute))
    return out
