"""The workbench's data layer: the app's database reads, cached once for all sessions.

Pages call these functions and hold no SQL. Results are cached with `st.cache_data`, bounded by
`max_entries` and `ttl`, and keyed on what makes them change (the newest bar, the serving model
version), so a warm rerun of a page costs one cheap stamp query. A database failure surfaces as
`DataUnavailable` carrying a message a user can act on, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import psycopg2
import streamlit as st
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from app.text import escape_markdown
from config.market_calendar import xnys
from config.settings import Settings, SettingsError, get_settings
from core import logs
from core.timeutil import utc
from db import bars as db_bars
from db import context as db_context
from db import replication as db_replication
from db import signals as db_signals
from db.database_manager import ping, route_reads_to_replica
from db.replication import ReplicaState as ReplicaState  # re-exported for the pages
from db.signals import LiveStamp as LiveStamp  # re-exported for the pages
from ml.generate_recommendation import trigger_distance
from ml.labels import DOWN, UP

# the app's reads go to DATABASE_READ_URL's replica when one is set (workers never opt in)
route_reads_to_replica()


def _secret_values() -> list[str]:
    try:
        return get_settings().secret_values()
    except SettingsError:  # the page says so (`ui.setup`); credential shapes are still masked
        return []


# what the app's process logs is redacted as every worker's is (`config.settings.setup_logging`);
# the secrets are read per record, so they follow the settings
logs.install_redaction(_secret_values)

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

INTERVALS = db_bars.INTERVALS


class DataUnavailable(RuntimeError):
    """The database cannot answer; `str(exc)` is safe to show to a user."""


def cached_data(*, ttl: float, max_entries: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`st.cache_data` with bounds, shared by every session of the server."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        cached: Callable[P, R] = st.cache_data(
            ttl=ttl, max_entries=max_entries, show_spinner=False
        )(fn)
        return cached

    return decorate


def redact(message: str, settings: Settings | None = None) -> str:
    """`message` with every secret of the settings masked (`Settings.redact`)."""
    return (settings or get_settings()).redact(message)


def describe_db_error(exc: BaseException) -> str:
    """A plain, secret-free sentence for a database failure."""
    if isinstance(exc, ProgrammingError) and "does not exist" in str(exc):
        return (
            "The database schema is missing or out of date: run `python -m db.migrate up`. "
            "This page retries by itself."
        )
    first_line = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
    # the driver's text may quote stored or typed values: escaped, as the pages show it
    detail = escape_markdown(first_line[0], max_chars=200) if first_line else type(exc).__name__
    return (
        f"The database is not reachable ({detail}). Showing what is known; "
        "this page retries by itself."
    )


def from_db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call one of `db`'s query functions, with failures turned into `DataUnavailable`."""
    try:
        return fn(*args, **kwargs)
    except (SQLAlchemyError, psycopg2.Error, OSError, RuntimeError) as exc:
        log.warning("query failed: %s", redact(str(exc)).splitlines()[0] if str(exc) else exc)
        raise DataUnavailable(describe_db_error(exc)) from None


def database_ok() -> bool:
    """True when the database answers a trivial query (uncached; used to recover)."""
    try:
        from_db(ping)
    except DataUnavailable:
        return False
    return True


def replica_state() -> ReplicaState | None:
    """The read replica's recovery state and lag (uncached: lag is live); None without
    `DATABASE_READ_URL`."""
    return from_db(db_replication.replica_state)


# --------------------------------------------------------------------------- live page


def live_stamp(version: str | None) -> LiveStamp:
    """The newest bar, the newest signals of `version` and the last adjustment (uncached)."""
    return from_db(db_signals.live_stamp, version)


CHANCE = 1.0 / 3.0  # three classes: a network guessing at random
SIGNAL_LOOKBACK = pd.Timedelta(days=3)  # market time searched back for signal changes
FEED_LENGTH = 15  # signal changes in the live page's feed
PROBS = ("p_down", "p_neutral", "p_up")  # the signals' probability columns, in CLASSES order


