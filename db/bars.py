"""Every read of the 1-minute bars and their aggregates: one query per question.

Prices are stored raw (as the source served them) and adjusted for splits and dividends when
read: each bar is multiplied by the cumulative factors of the applied corporate actions whose
ex-date is after it (the `bar_adjustments` view over the `corporate_actions` ledger; see
`workers.corporate_action_handler`). Every function here that returns prices returns them
adjusted, so training, serving, the charts and the signal markers all see one scale, and
nothing stored, compressed TimescaleDB history included, is ever rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text

from core.timeutil import NEW_YORK, ny_midnight, utc
from db.flavour import has_aggregates
from db.reads import read_columns, read_from_db, read_rows

OHLCV = ("open", "high", "low", "close", "volume")
INTERVALS = {"1m": "1 minute", "5m": "5 minutes", "1h": "1 hour", "1d": "1 day"}
CANDLE_COLUMNS = {"ts": "timestamptz"} | dict.fromkeys(OHLCV, "float8")
AGGREGATE_VIEWS = {"5m": "bars_5m", "1h": "bars_1h", "1d": "bars_1d"}
UTC_ORIGIN = "2000-01-03T00:00:00+00:00"
# the cumulative factors of the actions after each bar (factor 1 when none)
ADJUSTED_VALUES = (
    "b.ts, b.open * coalesce(a.price_factor, 1) AS open, "
    "b.high * coalesce(a.price_factor, 1) AS high, b.low * coalesce(a.price_factor, 1) AS low, "
    "b.close * coalesce(a.price_factor, 1) AS close, "
    "b.volume * coalesce(a.volume_factor, 1) AS volume"
)
ADJUSTED = f"b.ticker, {ADJUSTED_VALUES}"
ADJUST_JOIN = (
    "LEFT JOIN bar_adjustments a ON a.ticker = b.ticker "
    "AND b.ts >= a.valid_from AND b.ts < a.valid_to"
)


def _bar_frame(query: str, params: dict[str, Any]) -> pd.DataFrame:
    """The rows of a bar query ([ticker,] ts, OHLCV) as typed columns: ts UTC nanoseconds,
    prices and volume float64. Built from the driver's rows directly: type inference
    (`pandas.read_sql`) cost more than the database's own time for a year of daily candles."""
    names, rows = read_rows(query, params)
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    data: dict[str, Any] = {}
    for name, values in zip(names, columns, strict=True):
        if name == "ts":
            data[name] = pd.to_datetime(list(values), utc=True).as_unit("ns")
        elif name in OHLCV:
            data[name] = np.asarray(values, dtype="float64")
        else:
            data[name] = pd.array(list(values), dtype="str")
    return pd.DataFrame(data, columns=names)


def read_bars(tickers: Sequence[str], start: Any, end: Any) -> pd.DataFrame:
    """Adjusted bars of `tickers` with start <= ts < end, ordered by ticker and time."""
    return _bar_frame(
        f"SELECT {ADJUSTED} FROM bars_1m b {ADJUST_JOIN} "  # noqa: S608 (fixed names)
        "WHERE b.ticker = ANY(:tickers) AND b.ts >= :start AND b.ts < :end "
        "ORDER BY b.ticker, b.ts",
        {"tickers": list(tickers), "start": utc(start), "end": utc(end)},
    )


def read_last_bars(tickers: Sequence[str], per_ticker: int, before: Any) -> pd.DataFrame:
    """The last `per_ticker` adjusted bars of each ticker with ts < `before` (one index scan
    per ticker), ordered by ticker and time."""
    frame = _bar_frame(
        "SELECT last.* FROM unnest(CAST(:tickers AS text[])) AS u(tk) CROSS JOIN LATERAL "  # noqa: S608 (fixed names)
        f"(SELECT {ADJUSTED} FROM bars_1m b {ADJUST_JOIN} "
        "WHERE b.ticker = u.tk AND b.ts < :before ORDER BY b.ts DESC LIMIT :n) AS last",
        {"tickers": list(tickers), "before": utc(before), "n": int(per_ticker)},
    )
    return frame.sort_values(["ticker", "ts"], kind="stable", ignore_index=True)


