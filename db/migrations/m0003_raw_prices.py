"""Prices stored raw, adjusted for splits and dividends when read (the `bar_adjustments` view).

History was rescaled in place when a corporate action was applied; from this version on the
ledger's factors are applied at read time instead (`db.bars`), so nothing stored, compressed
history included, is ever rewritten. `up` undoes the in-place rescale of every action already
applied (bars before its ex-date divided by its factor, split volumes by the ratio) and creates
the view that gives, per ticker, the cumulative price and volume factors of every stretch of
time between ex-dates. A bar at `ts` is adjusted by the row with `valid_from <= ts < valid_to`
(none: factor 1).
"""

from __future__ import annotations

from typing import Any

NAME = "raw prices, corporate actions applied at read time"

VIEW = """CREATE VIEW bar_adjustments AS
WITH per_day AS (
    SELECT ticker, ex_date,
           exp(sum(ln(factor))) AS price_factor,
           exp(sum(ln(CASE WHEN action_type = 'split' THEN value ELSE 1 END))) AS volume_factor
    FROM corporate_actions
    WHERE applied_at IS NOT NULL AND factor > 0
    GROUP BY ticker, ex_date
), cumulative AS (
    SELECT ticker, ex_date,
           exp(sum(ln(price_factor)) OVER later) AS price_factor,
           exp(sum(ln(volume_factor)) OVER later) AS volume_factor,
           lag(ex_date) OVER (PARTITION BY ticker ORDER BY ex_date) AS previous_ex_date
    FROM per_day
    WINDOW later AS (PARTITION BY ticker ORDER BY ex_date DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT ticker,
       CASE WHEN previous_ex_date IS NULL THEN '-infinity'::timestamptz
            ELSE previous_ex_date::timestamp AT TIME ZONE 'America/New_York' END AS valid_from,
       ex_date::timestamp AT TIME ZONE 'America/New_York' AS valid_to,
       price_factor, volume_factor
FROM cumulative"""

UNDO_RESCALE = """UPDATE bars_1m b SET open = b.open / a.price_factor,
    high = b.high / a.price_factor, low = b.low / a.price_factor,
    close = b.close / a.price_factor, volume = b.volume / a.volume_factor
FROM bar_adjustments a
WHERE a.ticker = b.ticker AND b.ts >= a.valid_from AND b.ts < a.valid_to"""

REDO_RESCALE = UNDO_RESCALE.replace(" / a.", " * a.")


def up(cur: Any) -> None:
    cur.execute(VIEW)
    cur.execute(UNDO_RESCALE)


def down(cur: Any) -> None:
    cur.execute(REDO_RESCALE)
    cur.execute("DROP VIEW IF EXISTS bar_adjustments")
