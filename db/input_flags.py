"""News and macro items the feeds' cleaning changed or dropped, recorded once each for the
data-health page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import pandas as pd
from sqlalchemy import text

from db.connections import connect
from db.reads import read_from_db


@dataclass(frozen=True)
class InputFlag:
    """One `input_flags` row: a news article cleaned or dropped, a macro value flagged."""

    feed: str  # "news" | "macro"
    item_key: str  # an article key (or its URL), a macro "SERIES:obs_date"
    action: str  # "cleaned" | "dropped" | "flagged"
    reason: str  # short codes, comma-separated: "nul_bytes,too_long"
    detail: str  # for a person: where the item came from and what was wrong


def record_input_flags(flags: Sequence[InputFlag]) -> list[bool]:
    """Record each flag unless the very same one is already recorded (a bad item that a later
    fetch serves again is recorded once); True for each flag recorded now, in order."""
    if not flags:
        return []
    with connect() as conn:
        return [
            conn.execute(
                text(
                    "INSERT INTO input_flags (feed, item_key, action, reason, detail) "
                    "SELECT :feed, :item_key, :action, :reason, :detail WHERE NOT EXISTS ("
                    " SELECT 1 FROM input_flags WHERE feed = :feed AND item_key = :item_key"
                    " AND action = :action AND reason = :reason AND detail = :detail)"
                ),
                asdict(flag),
            ).rowcount
            == 1
            for flag in flags
        ]


def input_flags(limit: int = 200) -> pd.DataFrame:
    """News articles cleaned or dropped and macro values flagged, newest first."""
    return read_from_db(
        "SELECT flagged_at, feed, item_key, action, reason, detail FROM input_flags "
        "ORDER BY flagged_at DESC, id DESC LIMIT :n",
        {"n": limit},
    )
