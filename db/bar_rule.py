"""What makes a 1-minute bar valid: the one rule for everything that stores a bar.

A bar (`BAR_COLUMNS`: ticker, ts, open, high, low, close, volume) is valid when

- it names a ticker and a time (`ts`, timezone-aware: the gateway refuses naive times in every
  table, `db.tables.naive_timestamps`);
- each price (`PRICE_FIELDS`) is a finite positive number (`valid_prices`);
- its volume is a finite number, not negative (`valid_volumes`);
- its high is not below its low.

Who applies it:

- the gateway: `db.writes.write_to_db` refuses a batch of `bars_1m` holding an invalid bar
  (`require_valid_bars`, the table's check in `db.tables.BARS`), so nothing of it is written;
- the write path's data-quality guard quarantines bars with an invalid price or volume under
  `zero_or_negative` (`workers.quality_guard`, with `valid_prices` and `valid_volumes`) and bars
  whose high is below their low under `ohlc_inconsistent`, before the gateway sees them;
- the sources' `workers.sources.base.clean_bars` drops the bars without a ticker or a time
  (`has_key`: they cannot be judged or stored) and keeps the others for the guard;
- the table's CHECK constraints (migrations 0001 and 0009) are the last line of defence;
  `tests/db/test_bar_rule.py` shows they refuse what this rule refuses.

Which valid bars are stored is a separate rule: regular-session minutes only
(`config.market_calendar.regular_session_mask`, applied by `clean_bars` and
`workers.bar_store.write_bars`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from db.errors import DataValidationError

BAR_COLUMNS = ["ticker", "ts", "open", "high", "low", "close", "volume"]
PRICE_FIELDS = ("open", "high", "low", "close")
VALUE_FIELDS = (*PRICE_FIELDS, "volume")


def valid_prices(values: np.ndarray) -> np.ndarray:
    """True where a price is a finite positive number (elementwise, any shape)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.isfinite(values) & (values > 0))


def valid_volumes(values: np.ndarray) -> np.ndarray:
    """True where a volume is a finite number, not negative (elementwise, any shape)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.isfinite(values) & (values >= 0))


def has_key(bars: pd.DataFrame) -> np.ndarray:
    """True for the rows of `bars` that name a ticker and a time."""
    return np.asarray(bars["ticker"].notna().to_numpy() & bars["ts"].notna().to_numpy())


def _numbers(bars: pd.DataFrame, col: str) -> np.ndarray:
    """A column as float64; what is not a number becomes NaN."""
    return np.asarray(pd.to_numeric(bars[col], errors="coerce").to_numpy(dtype="float64"))


def bar_faults(bars: pd.DataFrame) -> Iterator[str]:
    """Each part of the rule that rows of `bars` break, as a sentence with the count of rows, in
    the order of the rule (lazily: the gateway stops at the first). Only the columns `bars` has
    are judged, so a partial update of stored bars is judged on what it changes."""
    if {"ticker", "ts"} <= set(bars.columns):
        keyless = ~has_key(bars)
        if keyless.any():
            yield f"{int(keyless.sum())} row(s) with empty keys"
    present = [c for c in VALUE_FIELDS if c in bars.columns]
    values = {c: _numbers(bars, c) for c in present}
    for col in present:
        bad = ~np.isfinite(values[col])
        if bad.any():
            yield f"{int(bad.sum())} row(s) with NaN/inf/non-numeric '{col}'"
    if "volume" in values and (values["volume"] < 0).any():
        yield f"{int((values['volume'] < 0).sum())} row(s) negative 'volume'"
    if {"high", "low"} <= set(values):
        below = values["high"] < values["low"]
        if below.any():
            yield f"{int(below.sum())} row(s) with high < low"
    for col in PRICE_FIELDS:
        if col in values and (values[col] <= 0).any():
            yield f"non-positive '{col}' price"


def require_valid_bars(bars: pd.DataFrame) -> None:
    """Raise `DataValidationError` naming the first part of the rule a row of `bars` breaks."""
    fault = next(bar_faults(bars), None)
    if fault is not None:
        raise DataValidationError(f"bars_1m: {fault}")
