"""The data-quality guard's arrays: every ticker's stored and new bars as one set of numpy
arrays ordered by (ticker, time), and the windows over them (`workers.quality_guard`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from db.bar_rule import BAR_COLUMNS, VALUE_FIELDS

NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Bars:
    """History and new bars of all tickers as arrays, ordered by (ticker, ts)."""

    code: np.ndarray  # ticker number per row (an index into `names`)
    names: np.ndarray
    ts: np.ndarray  # int64 UTC ns
    price: np.ndarray  # (n, 4): open, high, low, close
    volume: np.ndarray
    is_new: np.ndarray
    start: np.ndarray  # first row of the row's ticker
    end: np.ndarray  # one past its last row
    session: np.ndarray  # day number of the session (the UTC date of a regular-session bar)

    @property
    def close(self) -> np.ndarray:
        return self.price[:, 3]


def _columns(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """UTC ns times and (n, 5) open, high, low, close, volume of a bar frame."""
    ts = part["ts"]
    if str(ts.dtype) != "datetime64[ns, UTC]":
        ts = pd.to_datetime(ts, utc=True).dt.as_unit("ns")
    values = [part[c].to_numpy(np.float64, na_value=np.nan) for c in VALUE_FIELDS]
    return np.asarray(ts.array.asi8), np.column_stack(values)


def _codes(parts: list[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    """One number per ticker across the frames, and the ticker of each number."""
    number: dict[str, int] = {}
    codes = []
    for part in parts:
        part_codes, uniques = part["ticker"].array.factorize()
        mapping = [number.setdefault(str(u), len(number)) for u in uniques]  # per ticker
        codes.append(np.asarray(mapping, np.int64)[part_codes])
    return np.concatenate(codes), np.asarray(list(number), object)


def prepare(new: pd.DataFrame, history: pd.DataFrame | None) -> Bars:
    parts = [new] if history is None or history.empty else [history, new]
    missing = [c for c in BAR_COLUMNS if any(c not in part.columns for part in parts)]
    if missing:
        raise ValueError(f"bars lack the column(s) {missing}: expected {BAR_COLUMNS}")
    code, names = _codes(parts)
    columns = [_columns(part) for part in parts]
    ts = np.concatenate([t for t, _ in columns])
    values = np.concatenate([v for _, v in columns])
    is_new = np.arange(len(ts)) >= len(ts) - len(new)
    return arrange(code, names, ts, values, is_new)


def arrange(
    code: np.ndarray, names: np.ndarray, ts: np.ndarray, values: np.ndarray, is_new: np.ndarray
) -> Bars:
    """`Bars` from rows of ticker numbers (into `names`), UTC ns times, (n, 5) OHLCV and the new
    flag, in any order (rows already ordered by ticker and time are not sorted again); a new bar
    at the time of a stored one replaces it."""
    ordered = len(code) < 2 or bool(
        (np.diff(code) >= 0).all() and ((np.diff(ts) > 0) | (np.diff(code) > 0)).all()
    )
    if not ordered:
        order = np.lexsort((is_new, ts, code))
        code, ts, values, is_new = code[order], ts[order], values[order], is_new[order]
    keep = np.r_[(code[1:] != code[:-1]) | (ts[1:] != ts[:-1]), True]  # a re-sent bar wins
    if not keep.all():
        code, ts, values, is_new = code[keep], ts[keep], values[keep], is_new[keep]
    rows = np.arange(len(code))
    first = np.r_[True, code[1:] != code[:-1]]
    start = np.maximum.accumulate(np.where(first, rows, 0))
    end = np.minimum.accumulate(np.where(np.r_[first[1:], True], rows + 1, len(code))[::-1])
    session = ts // NS_PER_DAY
    return Bars(code, names, ts, values[:, :4], values[:, 4], is_new, start, end[::-1], session)


def window(b: Bars, values: np.ndarray, rows: np.ndarray, offset: int, size: int) -> np.ndarray:
    """values[row + offset + j] for j < size, NaN outside the row's ticker: (len(rows), size)."""
    idx = rows[:, None] + offset + np.arange(size)[None, :]
    inside = (idx >= b.start[rows, None]) & (idx < b.end[rows, None])
    return np.where(inside, values[np.clip(idx, 0, len(values) - 1)], np.nan)


def row_median(win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring median of each row (NaN for none) and its count of values."""
    count = np.sum(~np.isnan(win), axis=1)
    ordered = np.sort(win, axis=1)  # NaN last
    r = np.arange(len(win))
    lo, hi = np.maximum((count - 1) // 2, 0), np.maximum(count // 2, 0)
    return np.where(count > 0, 0.5 * (ordered[r, lo] + ordered[r, hi]), np.nan), count
