"""Which database serves, and what TimescaleDB adds to it: versions, hypertables, aggregates."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from db import timescale
from db.connections import autocommit_cursor, engine_generation
from db.reads import read_from_db

_HYPERTABLE_CATALOG = "timescaledb_information.hypertables"
_hypertable_names: tuple[int, frozenset[str]] | None = None  # (engine generation, names)


@dataclass(frozen=True)
class Flavour:
    """Which database serves: the PostgreSQL version and TimescaleDB's, if installed."""

    postgres: str
    timescaledb: str | None

    def __str__(self) -> str:
        ts = f"TimescaleDB {self.timescaledb}" if self.timescaledb else "no TimescaleDB"
        return f"PostgreSQL {self.postgres}, {ts}"


def database_flavour() -> Flavour:
    """The server's PostgreSQL version and the TimescaleDB version in this database."""
    frame = read_from_db(
        "SELECT current_setting(:v) AS postgres, "
        "(SELECT extversion FROM pg_extension WHERE extname = :ext) AS timescaledb",
        {"v": "server_version", "ext": "timescaledb"},
    )
    version = frame["timescaledb"].iloc[0]
    return Flavour(
        str(frame["postgres"].iloc[0]).split()[0], None if pd.isna(version) else str(version)
    )


def hypertables() -> frozenset[str]:
    """Tables that are TimescaleDB hypertables (empty on plain PostgreSQL); cached per engine
    (`db.connections.dispose_engine` and `forget_schema` make it read them again)."""
    global _hypertable_names
    generation = engine_generation()
    if _hypertable_names is None or _hypertable_names[0] != generation:
        frame = read_from_db(
            "SELECT to_regclass(:catalog) IS NOT NULL AS ts", {"catalog": _HYPERTABLE_CATALOG}
        )
        names: frozenset[str] = frozenset()
        if bool(frame["ts"].iloc[0]):
            rows = read_from_db(f"SELECT hypertable_name FROM {_HYPERTABLE_CATALOG}")  # noqa: S608 (fixed names)
            names = frozenset(str(n) for n in rows["hypertable_name"])
        _hypertable_names = (generation, names)
    return _hypertable_names[1]


def forget_schema() -> None:
    """Drop what this process cached about the schema (after migrations change it)."""
    global _hypertable_names
    _hypertable_names = None


def has_aggregates() -> bool:
    """True when the bars are a hypertable with its continuous aggregates (`db.timescale`)."""
    return "bars_1m" in hypertables()


def refresh_aggregates(start: pd.Timestamp, end: pd.Timestamp) -> None:
    """After history in [start, end) changed, re-materialize the continuous aggregates' complete
    buckets there (no-op on plain PostgreSQL). Runs outside any transaction, as TimescaleDB
    requires."""
    if not has_aggregates():
        return
    with autocommit_cursor() as cur:
        timescale.refresh(cur, start, end)