def _probabilities(frame: pd.DataFrame, model: str) -> np.ndarray:
    return np.asarray(frame[[f"{model}_{p}" for p in PROBS]].to_numpy(dtype=float))


def explain(frame: pd.DataFrame, settings: Settings | None = None) -> pd.DataFrame:
    """What the live board says about each signal row (the signals' columns: action, both
    networks' labels and probabilities), index aligned with `frame`:

    - `class_confidence`: the weaker network's probability of the class the signal stands
      for (BUY: UP, SELL: DOWN, HOLD: NEUTRAL when both networks lean NEUTRAL); NaN for a
      HOLD where the networks lean to a move without triggering it, or disagree, since no
      probability stands for that HOLD. Chance is 1/3 (`CHANCE`).
    - `lean`: "both UP" / "both NEUTRAL" / "both DOWN" / "split".
    - `trigger_side`, `trigger_level`, `trigger_weaker`, `trigger_distance`: the trigger
      (BUY or SELL) the rule is judged against, its threshold, the weaker network's
      probability of its class and their difference (`ml.generate_recommendation
      .trigger_distance`: >= 0 with a shared lean is exactly when the rule fires).
    - `trigger_text`: e.g. "0.04 short of BUY ≥ 0.55".
    """
    settings = settings or get_settings()
    out = pd.DataFrame(index=frame.index)
    scored = frame["action"].notna() & frame["lstm_p_up"].notna()
    rows = frame[scored]
    shared = rows["lstm_label"] == rows["transformer_label"]
    out["lean"] = None
    out.loc[rows.index, "lean"] = np.where(shared, "both " + rows["lstm_label"], "split")
    weaker_of = pd.Series(np.nan, index=rows.index)
    for action, cls in (("BUY", "up"), ("SELL", "down"), ("HOLD", "neutral")):
        pick = rows["action"] == action
        if action == "HOLD":
            pick &= shared & (rows["lstm_label"] == "NEUTRAL")
        weaker = np.minimum(rows[f"lstm_p_{cls}"], rows[f"transformer_p_{cls}"])
        weaker_of = weaker_of.where(~pick, weaker)
    out["class_confidence"] = weaker_of.reindex(frame.index)
    trig = trigger_distance(
        _probabilities(rows, "lstm"),
        _probabilities(rows, "transformer"),
        settings.buy_threshold,
        settings.sell_threshold,
    )
    columns = {
        "trigger_side": trig.side,
        "trigger_level": trig.threshold,
        "trigger_weaker": trig.weaker,
        "trigger_distance": trig.distance,
    }
    for name, values in columns.items():
        out[name] = pd.Series(values, index=rows.index).reindex(frame.index)
    out["trigger_text"] = [
        trigger_text(side, level, distance)
        for side, level, distance in zip(
            out["trigger_side"], out["trigger_level"], out["trigger_distance"], strict=True
        )
    ]
    return out


def trigger_text(side: object, level: float, distance: float) -> str:
    """'0.04 short of BUY ≥ 0.55' or '0.07 past SELL ≥ 0.55' ('—' without a signal)."""
    if not isinstance(side, str) or pd.isna(distance):
        return "—"
    where = "short of" if distance < 0 else "past"
    return f"{abs(distance):.2f} {where} {side} ≥ {level:.2f}"


def pct_of(values: object, base: float) -> list[float]:
    """Prices as % change from `base` (empty without a base)."""
    if not isinstance(values, list | np.ndarray) or base is None or not np.isfinite(base):
        return []
    return [(float(v) / base - 1.0) * 100.0 for v in values]


def changes_since(stamp: LiveStamp) -> pd.Timestamp | None:
    """Where the search for signal changes starts: `SIGNAL_LOOKBACK` before the newest signal."""
    return None if stamp.signal_ts is None else stamp.signal_ts - SIGNAL_LOOKBACK


