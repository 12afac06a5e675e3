"""The bar rule (`db.bar_rule`) and `bars_1m`'s CHECK constraints agree.

Each kind of bar the rule refuses, written straight to the table with SQL (no gateway), is
refused by the database too; the valid edge cases pass both. (A timezone-naive time is the one
part of the rule the table cannot check: a timestamptz column stores an instant either way, so
only the gateway can refuse it.)
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from db.bar_rule import BAR_COLUMNS, PRICE_FIELDS, bar_faults, require_valid_bars
from db.connections import connect
from db.errors import DataValidationError

GOOD: dict[str, Any] = {
    "ticker": "AAPL",
    "ts": pd.Timestamp("2024-03-04 14:30", tz="UTC"),
    "open": 100.0,
    "high": 101.0,
    "low": 99.0,
    "close": 100.5,
    "volume": 1000.0,
}
NAN, INF = float("nan"), float("inf")

# each kind of invalid bar, and what the rule says of it
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    **{
        f"{col} {name}": ({col: value}, message.format(col=col))
        for col in PRICE_FIELDS
        for name, value, message in (
            ("zero", 0.0, "non-positive '{col}' price"),
            ("negative", -1.0, "non-positive '{col}' price"),
            ("NaN", NAN, "NaN/inf/non-numeric '{col}'"),
            ("inf", INF, "NaN/inf/non-numeric '{col}'"),
            ("-inf", -INF, "NaN/inf/non-numeric '{col}'"),
        )
    },
    "volume negative": ({"volume": -1.0}, "negative 'volume'"),
    "volume NaN": ({"volume": NAN}, "NaN/inf/non-numeric 'volume'"),
    "volume inf": ({"volume": INF}, "NaN/inf/non-numeric 'volume'"),
    "volume -inf": ({"volume": -INF}, "NaN/inf/non-numeric 'volume'"),
    "high below low": ({"high": 98.0, "low": 99.0}, "high < low"),
    "no ticker": ({"ticker": None}, "empty keys"),
    "no time": ({"ts": None}, "empty keys"),
}
VALID_EDGES: dict[str, dict[str, Any]] = {
    "flat bar (high equals low)": {"open": 5.0, "high": 5.0, "low": 5.0, "close": 5.0},
    "no volume": {"volume": 0.0},
    "fractional volume": {"volume": 0.5},
    "tiny prices": {"open": 1e-300, "high": 2e-300, "low": 1e-300, "close": 1e-300},
    "huge prices": {"open": 1e300, "high": 1e300, "low": 1e300, "close": 1e300},
}

INSERT = text(
    "INSERT INTO bars_1m (ticker, ts, open, high, low, close, volume, source) "
    "VALUES (:ticker, :ts, :open, :high, :low, :close, :volume, 'bar-rule-test')"
)


def bar(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def store_with_sql(row: dict[str, Any]) -> None:
    """Insert `row` into bars_1m with plain SQL, then roll it back (nothing stays)."""
    with connect() as conn:
        inner = conn.begin_nested()
        conn.execute(INSERT, row)
        inner.rollback()


@pytest.mark.parametrize("case", sorted(INVALID))
def test_what_the_rule_refuses_the_table_refuses(case: str) -> None:
    changes, fault = INVALID[case]
    row = bar(**changes)
    frame = pd.DataFrame([row], columns=BAR_COLUMNS)
    assert any(fault in found for found in bar_faults(frame))
    with pytest.raises(DataValidationError):
        require_valid_bars(frame)
    with pytest.raises(IntegrityError):
        store_with_sql(row)


@pytest.mark.parametrize("case", sorted(VALID_EDGES))
def test_valid_edge_cases_pass_the_rule_and_the_table(case: str) -> None:
    row = bar(**VALID_EDGES[case])
    assert list(bar_faults(pd.DataFrame([row], columns=BAR_COLUMNS))) == []
    store_with_sql(row)