def read_raw_neighbours(
    tickers: Sequence[str],
    first: Sequence[Any],
    last: Sequence[Any],
    n_before: int,
    n_after: int,
) -> pd.DataFrame:
    """The stored bars around a write, raw as stored (not adjusted): per ticker (with the first
    and last time of its new bars) the last `n_before` bars before `first` and the first
    `n_after` bars after `last`, in no particular order (the data-quality guard's history; one
    index scan each, the rows in binary COPY: a poll of 500 tickers reads 61,000 of them)."""
    raw = "ts, open, high, low, close, volume FROM bars_1m WHERE ticker = u.tk"
    columns = read_columns(
        "SELECT u.k, x.* FROM unnest(CAST(:t AS text[]), CAST(:lo AS timestamptz[]), "  # noqa: S608 (fixed names)
        "CAST(:hi AS timestamptz[])) WITH ORDINALITY AS u(tk, lo, hi, k) CROSS JOIN LATERAL ("
        f"(SELECT {raw} AND ts < u.lo ORDER BY ts DESC LIMIT :nb) UNION ALL "
        f"(SELECT {raw} AND ts > u.hi ORDER BY ts LIMIT :na)) AS x",
        {
            "t": list(tickers),
            "lo": [utc(x).to_pydatetime() for x in first],
            "hi": [utc(x).to_pydatetime() for x in last],
            "nb": int(n_before),
            "na": int(n_after),
        },
        {"k": "int8", "ts": "timestamptz"} | dict.fromkeys(OHLCV, "float8"),
    )
    names = np.asarray(list(tickers), dtype=object)
    return pd.DataFrame(
        {
            "ticker": names[columns["k"] - 1],
            "ts": pd.DatetimeIndex(columns["ts"]).tz_localize("UTC").as_unit("ns"),
            **{c: columns[c] for c in OHLCV},
        }
    )


def newest_bar_ts(tickers: Sequence[str] | None = None) -> pd.Timestamp | None:
    """The newest stored bar's time (of `tickers`, or of all), or None without bars."""
    if tickers is None:
        frame = read_from_db("SELECT max(ts) AS ts FROM bars_1m")
    else:
        frame = read_from_db(
            "SELECT max(ts) AS ts FROM bars_1m WHERE ticker = ANY(:t)", {"t": list(tickers)}
        )
    value = frame["ts"].iloc[0] if len(frame) else None
    return None if value is None or pd.isna(value) else utc(value)


def newest_bar_per_ticker(tickers: Sequence[str]) -> dict[str, pd.Timestamp]:
    """The newest stored bar's time per ticker (one index probe each; tickers without bars
    are left out)."""
    frame = read_from_db(
        "SELECT t.ticker, (SELECT max(b.ts) FROM bars_1m b WHERE b.ticker = t.ticker) AS ts "
        "FROM unnest(CAST(:tickers AS text[])) AS t(ticker)",
        {"tickers": list(tickers)},
    ).dropna(subset=["ts"])
    return {str(r.ticker): utc(r.ts).as_unit("ns") for r in frame.itertuples(index=False)}


