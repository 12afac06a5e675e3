"""The alert event kinds and the quiet-hours form (HH:MM-HH:MM), shared by the settings, the
alert channels and the app."""

from __future__ import annotations

import datetime as dt
import re

ALERT_KINDS = (
    "signal",
    "promotion",
    "rollback",
    "drift_alarm",
    "stale_feed",
    "job_failed",
    "quarantined_bar",
    "held_ticker",
)


QUIET_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def quiet_hours(text: str | None) -> tuple[dt.time, dt.time] | None:
    """`HH:MM-HH:MM` as (start, end) local times (the window may pass midnight); None when
    empty; ValueError naming the expected form otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    match = QUIET_HOURS.match(text)
    if match is None or text[:5] == text[6:]:
        raise ValueError(f"quiet hours {text!r} are not HH:MM-HH:MM (e.g. 22:00-07:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return dt.time(h1, m1), dt.time(h2, m2)
