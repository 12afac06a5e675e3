"""Writing bars, with the gaps found beside them, in one transaction.

Every writer of `bars_1m` (the price ingestor, the backfill, history seeding) goes through
`write_bars`, which stores regular-session bars only (the one rule of every source and write
path; see `config.market_calendar.regular_session_mask`) as the source served them: prices are
stored raw and adjusted for splits and dividends when read (`db.bars`), so a bar that arrives
late for a date before an applied action needs no special care. The gaps found with the bars are
queued in the same transaction, so a restart never loses one, and the scoring worker is notified
in it (`db.notify.BARS`). When the write changed complete
buckets of TimescaleDB's continuous aggregates (a backfill, seeding, a late bar), those are
re-materialized right after the commit.
"""

from __future__ import annotations

import logging

import pandas as pd

from config.market_calendar import regular_session_mask
from db.database_manager import connect, refresh_aggregates, write_to_db
from db.notify import BARS, notify
from db.queue import queue_gaps
from workers.sources.base import BAR_COLUMNS

log = logging.getLogger(__name__)
MINUTE = pd.Timedelta(minutes=1)


def write_bars(
    bars: pd.DataFrame,
    *,
    source: str,
    gaps: pd.DataFrame | None = None,
    on_conflict: str = "update",
) -> int:
    """Store final bars as served (raw) and queue `gaps`, atomically. Returns bars written."""
    has_gaps = gaps is not None and not gaps.empty
    if not bars.empty:
        regular = regular_session_mask(bars["ts"])
        if not regular.all():
            log.warning(
                "not storing %d bar(s) outside the regular session (regular-session rule)",
                int((~regular).sum()),
            )
            bars = bars[regular]
    if bars.empty and not has_gaps:
        return 0
    written = 0
    with connect() as conn:
        if not bars.empty:
            frame = bars[BAR_COLUMNS].assign(source=source)
            written = write_to_db(frame, table="bars_1m", on_conflict=on_conflict, conn=conn)
            if written:  # the scoring worker wakes when this transaction commits
                notify(conn, BARS, pd.Timestamp(bars["ts"].max()).isoformat())
        if has_gaps:
            assert gaps is not None
            queue_gaps(conn, gaps)
    if written:
        refresh_aggregates(bars["ts"].min(), bars["ts"].max() + MINUTE)
    return written
