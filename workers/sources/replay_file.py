"""Reading a replay file (CSV, gzipped CSV or Parquet of 1-minute bars), checked row by row.

A recorded file is data from outside: one malformed row must not stop the replay. Every row is
checked on load, and a row with a cell that cannot be used is left out and named in a warning:
the file, where the row is (`line N` of a CSV, counting the header as line 1; `row N` of a
Parquet file, from 1), the column and the value. The first `MAX_BAD_ROWS_NAMED` bad rows are
named one by one, the rest counted in one summary line; the good rows are replayed. A cell is
unusable when the ticker is empty, the time is missing or not a time, or a price or the volume
holds something other than a number (an empty price or volume is kept: a minute without trades).
A CSV line with the wrong number of fields is left out and named the same way. Only a file that
cannot be read, lacks a bar column or holds no usable row at all is refused (`ReplayFileError`).
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from pandas.errors import ParserWarning

from db.bar_rule import BAR_COLUMNS
from workers.sources.base import clean_bars

log = logging.getLogger(__name__)

MAX_BAD_ROWS_NAMED = 20  # bad rows named one by one in the log; the rest are counted
NUMBERS = ["open", "high", "low", "close", "volume"]
SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.+)")


class ReplayFileError(ValueError):
    """The replay file is missing, unreadable, lacks bar columns or holds no usable bar."""


class BadRow(NamedTuple):
    number: int  # the line (CSV) or row (Parquet) number, as a person finds it in the file
    position: int | None  # the row's place in the frame read (None: a CSV line left out)
    message: str  # "line 7, column ts: 'garbage' is not a time"


def load_bars_file(path: Path) -> pd.DataFrame:
    """Read a bars file (.csv, .csv.gz or .parquet) into the shared bar shape, sorted by time;
    bad rows are left out and logged (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise ReplayFileError(f"replay file {path} does not exist (settings.replay_path)")
    raw, unit, numbers, left_out = _read(path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in BAR_COLUMNS if c not in raw.columns]
    if missing:
        raise ReplayFileError(f"replay file {path} lacks column(s) {missing}; needs {BAR_COLUMNS}")
    blank = raw[BAR_COLUMNS].isna().all(axis=1).to_numpy()  # an empty line: nothing to name
    parsed = pd.DataFrame({"ts": _times(raw["ts"])} | {c: _numbers(raw[c]) for c in NUMBERS})
    bad = sorted(_bad_cells(raw, parsed, blank, unit, numbers) + left_out)
    _log_bad_rows(path, bad, int((~blank).sum()) + len(left_out))
    keep = ~blank
    keep[np.array([row.position for row in bad if row.position is not None], dtype=int)] = False
    raw = parsed[keep].assign(ticker=raw["ticker"][keep].astype(str).str.strip().str.upper())
    bars, dropped = clean_bars(raw)
    if dropped:
        log.warning("replay file %s: dropped %d unusable row(s)", path, dropped)
    outside = len(raw) - dropped - len(bars)
    if outside:
        log.info(
            "replay file %s: %d pre-/post-market bar(s) left out (regular-session bars only)",
            path,
            outside,
        )
    if bars.empty:
        first = f" (of {len(bad)} bad row(s), the first: {bad[0].message})" if bad else ""
        raise ReplayFileError(f"replay file {path} holds no usable bars{first}")
    bars = bars.drop_duplicates(["ticker", "ts"], keep="last")
    return bars.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)


def _read(path: Path) -> tuple[pd.DataFrame, str, list[int], list[BadRow]]:
    """The file's rows, the word and number that place each row in the file ("line", 7), and
    the CSV lines left out for their number of fields."""
    try:
        if path.suffix == ".parquet":
            raw = pd.read_parquet(path)
            return raw, "row", list(range(1, len(raw) + 1)), []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ParserWarning)
            raw = pd.read_csv(path, on_bad_lines="warn", skip_blank_lines=False)
    except (OSError, ValueError) as exc:
        raise ReplayFileError(f"cannot read replay file {path}: {exc}") from exc
    left_out: dict[int, str] = {}
    for warning in caught:
        if not issubclass(warning.category, ParserWarning):
            warnings.warn(warning.message, warning.category, stacklevel=2)
            continue
        for text in str(warning.message).splitlines():
            match = SKIPPED_LINE.match(text.strip())
            if match:
                left_out[int(match[1])] = match[2]
    numbers, line = [], 2  # line 1 is the header
    for _ in range(len(raw)):
        while line in left_out:
            line += 1
        numbers.append(line)
        line += 1
    return (
        raw,
        "line",
        numbers,
        [BadRow(n, None, f"line {n}: {what}") for n, what in left_out.items()],
    )


def _times(values: pd.Series) -> pd.Series:
    """The times as UTC (a time without a timezone means UTC); NaT where missing or not a time.
    One vectorised parse in the format of the first row, then each row it missed on its own."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": row by row
        ts = pd.to_datetime(values, utc=True, errors="coerce")
        missed = ts.isna() & values.notna()
        if missed.any():
            ts[missed] = pd.to_datetime(values[missed], utc=True, errors="coerce", format="mixed")
    return ts


def _bad_cells(
    raw: pd.DataFrame, parsed: pd.DataFrame, blank: np.ndarray, unit: str, numbers: list[int]
) -> list[BadRow]:
    """Each row with a cell that cannot be used, named by its first such cell (`parsed`: the
    times and numbers read, missing where a cell is empty or unusable)."""
    ticker = raw["ticker"]
    checks: list[tuple[str, pd.Series, str]] = [
        ("ticker", ticker.isna() | ticker.astype(str).str.strip().eq(""), "is not a ticker"),
        ("ts", parsed["ts"].isna(), "is not a time"),
        *((c, parsed[c].isna() & ~_empty(raw[c]), "is not a number") for c in NUMBERS),
    ]
    first = np.full(len(raw), -1)
    for k, (_, mask, _) in enumerate(checks):
        first[mask.to_numpy(dtype=bool) & (first < 0) & ~blank] = k
    out = []
    for i in np.flatnonzero(first >= 0):
        column, _, what = checks[first[i]]
        value = raw[column].iloc[i]
        message = f"{unit} {numbers[i]}, column {column}: {value!r} {what}"
        out.append(BadRow(numbers[i], int(i), message))
    return out


def _numbers(values: pd.Series) -> pd.Series:
    """The cells as float64: NaN where a cell is empty or not a number."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _empty(values: pd.Series) -> pd.Series:
    """Cells without a value (a missing price or volume: a minute without trades)."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.isna()
    return values.isna() | values.astype(str).str.strip().eq("")


def _log_bad_rows(path: Path, bad: list[BadRow], rows: int) -> None:
    for row in bad[:MAX_BAD_ROWS_NAMED]:
        log.warning("replay file %s, %s; row skipped", path, row.message)
    if len(bad) > MAX_BAD_ROWS_NAMED:
        log.warning(
            "replay file %s: %d more bad row(s) skipped, not named one by one",
            path,
            len(bad) - MAX_BAD_ROWS_NAMED,
        )
    if bad:
        log.warning(
            "replay file %s: %d of %d row(s) skipped as malformed; the other %d are replayed",
            path,
            len(bad),
            rows,
            rows - len(bad),
        )
