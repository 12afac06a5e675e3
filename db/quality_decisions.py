"""An analyst's decisions on the guard's flags: accepting or rejecting a quarantined bar, and
a held ticker's new level (the app's database role moves bars into and out of bars_1m only
through the SECURITY DEFINER functions of migration m0008)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import text

from core.timeutil import utc, utc_series
from db.bar_rule import bar_faults
from db.connections import connect
from db.quality import ACCEPTED, DECISIONS, HELD, QUARANTINED, RAW, REJECTED
from db.tables import TABLES
from db.writes import validate_frame


class DecisionError(ValueError):
    """A decision that cannot be taken (unknown flag, decided already, no reason); the message
    is safe to show."""


# --------------------------------------------------------------------- decisions
def _decision(decision: str, actor: str, reason: str) -> str:
    if decision not in DECISIONS:
        raise DecisionError(f"decision must be one of {DECISIONS}, not {decision!r}")
    if not actor:
        raise DecisionError("a decision needs the name of who takes it")
    reason = reason.strip()
    if len(reason) < 3:
        raise DecisionError("say why (a reason of at least 3 characters is recorded)")
    return reason[:500]


def decide_bar(bar_id: int, decision: str, actor: str, reason: str) -> str:
    """An analyst's verdict on a quarantined bar: `accepted` stores it in `bars_1m` as served
    (a real print the guard misjudged), `rejected` keeps it out for good. Returns a sentence
    saying what was done."""
    why = _decision(decision, actor, reason)
    with connect() as conn:
        row = conn.execute(
            text(
                f"SELECT {', '.join(RAW)}, status FROM quarantined_bars WHERE id = :id "  # noqa: S608
                "FOR UPDATE"
            ),
            {"id": int(bar_id)},
        ).first()
        if row is None:
            raise DecisionError(f"no quarantined bar #{bar_id}")
        if row.status != QUARANTINED:
            raise DecisionError(f"bar #{bar_id} is {row.status} already: nothing was changed")
        if decision == ACCEPTED:
            bar = pd.DataFrame([row[: len(RAW)]], columns=RAW)
            bar["ts"] = utc_series(bar["ts"])
            fault = next(bar_faults(bar), None)
            if fault is not None:
                raise DecisionError(f"bar #{bar_id} is not a valid bar ({fault}): reject it")
            validate_frame(bar, TABLES["bars_1m"])
            # stores the bar and records the decision (`db.roles`: the app's database role
            # cannot write bars_1m itself)
            conn.execute(
                text("SELECT accept_quarantined_bar(:id, :a, :r)"),
                {"id": int(bar_id), "a": actor, "r": why},
            )
        else:
            conn.execute(
                text(
                    "UPDATE quarantined_bars SET status = :s, decided_at = now(), "
                    "decided_by = :a, decision_reason = :r WHERE id = :id"
                ),
                {"s": decision, "a": actor, "r": why, "id": int(bar_id)},
            )
    return f"Bar #{bar_id} ({row.ticker} {utc(row.ts):%Y-%m-%d %H:%M} UTC) {decision} by {actor}."


def decide_hold(hold_id: int, decision: str, actor: str, reason: str) -> str:
    """An analyst's verdict on a held ticker: `accepted` (the new price level is real; the hold
    ends), `rejected` (the bars from the onset on are bad prints: they move to quarantine as
    `level_shift` and the hold ends). Returns a sentence saying what was done."""
    why = _decision(decision, actor, reason)
    with connect() as conn:
        hold = conn.execute(
            text("SELECT ticker, onset_ts, status FROM ticker_holds WHERE id = :id FOR UPDATE"),
            {"id": int(hold_id)},
        ).first()
        if hold is None:
            raise DecisionError(f"no hold #{hold_id}")
        if hold.status != HELD:
            raise DecisionError(f"hold #{hold_id} is {hold.status} already: nothing was changed")
        moved = 0
        if decision == REJECTED:
            # moves the bars from the onset on into quarantine and closes the hold (`db.roles`:
            # the app's database role cannot write bars_1m itself)
            detail = f"rejected level shift from {utc(hold.onset_ts):%Y-%m-%d %H:%M} UTC: {why}"
            moved = int(
                conn.execute(
                    text("SELECT reject_hold(:id, :a, :r, :d)"),
                    {"id": int(hold_id), "a": actor, "r": why, "d": detail},
                ).scalar_one()
            )
        else:
            conn.execute(
                text(
                    "UPDATE ticker_holds SET status = :s, decided_at = now(), decided_by = :a, "
                    "decision_reason = :r WHERE id = :id"
                ),
                {"s": decision, "a": actor, "r": why, "id": int(hold_id)},
            )
    extra = f"; {moved} bar(s) moved to quarantine" if moved else ""
    return f"Hold #{hold_id} on {hold.ticker} {decision} by {actor}{extra}."
