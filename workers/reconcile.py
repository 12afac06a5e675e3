"""Daily reconciliation (cron, after the close): the stored minute bars of each ticker and
session, resampled to the day, against the source's own daily bar.

    python -m workers.reconcile [--source S] [--session YYYY-MM-DD] [--days N]

By default the last three sessions closed on the source's clock are checked: the newest for
the first time, the two before it again, so a run that was skipped (the backfill held its lock)
is caught up and a day the backfill completed since is judged again. `--session` names the
newest session to check, `--days` how many sessions up to it.

Both sides are raw, in the prices traded that day: the stored bars as stored
(`db.bars.raw_daily_bars`: first open, highest high, lowest low, last close and summed volume
of each New York session date) and the source's daily bar (`MarketDataSource.daily_bars`:
Yahoo's repaired by yfinance with its split adjustment undone; the simulated and replay
sources' own minutes resampled, so there a day differs only when the stored bars do). One row
per ticker and session goes to `daily_reconciliation`:

- `ok`: every field within its tolerance;
- `differs`: a field beyond it; the detail names each such field with the stored and the
  source's value, the relative difference and the accepted range, and how many of the
  session's minutes are stored;
- `missing_stored`: the source has a daily bar and nothing is stored for the day;
- `missing_source`: bars are stored and the source has no daily bar for the day.

Tolerances (`Tolerances`), as stored / source - 1:

- open and close: +-0.5%. A source's daily open and close are the official opening and
  closing auction prices; the stored ones are the first trade of the first minute and the last
  trade of the last minute, a few cents from them on a normal day.
- high and low: the stored day is made of a subset of the source's minutes (a minute without
  trades, or one the data-quality guard quarantined, is missing from it), so its range can
  only be narrower than the source's: a stored high up to 1% below the source's (a low up to
  1% above) is accepted. A stored price outside the source's range is one the source never
  reports for the day, so only 0.5% is accepted that way (as for open and close).
- volume: the stored volume may fall short of the source's by up to 30% but exceed it by only
  5%. A source's daily volume counts prints the minute bars lack: the closing auction (Yahoo
  sends the 16:00 closing print with volume 0; the cross is typically 5-15% of a large cap's
  volume, far more on index-rebalancing days), odd lots and late reports. More volume stored
  than the day had means duplicated or foreign bars. So the volume shows a missing part of a
  session only when it is large (half a session is about -50%); the minutes stored, in the
  detail, say more.

The stored bars are read under the backfill lock (`db.ops.backfill_lock`), so a day is never
judged while a drain is still adding its bars: when a drain holds it the run says so and exits
EXIT_BUSY (the `workers.cron_job` guard records 'skipped'; the next run checks the day). A
source failure exits 1. A day that differs is a finding, not a failure: logged, stored and
shown on the data-health page, and the run exits 0. The last line printed is the report.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd

from config.cli import job_parser, run_job
from config.market_calendar import is_session_day, session_minutes, xnys
from config.settings import get_settings
from core.timeutil import NEW_YORK
from db.bars import raw_daily_bars
from db.ops import backfill_lock
from db.reconciliation import store_reconciliation
from workers.sources import SOURCE_KINDS, make_source
from workers.sources.base import MarketDataSource, SourceError, closed_sessions

log = logging.getLogger(__name__)

DEFAULT_DAYS = 3
FIELDS = ("open", "high", "low", "close", "volume")
PRICES = FIELDS[:4]
STATUSES = ("ok", "differs", "missing_stored", "missing_source")
KEY = ["ticker", "session"]


@dataclass(frozen=True)
class Tolerances:
    """Accepted relative differences (stored / source - 1) per field; see the module
    docstring for why each is what it is."""

    open_close: float = 0.005
    range_inside: float = 0.01  # a high below the source's high, a low above its low
    range_outside: float = 0.005  # a high above the source's high, a low below its low
    volume_short: float = 0.30
    volume_over: float = 0.05

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0 <= value < 1:
                raise ValueError(f"tolerance {name} must be within [0, 1), not {value}")

    def bounds(self, field: str) -> tuple[float, float]:
        """The lowest and highest accepted stored / source - 1 of `field`."""
        if field in ("open", "close"):
            return -self.open_close, self.open_close
        if field == "high":
            return -self.range_inside, self.range_outside
        if field == "low":
            return -self.range_outside, self.range_inside
        return -self.volume_short, self.volume_over


@dataclass
class ReconcileReport:
    source: str = ""
    sessions: list[date] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.sessions:
            return f"no closed session to reconcile against {self.source}"
        span = str(self.sessions[0])
        if len(self.sessions) > 1:
            span += f"..{self.sessions[-1]}"
        counts = ", ".join(f"{s} {self.counts.get(s, 0)}" for s in STATUSES)
        return f"reconciled {len(self.sessions)} session(s) {span} against {self.source}: {counts}"


def sessions_to_check(now: pd.Timestamp, days: int, last: date | None = None) -> list[date]:
    """The `days` sessions up to `last` (default: the newest session closed by `now`), oldest
    first. Raises ValueError when `last` is not a session or has not closed by `now`."""
    if days < 1:
        raise ValueError(f"the number of sessions to check must be at least 1, not {days}")
    if last is not None:
        if not is_session_day(last):
            raise ValueError(f"{last} is not an XNYS session (weekend or market holiday)")
        if not closed_sessions(last, last, now):
            raise ValueError(
                f"session {last} has not closed yet on the source's clock "
                f"({now.tz_convert(NEW_YORK):%Y-%m-%d %H:%M} New York time)"
            )
    end = last or now.tz_convert(NEW_YORK).date()
    start = max(end - timedelta(days=2 * days + 10), xnys().first_session.date())
    return closed_sessions(start, end, now)[-days:]


def _relative(stored: float, source: float) -> float:
    """stored / source - 1 (infinite when the source has 0 and the store more)."""
    if source > 0:
        return stored / source - 1.0
    return 0.0 if stored == source else math.inf


def _problem(field: str, stored: float, source: float, rel: float, tol: Tolerances) -> str:
    lo, hi = tol.bounds(field)
    shown = "{:,.0f}" if field == "volume" else "{:.6g}"
    return (
        f"{field} {rel:+.2%} (stored {shown.format(stored)} vs source {shown.format(source)}; "
        f"accepted {lo:+.1%} to {hi:+.1%})"
    )


def compare_day(row: Any, tol: Tolerances) -> tuple[float, list[str]]:
    """One ticker-session with both sides (`stored_<field>`, `source_<field>`): the largest
    relative price difference and a sentence per field beyond its tolerance."""
    problems, largest = [], 0.0
    for name in FIELDS:
        stored, source = (
            float(getattr(row, f"stored_{name}")),
            float(getattr(row, f"source_{name}")),
        )
        rel = _relative(stored, source)
        if name in PRICES:
            largest = max(largest, abs(rel))
        lo, hi = tol.bounds(name)
        if not lo <= rel <= hi:
            problems.append(_problem(name, stored, source, rel, tol))
    return largest, problems


def _verdict(row: Any, tol: Tolerances) -> tuple[str, float, str]:
    """Status, largest relative price difference (NaN without both sides) and detail."""
    if row.side == "right_only":
        return "missing_stored", math.nan, "nothing stored for the session"
    minutes = f"{int(row.minutes)} of {len(session_minutes(pd.Timestamp(row.session)))} minutes"
    if row.side == "left_only":
        return "missing_source", math.nan, f"the source has no daily bar; {minutes} stored"
    largest, problems = compare_day(row, tol)
    if problems:
        return "differs", largest, "; ".join(problems) + f"; {minutes} stored"
    return "ok", largest, ""


def reconcile(
    stored: pd.DataFrame, source: pd.DataFrame, *, source_name: str, tolerances: Tolerances
) -> pd.DataFrame:
    """`daily_reconciliation` rows from the stored days (`db.bars.raw_daily_bars`) and the
    source's daily bars (`MarketDataSource.daily_bars`): one per ticker and session either side
    has, with its status, both sides' values, the largest relative price difference and the
    detail."""
    mine = stored[[*KEY, *FIELDS, "minutes"]].rename(columns={f: f"stored_{f}" for f in FIELDS})
    theirs = source[[*KEY, *FIELDS]].rename(columns={f: f"source_{f}" for f in FIELDS})
    both = mine.merge(theirs, on=KEY, how="outer", indicator="side").sort_values(KEY)
    verdicts = [_verdict(row, tolerances) for row in both.itertuples(index=False)]
    out = both.drop(columns=["side", "minutes"]).rename(columns={"session": "session_date"})
    out.insert(2, "source", source_name)
    out.insert(3, "status", [v[0] for v in verdicts])
    out["max_price_diff"] = [v[1] for v in verdicts]
    out["detail"] = [v[2] for v in verdicts]
    return out.reset_index(drop=True)


def run_reconciliation(
    source: MarketDataSource | None = None,
    *,
    tickers: list[str] | None = None,
    sessions: list[date] | None = None,
    tolerances: Tolerances | None = None,
) -> ReconcileReport:
    """Reconcile `sessions` (default: `sessions_to_check`) of `tickers` (default: the
    universe) and store the rows. Raises LockBusyError while a backfill drain runs and
    SourceError when the source fails."""
    settings = get_settings()
    source = source or make_source(settings)
    tickers = list(tickers or settings.universe)
    sessions = sorted(sessions or sessions_to_check(source.now(), DEFAULT_DAYS))
    report = ReconcileReport(source=source.name, sessions=sessions)
    if not sessions:
        log.info("reconciliation: %s", report)
        return report
    theirs = source.daily_bars(tickers, sessions[0], sessions[-1])
    with backfill_lock():  # never judge a day while a drain is still adding its bars
        mine = raw_daily_bars(tickers, sessions[0], sessions[-1])
    rows = reconcile(mine, theirs, source_name=source.name, tolerances=tolerances or Tolerances())
    rows = rows[rows["session_date"].isin(set(sessions))]
    store_reconciliation(rows)
    report.counts = rows["status"].value_counts().to_dict()
    for row in rows[rows["status"] != "ok"].itertuples(index=False):
        log.warning("%s %s %s: %s", row.ticker, row.session_date, row.status, row.detail)
    log.info("reconciliation: %s", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("workers.reconcile", __doc__)
    parser.add_argument("--source", choices=SOURCE_KINDS, help="default: settings.market_source")
    parser.add_argument(
        "--session",
        type=date.fromisoformat,
        help="the newest session to check (YYYY-MM-DD; default: the last closed one)",
    )
    parser.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help="sessions to check, up to --session"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    source = make_source(settings, args.source)
    try:
        sessions = sessions_to_check(source.now(), args.days, args.session)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return run_job(
            "workers.reconcile",
            lambda: run_reconciliation(source, tickers=settings.universe, sessions=sessions),
            busy="the next run checks these sessions",
        )
    except SourceError as exc:
        log.error("reconciliation failed: the %s source did not answer: %s", source.name, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
