"""The daily macro job: key FRED series stored with their observation date and release time.

    python -m workers.macro_ingestor [--source fred|fred_csv|simulated] [--start DATE]

Each series is fetched whole, checked, and written in one transaction; a series that fails
(network, rate limit, malformed answer) is logged and the others still run, and the job is
recorded as failed in `job_runs`. A value outside its series' plausible range
(`SeriesSpec.plausible`) or not finite is logged and recorded in `input_flags`, never stored, so
features never join it; the series' other values are stored. Stored rows are never
overwritten: a revision is a new row with its own release time, and re-running stores nothing
twice.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from config.cli import job_parser, setup_logging
from config.settings import Settings, get_settings
from db.context import newest_macro_observation, newest_macro_values
from db.input_flags import InputFlag, record_input_flags
from db.ops import job_run
from db.writes import write_to_db
from workers.common import with_retries
from workers.http_fetch import PayloadError
from workers.macro_sources import (
    DEFAULT_SERIES,
    SERIES,
    FredApiSource,
    FredCsvSource,
    MacroSource,
    SeriesSpec,
    SimulatedMacroSource,
)
from workers.sources.base import SourceError

log = logging.getLogger("workers.macro_ingestor")

JOB = "macro_ingestor"
FIRST_START = date(2018, 1, 1)
REVISION_WINDOW = pd.Timedelta(days=730)  # later runs re-read two years for revisions


class MacroIngestError(RuntimeError):
    """Some series could not be ingested; the message names them."""


def new_rows(
    fetched: pd.DataFrame, source: MacroSource, now: pd.Timestamp, start: date
) -> pd.DataFrame:
    """What to store: vintaged rows as they are; for sources without vintages, only values
    that differ from the newest stored one, a changed value stamped with the time it was seen."""
    if fetched.empty or source.has_vintages:
        return fetched
    stored = newest_macro_values(str(fetched["series_id"].iloc[0]), start)
    if stored.empty:
        return fetched
    merged = fetched.merge(stored, on="obs_date", how="left", suffixes=("", "_stored"))
    unseen = merged["value_stored"].isna()
    changed = ~unseen & ((merged["value"] - merged["value_stored"]).abs() > 1e-9)
    merged.loc[changed, "realtime_start"] = merged.loc[changed, "realtime_start"].clip(lower=now)
    return merged.loc[unseen | changed, fetched.columns.tolist()].reset_index(drop=True)


def plausible_rows(fetched: pd.DataFrame, spec: SeriesSpec, source: MacroSource) -> pd.DataFrame:
    """The fetched rows inside the series' plausible range; each other one is logged and
    recorded in `input_flags` (a value a later run fetches again is recorded once)."""
    bad = spec.implausible(fetched["value"])
    if not bad.any():
        return fetched
    low, high = spec.plausible
    flags = [
        InputFlag(
            feed="macro",
            item_key=f"{spec.series_id}:{row.obs_date}",
            action="flagged",
            reason="out_of_range" if np.isfinite(row.value) else "not_finite",
            detail=(
                f"{source.name}: value {float(row.value)!r} outside the plausible range "
                f"[{low:g}, {high:g}] of {spec.series_id} ({spec.title}), released "
                f"{pd.Timestamp(row.realtime_start).isoformat()}"
            ),
        )
        for row in fetched[bad].itertuples(index=False)
    ]
    for flag, new in zip(flags, record_input_flags(flags), strict=True):
        log.log(
            logging.WARNING if new else logging.DEBUG,
            "macro: flagged %s (%s), not stored: %s",
            flag.item_key,
            flag.reason,
            flag.detail,
        )
    return fetched[~bad].reset_index(drop=True)


def ingest_series(
    source: MacroSource,
    series_id: str,
    start: date,
    now: pd.Timestamp,
    *,
    attempts: int = 4,
    max_wait_s: float = 30.0,
) -> int:
    """Fetch one series and store what is new; returns rows written."""
    spec = SERIES[series_id]
    fetch = with_retries((SourceError,), attempts, max_wait_s, log)(source.fetch)
    fetched = plausible_rows(fetch(spec, start, now), spec, source)
    rows = new_rows(fetched, source, now, start)
    if rows.empty:
        return 0
    rows = rows.assign(source=source.name, ingested_at=pd.Timestamp.now(tz="UTC"))
    return write_to_db(rows, table="macro_observations", on_conflict="nothing")


def default_start(series_id: str) -> date:
    """First run: FIRST_START; later runs: two years before the newest stored observation."""
    last = newest_macro_observation(series_id)
    if last is None:
        return FIRST_START
    since: date = (pd.Timestamp(last) - REVISION_WINDOW).date()
    return max(FIRST_START, since)


def ingest_all(
    source: MacroSource,
    series: Sequence[str] = DEFAULT_SERIES,
    start: date | None = None,
    now: pd.Timestamp | None = None,
    *,
    attempts: int = 4,
    max_wait_s: float = 30.0,
) -> tuple[dict[str, int], dict[str, str]]:
    """Ingest every series; returns rows written per series and the error of each failure."""
    now = now or pd.Timestamp.now(tz="UTC")
    written: dict[str, int] = {}
    failed: dict[str, str] = {}
    for series_id in series:
        begin = start or default_start(series_id)
        try:
            written[series_id] = ingest_series(
                source, series_id, begin, now, attempts=attempts, max_wait_s=max_wait_s
            )
            log.info("%s: %d new row(s) from %s", series_id, written[series_id], source.name)
        except (SourceError, PayloadError, ValueError) as exc:
            log.error("%s: not ingested from %s: %s", series_id, source.name, exc)
            failed[series_id] = f"{type(exc).__name__}: {exc}"
    return written, failed


def make_macro_source(name: str | None = None, settings: Settings | None = None) -> MacroSource:
    """The configured source; `fred` without a key falls back to the keyless CSV download."""
    settings = settings or get_settings()
    name = name or settings.macro_source
    if name == "fred":
        key = settings.fred_api_key.get_secret_value() if settings.fred_api_key else ""
        if key:
            return FredApiSource(key)
        log.warning("no FRED_API_KEY: using the keyless CSV download (estimated release times)")
        return FredCsvSource()
    if name == "fred_csv":
        return FredCsvSource()
    if name == "simulated":
        return SimulatedMacroSource(settings.sim_seed)
    raise ValueError(f"unknown macro source '{name}'; choose fred, fred_csv or simulated")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = job_parser(
        "workers.macro_ingestor", "Fetch FRED macro series with their release times (run daily)."
    )
    parser.add_argument(
        "--source",
        choices=["fred", "fred_csv", "simulated"],
        help="default: settings.macro_source (fred; keyless CSV when FRED_API_KEY is unset)",
    )
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        help="first observation date (default: 2018-01-01, later runs two years back)",
    )
    parser.add_argument(
        "--series",
        nargs="+",
        choices=DEFAULT_SERIES,
        default=DEFAULT_SERIES,
        help="series to fetch (default: all)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("workers.macro_ingestor")
    try:
        source = make_macro_source(args.source)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    try:
        with job_run(JOB) as run:
            written, failed = ingest_all(source, args.series, args.start)
            summary = f"{source.name}: {sum(written.values())} new row(s) in {len(written)} series"
            run.note(summary)
            if failed:
                raise MacroIngestError(f"{summary}; failed: {failed}")
    except MacroIngestError as exc:
        log.error("%s", exc)
        return 1
    log.info("%s", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
