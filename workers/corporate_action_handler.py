"""Corporate actions: record splits and dividends and their adjustment factors (cron, before the
open).

    python -m workers.corporate_action_handler [--source S] [--lookback-days N] [--lookahead-days N]

`run_daily_adjustment()` asks the source for the universe's splits and dividends from
`lookback_days` ago to `lookahead_days` ahead, records new ones in the `corporate_actions`
ledger, and applies every recorded action whose ex-date has come by stamping its factor, with
the standard backward adjustment of all bars before the ex-date (a split found for the day of a
level shift the data-quality guard holds ends the hold: `db.quality.explain_holds`):

- split of ratio r (4 for 4-for-1): prices / r, volume * r;
- cash dividend D: prices * (1 - D / C), C the raw close before the ex-date.

Bars are stored raw; every read adjusts them by the cumulative factors of the applied actions
after them (`db.bars`, the `bar_adjustments` view), so nothing stored, compressed history
included, is rewritten, and a bar that arrives later for a date before an applied action is
adjusted like its neighbours. Applying is one conditional update of the ledger row: a second
run, or a crash halfway, never applies an action twice. Under cron the `workers.cron_job` guard
records the run; the last line printed is the report.

Inputs are checked before they move any price:

- a split ratio outside 1/100 .. 100, or a dividend whose factor falls outside (0, 1], is
  recorded but never applied: it waits in the ledger (`applied_at` empty, listed as waiting in
  the report) and every run logs it with its ticker, ex-date and value, until the source
  corrects it or a person fixes the ledger row;
- a value the ledger cannot hold (not a finite positive number) is logged and not recorded;
- a value served again differently corrects an action not yet applied (the later value
  replaces the first); an action already applied is left as it is and the differing value is
  logged as a warning for a person to review, since every adjusted price served since used it.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from config.cli import job_parser, run_job
from config.settings import get_settings
from core.timeutil import new_york_date, ny_midnight
from db.bars import (
    correct_action_value,
    due_actions,
    mark_action_applied,
    raw_close_before,
    stored_actions,
)
from db.connections import connect
from db.quality import explain_holds
from db.writes import write_to_db
from workers.sources import SOURCE_KINDS, make_source
from workers.sources.base import ACTION_COLUMNS, MarketDataSource

log = logging.getLogger(__name__)

KEY = ["ticker", "ex_date", "action_type"]
MAX_SPLIT_RATIO = 100.0  # a split (or reverse split) beyond 100-for-1 is taken for a data error
SAME_VALUE_RTOL = 1e-9  # a value served again within this relative difference is unchanged


@dataclass
class AdjustmentReport:
    detected: int = 0
    corrected: int = 0  # recorded actions, not yet applied, whose value the source corrected
    applied: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # could not be applied yet (logged why)
    explained: int = 0  # holds of the data-quality guard ended by a split found for their day

    def __str__(self) -> str:
        return (
            f"{self.detected} new action(s) recorded, {self.corrected} corrected; "
            f"applied {len(self.applied)}: {', '.join(self.applied) or '-'}; "
            f"waiting {len(self.waiting)}: {', '.join(self.waiting) or '-'}; "
            f"held tickers explained {self.explained}"
        )


@dataclass
class LedgerChanges:
    new: int = 0  # actions recorded for the first time
    corrected: int = 0  # values replaced on actions not yet applied


def plausible_split(ratio: float) -> bool:
    """Whether a split ratio is believable: finite, within 1/100 .. 100."""
    return math.isfinite(ratio) and 1.0 / MAX_SPLIT_RATIO <= ratio <= MAX_SPLIT_RATIO


def _storable(actions: pd.DataFrame) -> pd.Series:
    """Rows the ledger can hold (a finite positive value); each other row is logged."""
    values = pd.to_numeric(actions["value"], errors="coerce").astype("float64")
    ok = np.isfinite(values) & (values > 0)
    for row in actions[~ok].itertuples(index=False):
        log.error(
            "%s %s on %s: value %r is not a finite positive number; not recorded",
            row.ticker,
            row.action_type,
            row.ex_date,
            row.value,
        )
    return ok


def record_actions(actions: pd.DataFrame, source: str) -> LedgerChanges:
    """Record new actions in the ledger and correct the value of recorded ones not yet applied
    (see the module docstring for what is refused, and what is left for a person)."""
    if actions.empty:
        return LedgerChanges()
    frame = actions[ACTION_COLUMNS].drop_duplicates(KEY, keep="last")
    frame = frame[_storable(frame)].assign(
        ex_date=lambda d: [pd.Timestamp(x).date() for x in d["ex_date"]],
        value=lambda d: d["value"].astype("float64"),
    )
    if frame.empty:
        return LedgerChanges()
    stored = stored_actions(frame).rename(columns={"value": "stored"})
    merged = frame.merge(stored, on=KEY, how="left").astype({"stored": "float64"})
    known = merged["stored"].notna()
    differs = known & ~np.isclose(merged["value"], merged["stored"], rtol=SAME_VALUE_RTOL, atol=0)
    applied = merged["applied"].astype("boolean").fillna(False).astype(bool)
    for row in merged[differs & applied].itertuples(index=False):
        _log_applied_correction(row, source)
    changes = LedgerChanges()
    with connect() as conn:
        new = merged.loc[~known, ACTION_COLUMNS].assign(source=source)
        changes.new = write_to_db(new, table="corporate_actions", on_conflict="nothing", conn=conn)
        for row in merged[differs & ~applied].itertuples(index=False):
            if not correct_action_value(
                conn, row.ticker, row.ex_date, row.action_type, row.value, source
            ):
                _log_applied_correction(row, source)  # applied since it was read
                continue
            changes.corrected += 1
            log.warning(
                "%s %s ex %s: corrected value %g from %s replaces %g (not yet applied)",
                row.ticker,
                row.action_type,
                row.ex_date,
                row.value,
                source,
                row.stored,
            )
    return changes


def _log_applied_correction(row: Any, source: str) -> None:
    log.warning(
        "%s %s ex %s: %s now gives %g, but %g is applied already; the ledger is left as it "
        "is (review it: every adjusted price since used %g)",
        row.ticker,
        row.action_type,
        row.ex_date,
        source,
        row.value,
        row.stored,
        row.stored,
    )


def _previous_close(ticker: str, ex_date: date, source: MarketDataSource) -> float | None:
    """The raw close before the ex-date: the stored one (bars are stored raw), or sourced."""
    ex = ny_midnight(ex_date)  # bars before the ex-date's first instant get adjusted
    close = raw_close_before(ticker, ex)
    if close is not None:
        return close
    bars = source.history([ticker], ex - pd.Timedelta(days=10), ex)
    return None if bars.empty else float(bars.sort_values("ts")["close"].iloc[-1])


def action_factor(action: Any, source: MarketDataSource) -> float | None:
    """The price factor of an action, or None when it cannot be computed yet."""
    value = float(action.value)
    if action.action_type == "split":
        if not plausible_split(value):
            log.error(
                "%s split ratio %r on %s is outside 1/%g .. %g; recorded, not applied (it "
                "waits in the ledger until the source corrects it or a person fixes it)",
                action.ticker,
                value,
                action.ex_date,
                MAX_SPLIT_RATIO,
                MAX_SPLIT_RATIO,
            )
            return None
        return 1.0 / value
    close = _previous_close(action.ticker, action.ex_date, source)
    if close is None:
        log.warning(
            "%s dividend %s on %s: no close before the ex-date yet",
            action.ticker,
            value,
            action.ex_date,
        )
        return None
    factor = 1.0 - value / close
    if not (math.isfinite(factor) and 0 < factor <= 1):
        log.error(
            "%s dividend %r on %s gives the factor %r (previous close %s), outside (0, 1]; "
            "recorded, not applied",
            action.ticker,
            value,
            action.ex_date,
            factor,
            close,
        )
        return None
    return factor


def _mark_applied(conn: Connection, action: Any, price_f: float) -> bool:
    return mark_action_applied(conn, action.ticker, action.ex_date, action.action_type, price_f)


def apply_action(action: Any, source: MarketDataSource) -> bool:
    """Apply one ledger action exactly once; False if already applied or not computable."""
    factor = action_factor(action, source)
    if factor is None:
        return False
    with connect() as conn:
        if not _mark_applied(conn, action, factor):
            return False
    log.info(
        "applied %s %s %s (ex %s): earlier prices x %.6f when read",
        action.ticker,
        action.action_type,
        action.value,
        action.ex_date,
        factor,
    )
    return True


def run_daily_adjustment(
    source: MarketDataSource | None = None,
    tickers: list[str] | None = None,
    today: date | None = None,
    lookback_days: int = 30,
    lookahead_days: int = 30,
) -> AdjustmentReport:
    """Fetch recent and upcoming actions, record them, apply those whose ex-date has come."""
    settings = get_settings()
    source = source or make_source(settings)
    tickers = tickers or settings.universe
    today = today or new_york_date(source.now())
    report = AdjustmentReport()
    actions = source.corporate_actions(
        tickers, today - timedelta(days=lookback_days), today + timedelta(days=lookahead_days)
    )
    changes = record_actions(actions, source.name)
    report.detected, report.corrected = changes.new, changes.corrected
    if not actions.empty:  # a (believable) split found for the day of a held level shift
        splits = actions[actions["action_type"] == "split"]
        splits = splits[[plausible_split(float(v)) for v in splits["value"]]]
        with connect() as conn:
            report.explained = explain_holds(conn, splits, actor="corporate-action job")
    for action in due_actions(today, tickers).itertuples(index=False):
        label = f"{action.ticker} {action.action_type} {action.value:g} ex {action.ex_date}"
        (report.applied if apply_action(action, source) else report.waiting).append(label)
    log.info("corporate actions: %s", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("workers.corporate_action_handler", __doc__)
    parser.add_argument("--source", choices=SOURCE_KINDS, help="default: settings.market_source")
    parser.add_argument("--lookback-days", type=int, default=30)
    parser.add_argument("--lookahead-days", type=int, default=30)
    args = parser.parse_args(argv)
    source = make_source(get_settings(), args.source)
    return run_job(
        "workers.corporate_action_handler",
        lambda: run_daily_adjustment(
            source, lookback_days=args.lookback_days, lookahead_days=args.lookahead_days
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
