"""Gap detection on the exchange calendar: which session minutes lack a bar.

A gap is a run of consecutive session minutes of one ticker, within one session, for which no
bar arrived although a later bar did (or the session closed). Gaps go to `backfill_queue`;
a minute that the backfill also finds empty is a minute without trades, not a gap.
"""

from __future__ import annotations

import pandas as pd

from config.market_calendar import xnys

GAP_COLUMNS = ["ticker", "gap_start", "gap_end"]
MINUTE = pd.Timedelta(minutes=1)


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
        for tickers with a known last bar.
    lookback : minutes older than the newest expected one minus this are not searched.

    Returns
    -------
    DataFrame with ticker, gap_start, gap_end (inclusive), one row per run.
    """
    newest = bars.groupby("ticker")["ts"].max().to_dict() if not bars.empty else {}
    ends: dict[str, pd.Timestamp] = {}
    for ticker in set(newest) | (set(last_ts) if through is not None else set()):
        candidates = [t for t in (newest.get(ticker), through) if t is not None]
        if ticker not in last_ts and ticker not in newest:
            continue
        ends[ticker] = max(candidates)
    if not ends:
        return empty_gaps()
    hi = max(ends.values())
    floor = hi - lookback
    starts = {
        t: max(last_ts[t] + MINUTE, floor)
        if t in last_ts
        else bars.loc[bars["ticker"] == t, "ts"].min()
        for t in ends
    }
    minutes = _minutes(min(starts.values()), hi)
    received = bars.groupby("ticker")["ts"] if not bars.empty else None
    rows: list[dict[str, object]] = []
    for ticker, end in sorted(ends.items()):
        span = minutes[(minutes >= starts[ticker]) & (minutes <= end)]
        have = pd.DatetimeIndex(received.get_group(ticker)) if ticker in newest else None
        missing = span if have is None else span[~span.isin(have)]
        rows.extend(runs(ticker, missing, minutes))
    if not rows:
        return empty_gaps()
    out = pd.DataFrame(rows, columns=GAP_COLUMNS)
    for col in ("gap_start", "gap_end"):
        out[col] = pd.to_datetime(out[col], utc=True).dt.as_unit("ns")
    return out


def missing_minutes(gaps: pd.DataFrame) -> set[tuple[str, pd.Timestamp]]:
    """Every (ticker, minute) covered by gap rows."""
    out: set[tuple[str, pd.Timestamp]] = set()
    for row in gaps.itertuples(index=False):
        for minute in _minutes(pd.Timestamp(row.gap_start), pd.Timestamp(row.gap_end)):
            out.add((str(row.ticker), minute))
    return out
