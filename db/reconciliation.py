"""The daily reconciliation's results: stored minutes resampled to the day beside the
source's daily bars."""

from __future__ import annotations

import pandas as pd

from db.reads import read_from_db
from db.writes import write_to_db

# --------------------------------------------------------------------- the daily reconciliation
RECONCILIATION_COLUMNS = (
    "ticker, session_date, source, status, stored_open, stored_high, stored_low, stored_close, "
    "stored_volume, source_open, source_high, source_low, source_close, source_volume, "
    "max_price_diff, detail, checked_at"
)


def store_reconciliation(frame: pd.DataFrame) -> int:
    """Store reconciliation rows (`daily_reconciliation`, one per ticker and session): a
    session checked again replaces its row, `checked_at` (now unless given) included."""
    if frame.empty:
        return 0
    if "checked_at" not in frame.columns:
        frame = frame.assign(checked_at=pd.Timestamp.now(tz="UTC"))
    return write_to_db(frame, table="daily_reconciliation", on_conflict="update")


def reconciliation_results(limit: int = 200, only_problems: bool = False) -> pd.DataFrame:
    """Reconciled ticker-sessions, newest session first and its problems first: ticker,
    session_date, source, status, the stored and the source's open, high, low, close and
    volume, max_price_diff (the largest relative price difference, 0.01 = 1%), detail and
    checked_at. With `only_problems`, every status but `ok`."""
    return read_from_db(
        f"SELECT {RECONCILIATION_COLUMNS} FROM daily_reconciliation "  # noqa: S608 (fixed names)
        "WHERE NOT :only_problems OR status <> 'ok' "
        "ORDER BY session_date DESC, status = 'ok', ticker LIMIT :n",
        {"only_problems": only_problems, "n": limit},
    )
