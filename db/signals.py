"""Reads of the signals log and the live board: one query per question.

Prices shown beside signals (the last price, the previous session's close, the sparkline, the
close a marker sits at) are adjusted for corporate actions like every bar read (`db.bars`), so
markers and candles share one scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import pandas as pd
from sqlalchemy import Connection, text

from db.bars import ADJUST_JOIN, UTC_ORIGIN
from db.connections import ADVISORY_LOCKS
from db.reads import read_from_db

SPARK_WINDOW = "90 minutes"
SCORING_LOCK = ADVISORY_LOCKS["scoring"]


class LiveStamp(NamedTuple):
    """What changes when the live board must be rebuilt (one cheap query)."""

    bars_ts: pd.Timestamp | None
    signal_ts: pd.Timestamp | None
    signal_rows: int
    adjusted_at: pd.Timestamp | None


def _ts(value: Any) -> pd.Timestamp | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value)


def live_stamp(version: str | None) -> LiveStamp:
    """The newest bar, the newest signals of `version` and the last corporate action applied
    (index lookups)."""
    frame = read_from_db(
        "WITH m AS (SELECT max(bar_ts) AS bar_ts FROM signals WHERE model_version = :v) "
        "SELECT (SELECT max(ts) FROM bars_1m) AS bars_ts, m.bar_ts AS signal_ts, "
        "(SELECT count(*) FROM signals s WHERE s.bar_ts = m.bar_ts AND s.model_version = :v) "
        "AS signal_rows, (SELECT max(applied_at) FROM corporate_actions) AS adjusted_at FROM m",
        {"v": version or ""},
    )
    row = frame.iloc[0]
    return LiveStamp(
        _ts(row["bars_ts"]),
        _ts(row["signal_ts"]),
        int(row["signal_rows"] or 0),
        _ts(row["adjusted_at"]),
    )


def _adjusted_bars(columns: str) -> str:
    """A sub-select of one ticker's adjusted bars (`t.ticker` from the outer query)."""
    return f"SELECT {columns} FROM bars_1m b {ADJUST_JOIN} WHERE b.ticker = t.ticker"  # noqa: S608


LIVE_BOARD = f"""
SELECT t.ticker, lb.ts AS bar_ts, lb.close AS last, pc.close AS prev_close, sp.closes AS spark,
       sg.bar_ts AS signal_ts, sg.action, sg.confidence, sg.reason,
       sg.lstm_label, sg.lstm_p_down, sg.lstm_p_neutral, sg.lstm_p_up,
       sg.transformer_label, sg.transformer_p_down, sg.transformer_p_neutral,
       sg.transformer_p_up
FROM unnest(CAST(:tickers AS text[])) WITH ORDINALITY AS t(ticker, pos)
LEFT JOIN LATERAL (
    {_adjusted_bars("b.ts, b.close * coalesce(a.price_factor, 1) AS close")}
    ORDER BY b.ts DESC LIMIT 1) lb ON true
LEFT JOIN LATERAL (
    {_adjusted_bars("b.close * coalesce(a.price_factor, 1) AS close")}
      AND b.ts < date_bin(CAST(:day AS interval), lb.ts, CAST(:origin AS timestamptz))
    ORDER BY b.ts DESC LIMIT 1) pc ON true
LEFT JOIN LATERAL (
    SELECT array_agg(recent.close ORDER BY recent.ts) AS closes FROM (
        {_adjusted_bars("b.ts, b.close * coalesce(a.price_factor, 1) AS close")}
          AND b.ts > lb.ts - CAST(:spark AS interval)) AS recent) sp ON true
LEFT JOIN LATERAL (
    SELECT * FROM signals WHERE ticker = t.ticker AND model_version = :v
    ORDER BY bar_ts DESC LIMIT 1) sg ON true
ORDER BY t.pos
"""  # noqa: S608 - composed from fixed fragments only


def live_board(version: str | None, tickers: Sequence[str]) -> pd.DataFrame:
    """Per ticker: the last adjusted price, the previous session's adjusted close, the last
    90 minutes of adjusted closes, and the newest signal of `version`."""
    return read_from_db(
        LIVE_BOARD,
        {
            "tickers": list(tickers),
            "v": version or "",
            "day": "1 day",
            "origin": UTC_ORIGIN,
            "spark": SPARK_WINDOW,
        },
    )


