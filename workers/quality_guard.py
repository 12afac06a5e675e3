"""The data-quality guard's detection core: which 1-minute bars are suspect, and why.

`check_bars(new, history, actions, params)` judges the bars about to be written against the
stored bars before them and returns one row per suspect bar with a named reason; the bars it
does not return pass. Pure numpy over all tickers at once (no loop per bar), no database.

The rules, in priority order (a bar gets the first reason that applies), are in
`workers.guard_rules`: ``zero_or_negative``, ``unit_error``, ``ohlc_inconsistent``, ``stale``,
``spike`` and ``level_shift``.

Causality. A bar is judged on the bars before it, except for two verdicts that need the bars
after it: a spike is decided by the next bar, a level shift by the next `shift_bars` - 1. Each
verdict is given once, in the call whose `new` holds the bar that completes it. So a live poll
(one new bar per ticker) gets the backward rules on the new bar, the spike verdict on the
previous bar and the level-shift verdict on the bar `shift_bars` - 1 back: flags can name
bars of `history` (``in_history``) that the write path stored already. The last bars of a
batch wait for the next write. A batch and the same bars polled one by one get the same flags
(the quarantined bars left out of the later polls' history).

What the write path does with a flag. Every reason but ``level_shift`` is about the bar itself:
it is quarantined (`QUARANTINE_REASONS`) and so is absent from the next call's history.
``level_shift`` names the onset of a new price level: the ticker is held until someone decides,
and the bars stay, since every later bar is judged against them (left out, each next bar would
be a new onset).

Prices. `new` is raw, as served; `history` raw as stored (`db.bars`) or adjusted as read (an
applied action then shows no jump at all); both regular-session bars only
(`config.market_calendar.regular_session_mask`), so a bar's UTC date is its New York session
date, the ledger's ex-date. History is trusted: it passed the guard when it was written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workers import guard_rules as rules
from workers.guard_arrays import Bars, prepare
from workers.guard_rules import GuardParams, Ledger, Verdict

ZERO_OR_NEGATIVE = "zero_or_negative"
UNIT_ERROR = "unit_error"
OHLC_INCONSISTENT = "ohlc_inconsistent"
STALE = "stale"
SPIKE = "spike"
LEVEL_SHIFT = "level_shift"
REASONS = (ZERO_OR_NEGATIVE, UNIT_ERROR, OHLC_INCONSISTENT, STALE, SPIKE, LEVEL_SHIFT)
QUARANTINE_REASONS = (ZERO_OR_NEGATIVE, UNIT_ERROR, OHLC_INCONSISTENT, STALE, SPIKE)
FLAG_COLUMNS = ["ticker", "ts", "reason", "detail", "in_history"]


@functools.cache
def _empty_flags() -> pd.DataFrame:
    text = np.array([], object)
    ts = pd.DatetimeIndex([], tz="UTC").as_unit("ns")
    columns = [text, ts, text, text, np.array([], bool)]
    return pd.DataFrame(dict(zip(FLAG_COLUMNS, columns, strict=True)))


def _flags(b: Bars, found: list[tuple[str, Verdict]]) -> pd.DataFrame:
    rows = np.concatenate([v[0] for _, v in found]).astype(np.int64)
    if not len(rows):
        return _empty_flags().copy()
    reasons = [reason for reason, (flagged, _) in found for _ in flagged]
    details = [d for _, (_, texts) in found for d in texts]
    columns = [b.names[b.code[rows]], pd.to_datetime(b.ts[rows], utc=True), reasons, details]
    frame = pd.DataFrame(dict(zip(FLAG_COLUMNS, [*columns, ~b.is_new[rows]], strict=True)))
    return frame.sort_values(["ticker", "ts"], ignore_index=True)


def _completed(b: Bars, span: int) -> np.ndarray:
    """Rows r whose bars r .. r + span - 1 all exist in their ticker and include a new one: the
    verdicts that need `span` - 1 bars after r and that this call completes."""
    n = len(b.ts)
    new_ahead = np.zeros(n + 1, np.int64)
    new_ahead[:-1] = np.cumsum(b.is_new[::-1])[::-1]  # new rows from r to the end
    rows = np.arange(n)
    last = rows + span - 1
    inside = last < b.end
    stop = np.minimum(last + 1, n)
    return np.asarray(rows[inside & (new_ahead[rows] - new_ahead[stop] > 0)])


def found_any(found: list[tuple[str, Verdict]]) -> bool:
    return any(len(rows) for _, (rows, _) in found)


@dataclass(frozen=True)
class GuardResult:
    """What the guard says of a write: `flags` (see `check_bars`) and `pending`, the new bars
    (ticker, ts, detail) whose close moved like a spike and whose verdict waits for their next
    bar (the last bar of its ticker in the call, its session not over)."""

    flags: pd.DataFrame
    pending: pd.DataFrame


@functools.cache
def _nothing() -> GuardResult:
    """The (shared, not to be modified) result of a write with nothing to say."""
    return GuardResult(_empty_flags(), _empty_flags()[["ticker", "ts", "detail"]])


def judge_bars(
    new: pd.DataFrame,
    history: pd.DataFrame | None,
    actions: Ledger | None = None,
    params: GuardParams | None = None,
) -> GuardResult:
    """`check_bars`, and the new bars whose spike verdict waits for the next bar. `actions` may
    be a function that reads the ledger: it is called only when a level shift is a candidate.

    `history` may hold stored bars after the new ones too (a backfill writes into a gap): the
    verdicts those complete are given now (a new bar's spike by the stored bar after it).
    """
    if new.empty:
        return _nothing()
    return judge_arranged(prepare(new, history), actions, params)


def judge_arranged(
    b: Bars, actions: Ledger | None = None, params: GuardParams | None = None
) -> GuardResult:
    """`judge_bars` on bars already arranged as arrays (`workers.guard_arrays.arrange`): the
    write path's live poller keeps the stored bars it needs as arrays."""
    p = params or GuardParams()
    found: list[tuple[str, Verdict]] = []
    flagged = np.zeros(len(b.ts), bool)

    def judge(reason: str, verdict: Verdict) -> None:
        found.append((reason, verdict))
        flagged[verdict[0]] = True

    def unflagged(rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows[~flagged[rows]])

    new_rows = np.flatnonzero(b.is_new)
    judge(ZERO_OR_NEGATIVE, rules.zero_or_negative(b, new_rows))
    judge(UNIT_ERROR, rules.unit_error(b, unflagged(new_rows), p))
    judge(OHLC_INCONSISTENT, rules.ohlc_inconsistent(b, unflagged(new_rows), p))
    # bars flagged so far are left out of every window
    r = rules.close_returns(b, hard=flagged.copy())
    judge(STALE, rules.stale(b, unflagged(new_rows), p))
    judge(SPIKE, rules.spike(b, r, unflagged(_completed(b, 2)), p))
    judge(SPIKE, rules.wick(b, r, unflagged(new_rows), p))
    onsets = unflagged(_completed(b, p.shift_bars))
    judge(
        LEVEL_SHIFT,
        rules.level_shift(b, r, onsets, pd.DataFrame() if actions is None else actions, p),
    )
    last_new = unflagged(new_rows[b.end[new_rows] == new_rows + 1])
    waiting, move, z = rules.spike_z(b, r, last_new, p)
    if not len(waiting) and not found_any(found):
        return _nothing()
    pending = pd.DataFrame(
        {
            "ticker": b.names[b.code[waiting]],
            "ts": pd.to_datetime(b.ts[waiting], utc=True),
            "detail": [
                f"close {b.close[row]:g} moved {np.expm1(m):+.2%} (robust z {zz:.0f}); the next "
                "bar decides whether it is a spike"
                for row, m, zz in zip(waiting, move, z, strict=True)
            ],
        }
    )
    return GuardResult(_flags(b, found), pending)


def check_bars(
    new: pd.DataFrame,
    history: pd.DataFrame | None,
    actions: pd.DataFrame | None = None,
    params: GuardParams | None = None,
) -> pd.DataFrame:
    """The suspect bars among `new`, and among the bars of `history` whose verdict the new ones
    complete, each with its reason; bars not returned pass.

    Parameters
    ----------
    new : bars about to be written: ticker, ts (UTC), open, high, low, close, volume, raw; any
        tickers and number of bars, in any order.
    history : the stored bars of the same tickers around them, raw (the last
        `params.history_bars` per ticker before them suffice, and `params.shift_bars` after
        them where a write fills a gap), or None. Trusted as good.
    actions : corporate-action ledger rows: ticker, ex_date, action_type ('split' with value
        the ratio, 4 for 4-for-1; 'dividend' with value the cash amount), value; or None.
    params : thresholds (default `GuardParams()`).

    Returns
    -------
    DataFrame of ticker, ts, reason (one of `REASONS`), detail (for a person) and in_history
    (a stored bar judged now that the bars after it came), one row per suspect bar, sorted by
    (ticker, ts). Looks ahead within `history` + `new` only: one bar for the spike verdict,
    `shift_bars` - 1 for the level shift (see the module docstring).
    """
    return judge_bars(new, history, actions, params).flags.copy()
