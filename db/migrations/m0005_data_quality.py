"""The data-quality guard's records: quarantined bars, held tickers, the daily reconciliation and
flagged news/macro inputs.

- `quarantined_bars`: a bar the guard (`workers.quality_guard`) judged suspect, with its raw
  values as served, its source, the reason and a detail for a person. It is never in `bars_1m`,
  so nothing that reads prices sees it. `status`: `pending` (its close moved like a spike and
  its next bar decides: held out of `bars_1m` until then), `quarantined` (open), `replaced` (a later
  print of the same minute passed and was stored), `accepted` (an analyst judged it real: it was
  stored in `bars_1m`), `rejected` (an analyst confirmed it bad). A minute can be quarantined
  more than once (the retry served another bad print).
- `ticker_holds`: a level shift the corporate-action ledger does not explain. While `held`, the
  ticker's signals are HOLD with the reason; `accepted` (the new level is real), `rejected` (the
  bars from the onset on are bad: quarantined) or `explained` (the corporate-action job found
  the action) end it. The decision names who made it and why.
- `daily_reconciliation`: per ticker and session, the stored minute bars resampled to the day
  beside the source's own daily bar, and whether they agree within the tolerance.
- `input_flags`: news articles cleaned or dropped and macro values outside their plausible
  range, with what was wrong; the rest of their batch is stored.
- `bar_writes`: a sequence every write of `bars_1m` draws a number from, so a process that keeps
  the stored bars it wrote (the live poller's guard) knows when another write came between two
  of its own (`workers.guard_tail.GuardTail`).
"""

from __future__ import annotations

NAME = "data-quality guard: quarantined bars, held tickers, reconciliation, input flags"

BAR_REASONS = (
    "'zero_or_negative', 'unit_error', 'ohlc_inconsistent', 'stale', 'spike', 'level_shift'"
)

UP = [
    f"""CREATE TABLE quarantined_bars (
        id bigserial PRIMARY KEY,
        ticker text NOT NULL,
        ts timestamptz NOT NULL,
        open double precision,
        high double precision,
        low double precision,
        close double precision,
        volume double precision,
        source text NOT NULL,
        reason text NOT NULL CHECK (reason IN ({BAR_REASONS})),
        detail text NOT NULL,
        status text NOT NULL DEFAULT 'quarantined'
            CHECK (status IN ('pending', 'quarantined', 'replaced', 'accepted', 'rejected')),
        flagged_at timestamptz NOT NULL DEFAULT now(),
        decided_at timestamptz,
        decided_by text,
        decision_reason text
    )""",
    "CREATE INDEX quarantined_bars_minute_idx ON quarantined_bars (ticker, ts)",
    "CREATE INDEX quarantined_bars_open_idx ON quarantined_bars (status, flagged_at)",
    """CREATE TABLE ticker_holds (
        id bigserial PRIMARY KEY,
        ticker text NOT NULL,
        onset_ts timestamptz NOT NULL,
        reason text NOT NULL,
        detail text NOT NULL,
        source text NOT NULL,
        status text NOT NULL DEFAULT 'held'
            CHECK (status IN ('held', 'accepted', 'rejected', 'explained')),
        flagged_at timestamptz NOT NULL DEFAULT now(),
        decided_at timestamptz,
        decided_by text,
        decision_reason text,
        UNIQUE (ticker, onset_ts)
    )""",
    "CREATE INDEX ticker_holds_held_idx ON ticker_holds (ticker) WHERE status = 'held'",
    """CREATE TABLE daily_reconciliation (
        ticker text NOT NULL,
        session_date date NOT NULL,
        source text NOT NULL,
        status text NOT NULL
            CHECK (status IN ('ok', 'differs', 'missing_stored', 'missing_source')),
        stored_open double precision,
        stored_high double precision,
        stored_low double precision,
        stored_close double precision,
        stored_volume double precision,
        source_open double precision,
        source_high double precision,
        source_low double precision,
        source_close double precision,
        source_volume double precision,
        max_price_diff double precision,
        detail text NOT NULL DEFAULT '',
        checked_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (ticker, session_date)
    )""",
    """CREATE TABLE input_flags (
        id bigserial PRIMARY KEY,
        feed text NOT NULL CHECK (feed IN ('news', 'macro')),
        item_key text NOT NULL,
        action text NOT NULL CHECK (action IN ('cleaned', 'dropped', 'flagged')),
        reason text NOT NULL,
        detail text NOT NULL,
        flagged_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX input_flags_time_idx ON input_flags (flagged_at)",
    "CREATE SEQUENCE bar_writes",
]

DOWN = [
    "DROP SEQUENCE IF EXISTS bar_writes",
    "DROP TABLE IF EXISTS input_flags",
    "DROP TABLE IF EXISTS daily_reconciliation",
    "DROP TABLE IF EXISTS ticker_holds",
    "DROP TABLE IF EXISTS quarantined_bars",
]