SIGNAL_COLUMNS = (
    "ticker, bar_ts, action, confidence, reason, lstm_label, lstm_p_down, lstm_p_neutral, "
    "lstm_p_up, transformer_label, transformer_p_down, transformer_p_neutral, transformer_p_up"
)  # a signal as the live board explains it
SIGNAL_CHANGES = f"""
WITH window_rows AS (
    SELECT {SIGNAL_COLUMNS} FROM signals
    WHERE model_version = :v AND ticker = ANY(:tickers) AND bar_ts >= :since
    UNION ALL
    SELECT before.* FROM unnest(CAST(:tickers AS text[])) AS t(ticker)
    CROSS JOIN LATERAL (
        SELECT {SIGNAL_COLUMNS} FROM signals
        WHERE ticker = t.ticker AND model_version = :v AND bar_ts < :since
        ORDER BY bar_ts DESC LIMIT 1) before
), marked AS (
    SELECT *, lag(action) OVER (PARTITION BY ticker ORDER BY bar_ts) AS previous
    FROM window_rows
)
SELECT previous, {SIGNAL_COLUMNS} FROM marked
WHERE bar_ts >= :since AND previous IS DISTINCT FROM action
ORDER BY bar_ts DESC, ticker
"""  # noqa: S608 - composed from fixed fragments only


def signal_changes(version: str | None, tickers: Sequence[str], since: Any) -> pd.DataFrame:
    """Every start of a run of one action in the signals of `version` since `since`, newest
    first: previous (the action before it; None when it is the version's first signal of the
    ticker), then the run's first signal (`SIGNAL_COLUMNS`: ticker, bar_ts, action, confidence,
    reason, both networks' labels and probabilities).

    A run is the consecutive stored signals of one ticker with the same action (bars the
    version did not score do not break it). The newest row of a ticker is when its current
    action began; a ticker without a row has held its action since before `since`. The
    signal just before `since` is read too, so a change at `since` is seen as one.
    """
    frame = read_from_db(
        SIGNAL_CHANGES, {"v": version or "", "tickers": list(tickers), "since": since}
    )
    frame["bar_ts"] = pd.to_datetime(frame["bar_ts"], utc=True)
    return frame


SIGNAL_MARKERS = """
WITH ranged AS (
    SELECT s.ticker, s.bar_ts, s.model_version, s.action, s.confidence, s.close, s.reason,
           lag(s.action) OVER (PARTITION BY s.model_version ORDER BY s.bar_ts) AS previous
    FROM signals s
    WHERE s.ticker = :t AND s.bar_ts >= :start AND s.bar_ts < :end
      AND (CAST(:v AS text) IS NULL OR s.model_version = :v)
), firsts AS (
    SELECT v.model_version, b.action AS before
    FROM (SELECT DISTINCT model_version FROM ranged) v
    LEFT JOIN LATERAL (
        SELECT p.action FROM signals p
        WHERE p.ticker = :t AND p.model_version = v.model_version AND p.bar_ts < :start
        ORDER BY p.bar_ts DESC LIMIT 1) b ON true
), runs AS (
    SELECT r.*, count(*) FILTER (WHERE r.prior IS DISTINCT FROM r.action)
               OVER (PARTITION BY r.model_version ORDER BY r.bar_ts) AS run
    FROM (SELECT ranged.*, coalesce(ranged.previous, firsts.before) AS prior
          FROM ranged JOIN firsts USING (model_version)) r
), run_sizes AS (
    SELECT model_version, run, count(*) AS run_bars FROM runs GROUP BY model_version, run
)
SELECT r.bar_ts, r.action, r.confidence, r.close * coalesce(a.price_factor, 1) AS close,
       r.model_version, r.reason, sz.run_bars, o.label AS outcome, o.fwd_return,
       (o.ticker IS NOT NULL) AS realised
FROM runs r
JOIN run_sizes sz ON sz.model_version = r.model_version AND sz.run = r.run
LEFT JOIN bar_adjustments a
    ON a.ticker = r.ticker AND r.bar_ts >= a.valid_from AND r.bar_ts < a.valid_to
LEFT JOIN outcomes o
    ON o.ticker = r.ticker AND o.bar_ts = r.bar_ts AND o.label_key = :key
WHERE r.action <> :hold AND r.prior IS DISTINCT FROM r.action
ORDER BY r.bar_ts, r.model_version
"""


def signal_markers(
    ticker: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    version: str | None,
    label_key: str = "",
) -> pd.DataFrame:
    """The BUY and SELL signals of `ticker` in [start, end) that start a run of their action
    (of `version`, or of each version), each at its bar's close on today's adjusted scale:
    bar_ts, action, confidence, close, model_version, reason, run_bars (how many consecutive
    signals of the version held it, counted up to `end`), and the realised outcome of that
    bar under `label_key`: outcome (0 DOWN / 1 NEUTRAL / 2 UP; None when its horizon crossed
    the session's close), fwd_return, realised (False: not computed yet)."""
    frame = read_from_db(
        SIGNAL_MARKERS,
        {"t": ticker, "start": start, "end": end, "hold": "HOLD", "v": version, "key": label_key},
    )
    frame["outcome"] = frame["outcome"].astype("Int64")
    frame["realised"] = frame["realised"].astype(bool)
    return frame


