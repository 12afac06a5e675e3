"""The bar rule (`db.bar_rule`) in `bars_1m`'s CHECK constraints: finite positive prices and a
finite volume. Migration 0001 refuses a negative volume and a high below its low; PostgreSQL's
double precision holds NaN and infinities, which compare above every number (so NaN passes
`volume >= 0`), and a price of zero or below passed too. Every bar stored went through the
gateway, which refuses all of these, so existing rows already comply (the constraints are
checked against them as they are added, TimescaleDB's compressed chunks included).
"""

from __future__ import annotations

NAME = "bars_1m: finite positive prices, finite volume"

_FINITE_POSITIVE = " AND ".join(
    f"{col} > 0 AND {col} < 'Infinity'" for col in ("open", "high", "low", "close")
)

UP = [
    f"ALTER TABLE bars_1m ADD CONSTRAINT bars_1m_prices_finite_positive CHECK ({_FINITE_POSITIVE})",
    "ALTER TABLE bars_1m ADD CONSTRAINT bars_1m_volume_finite CHECK (volume < 'Infinity')",
]

DOWN = [
    "ALTER TABLE bars_1m DROP CONSTRAINT IF EXISTS bars_1m_volume_finite",
    "ALTER TABLE bars_1m DROP CONSTRAINT IF EXISTS bars_1m_prices_finite_positive",
]
