"""The last raw bars of each ticker as a writer stored them (`GuardTail`), kept by a process
that writes the newest bars over and over, so the data-quality guard judges its writes without
reading the stored bars (`workers.bar_store.write_bars(..., tail=...)`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from db.bar_rule import BAR_COLUMNS, VALUE_FIELDS
from workers.guard_arrays import Bars, arrange
from workers.guard_rules import GuardParams


def _ohlcv(bars: pd.DataFrame) -> np.ndarray:
    """(n, 5) open, high, low, close, volume as float64 (column by column: cheaper than
    selecting the five as a frame)."""
    return np.column_stack([bars[c].to_numpy(np.float64) for c in VALUE_FIELDS])


class GuardTail:
    """The last `depth` raw bars of each ticker as this process stored them, kept by a process
    that writes the newest bars over and over (the live price ingestor: `write_bars(...,
    tail=...)`), so its guard reads no history from the database: the poll of 500 tickers would
    otherwise read 61,000 stored bars each minute.

    Trusted only while no other write of `bars_1m` came between two of this process's own: every
    write draws a number from the `bar_writes` sequence (`db.quality.open_bars`), and a number
    that is not the last one plus one means another write (a backfill, seeding, an analyst's
    decision) or a failed one came between. Such a write, one with more than one bar of a
    ticker, a bar not after the newest kept, a ticker not kept, a bar in quarantine, or anything
    the guard flags reads its history from the database, and the tail is rebuilt from it.
    """

    def __init__(self, depth: int | None = None) -> None:
        self.depth = depth or GuardParams().history_bars
        self.seq: int | None = None
        self.index: dict[str, int] = {}
        self.ts = np.zeros((0, self.depth), np.int64)
        self.values = np.zeros((0, self.depth, 5))
        self.count = np.zeros(0, np.int64)  # bars kept per ticker, right-aligned in its row

    def _rows(self, new: pd.DataFrame, stamp: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The tail rows of `new`'s tickers and its bar times, when the tail stands in for the
        stored bars of this write."""
        if self.seq is None or stamp != self.seq + 1:
            return None
        rows = np.fromiter((self.index.get(t, -1) for t in new["ticker"]), np.int64, len(new))
        if (rows < 0).any() or len(np.unique(rows)) != len(rows) or (self.count[rows] == 0).any():
            return None
        ts = np.asarray(new["ts"].array.asi8, np.int64)
        if (ts <= self.ts[rows, -1]).any():
            return None
        return rows, ts

    def arranged(self, new: pd.DataFrame, stamp: int) -> Bars | None:
        """The bars to judge (each ticker's tail, then its new bar), or None: read them."""
        found = self._rows(new, stamp)
        if found is None:
            return None
        rows, ts_new = found
        d = self.depth
        ts = np.concatenate([self.ts[rows], ts_new[:, None]], axis=1)
        values = np.concatenate([self.values[rows], _ohlcv(new)[:, None, :]], axis=1)
        valid = (np.arange(d + 1)[None, :] >= (d - self.count[rows])[:, None]).ravel()
        code = np.repeat(np.arange(len(rows)), d + 1)[valid]
        is_new = np.tile(np.arange(d + 1) == d, len(rows))[valid]
        names = new["ticker"].to_numpy(object)
        return arrange(code, names, ts.ravel()[valid], values.reshape(-1, 5)[valid], is_new)

    def advance(self, new: pd.DataFrame, stamp: int) -> bool:
        """Add a write's stored bars (one per ticker, after the tail); False if they do not fit."""
        found = self._rows(new, stamp)
        if found is None:
            return False
        rows, ts = found
        self.ts[rows] = np.concatenate([self.ts[rows, 1:], ts[:, None]], axis=1)
        new_values = _ohlcv(new)[:, None, :]
        self.values[rows] = np.concatenate([self.values[rows, 1:], new_values], axis=1)
        self.count[rows] = np.minimum(self.count[rows] + 1, self.depth)
        self.seq = stamp
        return True

    def rebuild(self, history: pd.DataFrame, stored: pd.DataFrame, stamp: int) -> None:
        """Keep the last bars of the tickers of a write from the stored bars read for it and the
        bars it stored; other tickers' tails stay when no other write came between."""
        if self.seq is None or stamp != self.seq + 1:
            self.forget()
        frame = pd.concat([history[BAR_COLUMNS], stored[BAR_COLUMNS]], ignore_index=True)
        frame = (
            frame.sort_values(["ticker", "ts"], kind="stable").groupby("ticker").tail(self.depth)
        )
        ts = np.asarray(pd.DatetimeIndex(frame["ts"]).asi8, np.int64)
        values = frame[list(VALUE_FIELDS)].to_numpy(np.float64)
        tickers = frame["ticker"].to_numpy(object)
        bounds = np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            row = self._row(str(tickers[lo]))
            n = hi - lo
            self.ts[row, self.depth - n :] = ts[lo:hi]
            self.values[row, self.depth - n :] = values[lo:hi]
            self.count[row] = n
        self.seq = stamp

    def _row(self, ticker: str) -> int:
        row = self.index.get(ticker)
        if row is None:
            row = self.index[ticker] = len(self.index)
            self.ts = np.vstack([self.ts, np.zeros((1, self.depth), np.int64)])
            self.values = np.concatenate([self.values, np.zeros((1, self.depth, 5))])
            self.count = np.r_[self.count, 0]
        return row

    def forget(self) -> None:
        self.__init__(self.depth)  # type: ignore[misc]