def latest_signal(ticker: str, version: str | None) -> dict[str, Any] | None:
    """The newest signal of `ticker` from `version`, as a dict (with both networks' labels and
    probabilities), or None."""
    frame = read_from_db(
        "SELECT bar_ts, action, confidence, reason, lstm_label, lstm_p_down, lstm_p_neutral, "
        "lstm_p_up, transformer_label, transformer_p_down, transformer_p_neutral, "
        "transformer_p_up FROM signals WHERE ticker = :t AND model_version = :v "
        "ORDER BY bar_ts DESC LIMIT 1",
        {"t": ticker, "v": version or ""},
    )
    return None if frame.empty else dict(frame.iloc[0])


# --------------------------------------------------------------------------- scoring


def try_scoring_lock(conn: Connection) -> bool:
    """Take the scorers' transaction-level advisory lock in `conn` (False: another scorer holds
    it). Scorers in every process take turns, so a bar is scored once per version."""
    return bool(
        conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SCORING_LOCK}).scalar()
    )


def last_scored(
    versions: Sequence[str], tickers: Sequence[str]
) -> dict[str, dict[str, pd.Timestamp]]:
    """Per version, the newest bar each ticker has been scored at (in any role); one query for
    all versions (every version is a key, with an empty mapping when it scored nothing)."""
    frame = read_from_db(
        "SELECT model_version, ticker, max(bar_ts) AS last FROM signals "
        "WHERE model_version = ANY(:v) AND ticker = ANY(:t) GROUP BY model_version, ticker",
        {"v": list(versions), "t": list(tickers)},
    )
    out: dict[str, dict[str, pd.Timestamp]] = {str(v): {} for v in versions}
    for version, ticker, last in zip(
        frame["model_version"], frame["ticker"], frame["last"], strict=True
    ):
        out[str(version)][str(ticker)] = pd.Timestamp(last)
    return out


def predictions(version: str, since: pd.Timestamp) -> pd.DataFrame:
    """Both models' labels and probabilities of `version` at every bar scored since `since`."""
    return read_from_db(
        "SELECT ticker, bar_ts, lstm_label, transformer_label, lstm_p_down, lstm_p_neutral, "
        "lstm_p_up, transformer_p_down, transformer_p_neutral, transformer_p_up FROM signals "
        "WHERE model_version = :v AND bar_ts >= :since",
        {"v": version, "since": since},
    )


# --------------------------------------------------------------------------- outcomes


def unlabelled_bars(versions: Sequence[str], label_key: str, since: pd.Timestamp) -> pd.DataFrame:
    """Bars scored by `versions` since `since` with no stored outcome under `label_key`."""
    frame = read_from_db(
        "SELECT DISTINCT s.ticker, s.bar_ts FROM signals s "
        "WHERE s.model_version = ANY(:versions) AND s.bar_ts >= :since AND NOT EXISTS ("
        " SELECT 1 FROM outcomes o WHERE o.ticker = s.ticker AND o.bar_ts = s.bar_ts"
        " AND o.label_key = :key) ORDER BY s.bar_ts, s.ticker",
        {"versions": list(versions), "since": since, "key": label_key},
    )
    frame["bar_ts"] = pd.to_datetime(frame["bar_ts"], utc=True).dt.as_unit("ns")
    return frame


def scored_with_outcomes(
    versions: Sequence[str], label_key: str, since: pd.Timestamp
) -> pd.DataFrame:
    """Every prediction of `versions` since `since` whose outcome under `label_key` is known,
    with it: the signals columns plus outcome (0 DOWN / 1 NEUTRAL / 2 UP), fwd_return."""
    frame = read_from_db(
        "SELECT s.ticker, s.bar_ts, s.model_version, s.role, s.action, s.lstm_label, "
        "s.transformer_label, s.lstm_p_down, s.lstm_p_neutral, s.lstm_p_up, "
        "s.transformer_p_down, s.transformer_p_neutral, s.transformer_p_up, "
        "o.label AS outcome, o.fwd_return FROM signals s JOIN outcomes o "
        "ON o.ticker = s.ticker AND o.bar_ts = s.bar_ts AND o.label_key = :key "
        "WHERE s.model_version = ANY(:versions) AND s.bar_ts >= :since AND o.label IS NOT NULL "
        "ORDER BY s.bar_ts, s.ticker, s.model_version",
        {"versions": list(versions), "since": since, "key": label_key},
    )
    frame["bar_ts"] = pd.to_datetime(frame["bar_ts"], utc=True)
    return frame
