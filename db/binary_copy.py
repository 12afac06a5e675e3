"""PostgreSQL's binary COPY format, decoded into numpy arrays with no Python object per value.

`record_dtype(columns)` is the layout of one row of fixed-width columns; `decode(data, record,
columns)` checks a `COPY ... TO STDOUT (FORMAT binary)` payload against it and returns each
column as an array: timestamptz as UTC datetime64[us], float8 as float64, int8 as int64. The
format carries lengths, not types, so only NULLs, other widths and infinite timestamps are
detected; the column types are the caller's promise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from db.errors import DataValidationError

# fixed-width types as the server sends them (big-endian)
BINARY_TYPES = {"timestamptz": ">i8", "float8": ">f8", "int8": ">i8"}
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_PG_EPOCH_US = int(pd.Timestamp("2000-01-01").value // 1000)  # timestamptz counts from here
_PG_INFINITY = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max])  # -/+infinity


def record_dtype(columns: Mapping[str, str]) -> np.dtype:
    """One row of `columns` (name -> timestamptz, float8 or int8) as the format lays it out:
    the field count, then each field's length and value."""
    layout = [("fields", ">i2")]
    for name, kind in columns.items():
        layout += [(f"{name}__len", ">i4"), (name, BINARY_TYPES[kind])]
    return np.dtype(layout)


def decode(data: memoryview, record: np.dtype, columns: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The columns of a binary COPY payload whose rows are `record` (`record_dtype(columns)`)."""
    if bytes(data[:11]) != _SIGNATURE:
        raise DataValidationError("binary COPY: unexpected header")
    body = data[19 + int.from_bytes(data[15:19], "big") : len(data) - 2]  # header, trailer
    if len(body) % record.itemsize:
        raise DataValidationError(f"binary COPY: rows are not {list(columns)}, or hold NULLs")
    rows = np.frombuffer(body, dtype=record)
    if (rows["fields"] != len(columns)).any() or any(
        (rows[f"{name}__len"] != 8).any() for name in columns
    ):
        raise DataValidationError(f"binary COPY: rows are not {list(columns)}, or hold NULLs")
    out: dict[str, np.ndarray] = {}
    for name, kind in columns.items():
        if kind == "timestamptz":
            us = rows[name].astype("int64")
            if np.isin(us, _PG_INFINITY).any():
                raise DataValidationError(f"binary COPY: {name} holds an infinite timestamp")
            out[name] = (us + _PG_EPOCH_US).astype("datetime64[us]")
        else:
            out[name] = rows[name].astype("float64" if kind == "float8" else "int64")
    return out
