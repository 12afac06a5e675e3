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
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from config.settings import get_settings, setup_logging
from core.timeutil import ny_midnight
from db.bars import due_actions, mark_action_applied, raw_close_before
from db.database_manager import connect, write_to_db
from db.quality import explain_holds
from workers.sources import SOURCE_KINDS, make_source
from workers.sources.base import ACTION_COLUMNS, MarketDataSource

log = logging.getLogger(__name__)


@dataclass
class AdjustmentReport:
    detected: int = 0
    applied: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # could not be applied yet (logged why)
    explained: int = 0  # holds of the data-quality guard ended by a split found for their day

    def __str__(self) -> str:
        return (
            f"{self.detected} new action(s) recorded; applied {len(self.applied)}: "
            f"{', '.join(self.applied) or '-'}; waiting {len(self.waiting)}; "
            f"held tickers explained {self.explained}"
        )


def record_actions(actions: pd.DataFrame, source: str) -> int:
    """Add actions to the ledger (known ones are left as they are). Returns how many are new."""
    if actions.empty:
        return 0
    frame = actions[ACTION_COLUMNS].assign(source=source)
    frame = frame[frame["value"] > 0]
    return write_to_db(frame, table="corporate_actions", on_conflict="nothing")


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
    if not 0 < value < close:
        log.error(
            "%s dividend %s on %s is not below the previous close %s; not applied",
            action.ticker,
            value,
            action.ex_date,
            close,
        )
        return None
    return 1.0 - value / close


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
    today = today or source.now().tz_convert("America/New_York").date()
    report = AdjustmentReport()
    actions = source.corporate_actions(
        tickers, today - timedelta(days=lookback_days), today + timedelta(days=lookahead_days)
    )
    report.detected = record_actions(actions, source.name)
    if not actions.empty:  # a split found for the day of a held level shift explains it
        with connect() as conn:
            report.explained = explain_holds(
                conn, actions[actions["action_type"] == "split"], actor="corporate-action job"
            )
    for action in due_actions(today, tickers).itertuples(index=False):
        label = f"{action.ticker} {action.action_type} {action.value:g} ex {action.ex_date}"
        (report.applied if apply_action(action, source) else report.waiting).append(label)
    log.info("corporate actions: %s", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.corporate_action_handler",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", choices=SOURCE_KINDS, help="default: settings.market_source")
    parser.add_argument("--lookback-days", type=int, default=30)
    parser.add_argument("--lookahead-days", type=int, default=30)
    args = parser.parse_args(argv)
    setup_logging("workers.corporate_action_handler")
    source = make_source(get_settings(), args.source)
    report = run_daily_adjustment(
        source, lookback_days=args.lookback_days, lookahead_days=args.lookahead_days
    )
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