@cached_data(ttl=300, max_entries=16)
def signal_changes(stamp: LiveStamp, version: str | None, tickers: tuple[str, ...]) -> pd.DataFrame:
    """The starts of runs of one action in the signals of `version` (`db.signals
    .signal_changes`) over `SIGNAL_LOOKBACK` of market time, newest first; keyed on `stamp`."""
    since = changes_since(stamp)
    if version is None or since is None:
        columns = ["previous", *db_signals.SIGNAL_COLUMNS.split(", ")]
        return pd.DataFrame(columns=columns)
    return from_db(db_signals.signal_changes, version, tickers, since)


def signal_feed(changes: pd.DataFrame, n: int = FEED_LENGTH) -> pd.DataFrame:
    """The latest `n` changes of action (first signals of a ticker left out), newest first."""
    return changes[changes["previous"].notna()].head(n).reset_index(drop=True)


def signal_began(
    frame: pd.DataFrame, changes: pd.DataFrame, since: pd.Timestamp | None
) -> pd.DataFrame:
    """Per row of the board: `signal_since`, the bar from which its current action has held
    unbroken, and `since_before` (True: it held through the whole search window, so it began
    before `signal_since`, which is then the window's start)."""
    began = changes.groupby("ticker")["bar_ts"].max() if not changes.empty else pd.Series()
    found = frame["ticker"].map(began)
    held = frame["action"].notna() & found.isna() & (since is not None)
    return pd.DataFrame(
        {
            "signal_since": found.where(~held, since),
            "since_before": held,
        },
        index=frame.index,
    )


def _live_frame(
    version: str | None,
    tickers: tuple[str, ...],
    changes: pd.DataFrame,
    since: pd.Timestamp | None,
) -> pd.DataFrame:
    frame = from_db(db_signals.live_board, version, tickers)
    frame["change_pct"] = (frame["last"] / frame["prev_close"] - 1.0) * 100.0
    frame["spark"] = [
        pct_of(closes, base)
        for closes, base in zip(frame["spark"], frame["prev_close"], strict=True)
    ]
    return pd.concat([frame, explain(frame), signal_began(frame, changes, since)], axis=1)


@cached_data(ttl=300, max_entries=8)
def live_table(stamp: LiveStamp, version: str | None, tickers: tuple[str, ...]) -> pd.DataFrame:
    """Per ticker: last price, change since the previous session's close, the last 90 minutes
    as % change since that close, the newest signal with its explanation (`explain`) and when
    its action began (`signal_began`).

    Cached on `stamp`: every session shares one copy until a bar or a signal is added.
    """
    changes = signal_changes(stamp, version, tickers)
    return _live_frame(version, tickers, changes, changes_since(stamp))


# --------------------------------------------------------------------------- stock detail