def bar_extent(ticker: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """First and last bar time of `ticker` (None, None without bars)."""
    frame = read_from_db(
        "SELECT (SELECT min(ts) FROM bars_1m WHERE ticker = :t) AS first, "
        "(SELECT max(ts) FROM bars_1m WHERE ticker = :t) AS last",
        {"t": ticker},
    )
    first, last = frame["first"].iloc[0], frame["last"].iloc[0]
    return (
        None if first is None or pd.isna(first) else utc(first),
        None if last is None or pd.isna(last) else utc(last),
    )


def bars_per_session_day(
    tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> dict[pd.Timestamp, int]:
    """Bars stored per New York date in [start, end) for `tickers`."""
    counts = read_from_db(
        "SELECT CAST(ts AT TIME ZONE :tz AS date) AS day, count(*) AS n FROM bars_1m "
        "WHERE ticker = ANY(CAST(:t AS text[])) AND ts >= :lo AND ts < :hi GROUP BY 1",
        {"tz": NEW_YORK, "t": list(tickers), "lo": utc(start), "hi": utc(end)},
    )
    return {pd.Timestamp(r.day): int(r.n) for r in counts.itertuples(index=False)}


def raw_daily_bars(tickers: Sequence[str], first: date, last: date) -> pd.DataFrame:
    """The stored bars of `tickers` resampled to their New York session date, raw as stored
    (not adjusted: what the source served, for the daily reconciliation), sessions `first` to
    `last` inclusive: ticker, session (date), open (the first bar's), high (the highest), low
    (the lowest), close (the last bar's), volume (summed), minutes (bars stored); ordered by
    ticker and session. Sessions without a stored bar have no row."""
    frame = read_from_db(
        "SELECT ticker, CAST(ts AT TIME ZONE :tz AS date) AS session, "
        "(array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low, "
        "(array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume) AS volume, "
        "count(*) AS minutes FROM bars_1m "
        "WHERE ticker = ANY(CAST(:t AS text[])) AND ts >= :lo AND ts < :hi "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        {
            "tz": NEW_YORK,
            "t": list(tickers),
            "lo": ny_midnight(first),
            "hi": ny_midnight(last + timedelta(days=1)),
        },
    )
    return frame.astype(dict.fromkeys(OHLCV, "float64") | {"minutes": "int64"})


def raw_close_before(ticker: str, before: pd.Timestamp) -> float | None:
    """The newest stored raw (unadjusted) close before `before`, as the source served it."""
    frame = read_from_db(
        "SELECT close FROM bars_1m WHERE ticker = :t AND ts < :before ORDER BY ts DESC LIMIT 1",
        {"t": ticker, "before": utc(before)},
    )
    return None if frame.empty else float(frame["close"].iloc[0])


# --------------------------------------------------------------------------- the chart's bars


def _interval_sql(interval: str) -> str:
    if interval == "1m":
        return (
            f"SELECT {ADJUSTED_VALUES} FROM bars_1m b {ADJUST_JOIN} "  # noqa: S608 (fixed names)
            "WHERE b.ticker = :t AND b.ts >= :start AND b.ts < :end ORDER BY b.ts"
        )
    if has_aggregates():
        # raw buckets from the continuous aggregate, adjusted by the factor of the bucket's
        # first bar: ex-dates fall between sessions, so one factor holds for a whole bucket
        view = AGGREGATE_VIEWS[interval]  # a fixed name, never user input
        return (
            f"SELECT {ADJUSTED_VALUES} "  # noqa: S608 (fixed names)
            f"FROM {view} b LEFT JOIN bar_adjustments a ON a.ticker = b.ticker "  # noqa: S608
            "AND b.first_bar >= a.valid_from AND b.first_bar < a.valid_to "
            "WHERE b.ticker = :t AND b.ts >= :start AND b.ts < :end ORDER BY b.ts"
        )
    return (
        "SELECT date_bin(CAST(:width AS interval), ts, CAST(:origin AS timestamptz)) "  # noqa: S608 (fixed names)
        "AS ts, (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low, "
        "(array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume) AS volume "
        f"FROM (SELECT {ADJUSTED} FROM bars_1m b {ADJUST_JOIN} "
        "WHERE b.ticker = :t AND b.ts >= :start AND b.ts < :end) AS adjusted "
        "GROUP BY 1 ORDER BY 1"
    )


def interval_bars(ticker: str, interval: str, start: Any, end: Any) -> pd.DataFrame:
    """Adjusted OHLCV of `ticker` at `interval` (1m/5m/1h/1d): every whole bucket from the one
    holding `start` to the last one starting before `end`. TimescaleDB's continuous aggregates
    when present (real-time: the newest bucket included), `date_bin` over the 1-minute bars
    otherwise; the same buckets either way, starting at UTC boundaries."""
    if interval not in INTERVALS:
        raise ValueError(f"interval {interval!r} is not one of {list(INTERVALS)}")
    first = utc(start).floor(pd.Timedelta(INTERVALS[interval]))
    params: dict[str, Any] = {"t": ticker, "start": first, "end": utc(end)}
    if interval != "1m":
        params |= {"width": INTERVALS[interval], "origin": UTC_ORIGIN}
    columns = read_columns(_interval_sql(interval), params, CANDLE_COLUMNS)
    ts = pd.DatetimeIndex(columns.pop("ts"), tz="UTC").as_unit("ns")
    return pd.DataFrame({"ts": ts, **columns})


# --------------------------------------------------------------------------- the action ledger


def adjustment_stamp() -> pd.Timestamp | None:
    """When the last corporate action was applied: adjusted prices of history change then."""
    value = read_from_db("SELECT max(applied_at) AS at FROM corporate_actions")["at"].iloc[0]
    return None if value is None or pd.isna(value) else utc(value)


def due_actions(today: date, tickers: Sequence[str]) -> pd.DataFrame:
    """Recorded, not yet applied corporate actions with ex-date on or before `today`."""
    return read_from_db(
        "SELECT ticker, ex_date, action_type, value FROM corporate_actions "
        "WHERE applied_at IS NULL AND ex_date <= :today AND ticker = ANY(CAST(:t AS text[])) "
        "ORDER BY ex_date, ticker, action_type",
        {"today": today, "t": list(tickers)},
    )


def ledger_actions(tickers: Sequence[str], first: date, last: date) -> pd.DataFrame:
    """The ledger's actions (applied or not) of `tickers` with first <= ex-date <= last:
    ticker, ex_date, action_type, value."""
    return read_from_db(
        "SELECT ticker, ex_date, action_type, value FROM corporate_actions "
        "WHERE ex_date BETWEEN :first AND :last AND ticker = ANY(CAST(:t AS text[])) "
        "ORDER BY ex_date, ticker, action_type",
        {"first": first, "last": last, "t": list(tickers)},
    )


def stored_actions(actions: pd.DataFrame) -> pd.DataFrame:
    """The ledger's rows for the keys of `actions` (ticker, ex_date, action_type): those keys,
    with the stored value and whether the action is applied."""
    return read_from_db(
        "SELECT c.ticker, c.ex_date, c.action_type, c.value, c.applied_at IS NOT NULL AS applied "
        "FROM corporate_actions c JOIN unnest(CAST(:t AS text[]), CAST(:d AS date[]), "
        "CAST(:k AS text[])) AS u(ticker, ex_date, kind) "
        "ON c.ticker = u.ticker AND c.ex_date = u.ex_date AND c.action_type = u.kind",
        {
            "t": [str(t) for t in actions["ticker"]],
            "d": [pd.Timestamp(d).date() for d in actions["ex_date"]],
            "k": [str(k) for k in actions["action_type"]],
        },
    )


def correct_action_value(
    conn: Connection, ticker: str, ex_date: date, action_type: str, value: float, source: str
) -> bool:
    """Replace the value of an action not yet applied, in `conn`'s transaction; False when it
    was applied meanwhile (an applied action is never changed here)."""
    done = conn.execute(
        text(
            "UPDATE corporate_actions SET value = :v, source = :s "
            "WHERE ticker = :t AND ex_date = :d AND action_type = :k AND applied_at IS NULL"
        ),
        {"v": value, "s": source, "t": ticker, "d": ex_date, "k": action_type},
    ).rowcount
    return bool(done)


def mark_action_applied(
    conn: Connection, ticker: str, ex_date: date, action_type: str, factor: float
) -> bool:
    """Stamp an action applied with its price factor, in `conn`'s transaction; False when it
    was applied already (the update is conditional, so an action is applied once)."""
    done = conn.execute(
        text(
            "UPDATE corporate_actions SET applied_at = now(), factor = :f "
            "WHERE ticker = :t AND ex_date = :d AND action_type = :k AND applied_at IS NULL"
        ),
        {"f": factor, "t": ticker, "d": ex_date, "k": action_type},
    ).rowcount
    return bool(done)
