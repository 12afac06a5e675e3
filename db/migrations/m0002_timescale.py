"""TimescaleDB when present: bars become a compressed hypertable with 5m/1h/1d aggregates.

Without the `timescaledb` extension (or with `TIMESCALEDB=off`) this migration changes nothing,
and the plain tables of 0001 serve (the app aggregates with `date_bin` instead). The work is
`db.timescale.ensure`, which `python -m db.migrate up` also runs after every upgrade, so a
database whose server gains TimescaleDB later is converted then, its history kept.
"""

from __future__ import annotations

from typing import Any

from db import timescale

NAME = "timescaledb hypertable, compression, continuous aggregates (when available)"
NEEDS_AUTOCOMMIT = True  # continuous aggregates cannot be created inside a transaction


def up(cur: Any) -> None:
    timescale.ensure(cur)


def down(cur: Any) -> None:
    timescale.drop(cur)