@cached_data(ttl=600, max_entries=64)
def bar_extent(
    ticker: str, newest: pd.Timestamp | None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """First and last bar time of `ticker` (None, None without bars); keyed on the newest bar."""
    del newest  # the cache key
    return from_db(db_bars.bar_extent, ticker)


MAX_MINUTE_BARS = 20 * 390  # 1-minute bars a chart reads at most: twenty full sessions


@dataclass(frozen=True)
class ChartRange:
    """The range a chart reads (`chart_range`)."""

    start: pd.Timestamp  # later than asked when `capped`
    end: pd.Timestamp
    minute_bars: int  # the 1-minute bars the asked range can hold (its session minutes)
    capped: bool


def chart_range(
    interval: str, start: pd.Timestamp, end: pd.Timestamp, newest: pd.Timestamp | None = None
) -> ChartRange:
    """[start, end) as a chart reads it: at 1m, at most `MAX_MINUTE_BARS` bars, the last ones
    of the range (counted in XNYS session minutes, the only minutes bars are stored for, up
    to `newest`, the newest stored bar, when the range ends after it); other intervals as
    asked."""
    start, end = utc(start), utc(end)
    if interval != "1m":
        return ChartRange(start, end, 0, False)
    calendar = xnys()
    last = end if newest is None else min(end, utc(newest) + pd.Timedelta(minutes=1))
    lo, hi = max(start, calendar.first_minute), min(last, calendar.last_minute)
    minutes = calendar.minutes_in_range(lo, hi) if lo <= hi else pd.DatetimeIndex([])
    minutes = minutes[(minutes >= start) & (minutes < last)]
    if len(minutes) <= MAX_MINUTE_BARS:
        return ChartRange(start, end, len(minutes), False)
    return ChartRange(minutes[-MAX_MINUTE_BARS], end, len(minutes), True)


@cached_data(ttl=600, max_entries=32)
def bars(
    ticker: str, interval: str, start: pd.Timestamp, end: pd.Timestamp, stamp: LiveStamp
) -> pd.DataFrame:
    """Adjusted OHLCV bars of `ticker` at `interval` (1m/5m/1h/1d), aggregated in the database
    (keyed on the live stamp: a new bar or an applied corporate action rebuilds it); at 1m, no
    more than `MAX_MINUTE_BARS`, the last ones of the range (`chart_range`)."""
    start = chart_range(interval, start, end, stamp.bars_ts).start
    frame = from_db(db_bars.interval_bars, ticker, interval, start, end)
    return frame.tail(MAX_MINUTE_BARS) if interval == "1m" else frame


@cached_data(ttl=600, max_entries=32)
def signal_markers(
    ticker: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    version: str | None,
    label_key: str,
    stamp: LiveStamp,
) -> pd.DataFrame:
    """The BUY and SELL signals of `ticker` in [start, end) that start a run of their action
    (of `version`, or of each version), at their bar's adjusted close, each with its realised
    outcome under `label_key` and its `verdict` (`marker_verdicts`)."""
    del stamp  # the cache key
    frame = from_db(db_signals.signal_markers, ticker, start, end, version, label_key)
    frame["verdict"] = marker_verdicts(frame)
    return frame


def marker_verdicts(frame: pd.DataFrame) -> pd.Series:
    """How each BUY/SELL signal turned out, by its bar's realised triple-barrier outcome:
    "right" (BUY then UP, SELL then DOWN), "wrong" (the other way, or NEUTRAL: no clear move,
    as the live scoreboard's hit rate counts it), "pending" (its horizon has not passed yet),
    "no outcome" (its horizon crossed the session's close, so there is none to realise)."""
    wanted = frame["action"].map({"BUY": UP, "SELL": DOWN})
    outcome = frame["outcome"].astype("Int64")
    known = outcome.notna()
    verdict = np.where(
        ~frame["realised"].astype(bool),
        "pending",
        np.where(~known, "no outcome", np.where(outcome.fillna(-1) == wanted, "right", "wrong")),
    )
    return pd.Series(verdict, index=frame.index, dtype=object)


@cached_data(ttl=120, max_entries=32)
def news(ticker: str, start: pd.Timestamp, end: pd.Timestamp, limit: int = 200) -> pd.DataFrame:
    """Headlines about `ticker` published in [start, end), newest last."""
    return from_db(db_context.headlines, ticker, start, end, limit)


@cached_data(ttl=600, max_entries=8)
def macro_context(as_of: pd.Timestamp) -> pd.DataFrame:
    """Per macro series, the latest value known at `as_of`, the one before it and the values a
    year before both (`db.context.macro_snapshot`)."""
    return from_db(db_context.macro_snapshot, as_of)


@dataclass(frozen=True)
class MacroSeries:
    """How the detail page shows a macro series: its name, and what a rise means for the
    delta's colour (st.metric's `delta_color`: "normal" up is green, "inverse" up is red,
    "off" grey: a rise is neither good nor bad news in itself)."""

    name: str
    delta_color: Literal["normal", "inverse", "off"] = "off"
    year_on_year: bool = False  # shown as the % change from a year before (an index level)
    unit: str = ""


MACRO_SERIES = {
    "CPIAUCSL": MacroSeries("CPI inflation, year on year", "inverse", year_on_year=True),
    "UNRATE": MacroSeries("Unemployment rate", "inverse", unit="%"),
    "VIXCLS": MacroSeries("VIX, expected volatility", "inverse"),
    "DGS10": MacroSeries("10-year Treasury yield", unit="%"),
    "DGS2": MacroSeries("2-year Treasury yield", unit="%"),
    "T10Y2Y": MacroSeries("10-year minus 2-year spread", unit=" pp"),
    "DFF": MacroSeries("Fed funds rate, daily", unit="%"),
    "FEDFUNDS": MacroSeries("Fed funds rate, monthly", unit="%"),
}


@dataclass(frozen=True)
class MacroFigure:
    """One macro figure as the detail page shows it."""

    series_id: str
    label: str
    value: str
    delta: str | None
    delta_color: Literal["normal", "inverse", "off"]
    obs_date: str
    released: pd.Timestamp | None
    note: str = ""


def _yoy(value: float, year_ago: float) -> float:
    return (value / year_ago - 1.0) * 100.0 if year_ago and np.isfinite(year_ago) else np.nan


def macro_figure(row: Any) -> MacroFigure:
    """One `macro_snapshot` row as the page shows it (see `macro_figures`)."""
    sid = str(row.series_id)
    spec = MACRO_SERIES.get(sid, MacroSeries(sid))
    label, value = f"{sid} · {spec.name}", f"{row.value:.4g}{spec.unit}"
    delta = None if pd.isna(row.previous) else f"{row.value - row.previous:+.3g}{spec.unit}"
    color, note = spec.delta_color, ""
    if spec.year_on_year:
        now, before = _yoy(row.value, row.year_ago), _yoy(row.previous, row.previous_year_ago)
        if np.isfinite(now):
            value = f"{now:.2f}%"
            delta = None if not np.isfinite(before) else f"{now - before:+.2f} pp"
        else:
            year_before = (pd.Timestamp(row.obs_date) - pd.DateOffset(years=1)).date()
            label, color = f"{sid} · index level", "off"
            note = f"year-on-year change needs the {year_before} observation, not stored"
    released = None if pd.isna(row.released) else pd.Timestamp(row.released)
    return MacroFigure(sid, label, value, delta, color, str(row.obs_date), released, note)


def macro_figures(snapshot: pd.DataFrame) -> list[MacroFigure]:
    """`macro_snapshot` rows as the page shows them: a year-on-year series (an index level)
    as its % change from the observation a year before, with a note when that one is not
    stored; others as their level; the delta against the previous observation (for a
    year-on-year series: the change of the year-on-year rate, in percentage points), coloured
    by what a rise means (`MACRO_SERIES`)."""
    return [macro_figure(row) for row in snapshot.itertuples(index=False)]


def explained_signal(ticker: str, version: str | None, stamp: LiveStamp) -> dict[str, Any] | None:
    """The newest signal of `ticker` from `version` with its explanation (`explain`) and when
    its action began (`signal_began`), as a dict, or None."""
    signal = latest_signal(ticker, version, stamp) if version else None
    if signal is None:
        return None
    frame = pd.DataFrame([signal]).assign(ticker=ticker)
    began = signal_began(frame, signal_changes(stamp, version, (ticker,)), changes_since(stamp))
    return dict(pd.concat([frame, explain(frame), began], axis=1).iloc[0])


@cached_data(ttl=600, max_entries=64)
def latest_signal(ticker: str, version: str | None, stamp: LiveStamp) -> dict[str, Any] | None:
    """The newest signal of `ticker` from `version`, as a dict, or None."""
    del stamp  # the cache key
    return from_db(db_signals.latest_signal, ticker, version)


@cached_data(ttl=60, max_entries=1)
def sentiment_model() -> str | None:
    """The sentiment model behind the newest stored article (what the news worker runs now)."""
    return from_db(db_context.latest_sentiment_model)
