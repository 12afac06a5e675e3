"""Realised outcomes: the triple-barrier label of every scored bar, once its horizon has passed.

An outcome is computed from the stored bars with the labelling code training uses
(`ml.features.labels.triple_barrier_labels`): the barriers from the volatility of the bars up to the
scored one, the path from the next `horizon_bars` bars of the same session, nothing after them.
It is stored once per (ticker, bar, label definition) in `outcomes`; a bar whose horizon would
cross the session's close gets an outcome without a label (there is none to realise). Drift's
realised accuracy and the live scoreboard read these rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from core.timeutil import utc_now
from db.bars import read_bars, read_last_bars
from db.signals import unlabelled_bars
from db.writes import write_to_db
from ml.features.labels import LabelParams, session_codes, triple_barrier_labels

log = logging.getLogger(__name__)
FAR = pd.Timestamp("2262-01-01", tz="UTC")


def label_key(params: LabelParams) -> str:
    """The name of a label definition (outcomes are stored per definition)."""
    return (
        f"tb-h{params.horizon_bars}-u{params.up_mult:g}-d{params.down_mult:g}"
        f"-v{params.vol_lookback}"
    )


def realised(bars: pd.DataFrame, targets: pd.DataFrame, params: LabelParams) -> pd.DataFrame:
    """Outcomes of `targets` (ticker, bar_ts) from `bars` (ticker, ts, close, ...): ticker,
    bar_ts, label (NaN: the horizon crosses the close), fwd_return, exit_ts, and whether the
    outcome is final (the horizon's bars are there, or the session is over)."""
    labels = triple_barrier_labels(bars, params)
    keyed = targets.merge(
        labels.rename(columns={"ts": "bar_ts"}), on=["ticker", "bar_ts"], how="inner"
    )
    newest = bars.groupby("ticker")["ts"].max()
    last_session = pd.Series(session_codes(pd.DatetimeIndex(newest.to_numpy())), index=newest.index)
    session = session_codes(pd.DatetimeIndex(keyed["bar_ts"]))
    over = session < keyed["ticker"].map(last_session).to_numpy()
    keyed["final"] = keyed["label"].notna().to_numpy() | over
    return keyed[["ticker", "bar_ts", "label", "fwd_return", "exit_ts", "final"]]


def update_outcomes(
    params_set: Iterable[LabelParams], versions: list[str], since: pd.Timestamp
) -> int:
    """Store the outcomes of every bar scored by `versions` since `since` whose horizon has
    passed and that has none yet under each label definition; returns rows stored."""
    stored = 0
    for params in set(params_set):
        key = label_key(params)
        pending = unlabelled_bars(versions, key, since)
        if pending.empty:
            continue
        tickers = sorted(set(pending["ticker"]))
        first = pd.Timestamp(pending["bar_ts"].min())
        # the volatility of a bar looks back `vol_lookback` returns: that many bars before the
        # first pending one (and one more) give every pending bar the barrier training gives it
        warm = read_last_bars(tickers, params.vol_lookback + 1, first)
        bars = pd.concat([warm, read_bars(tickers, first, FAR)], ignore_index=True)
        out = realised(bars, pending, params)
        out = out[out["final"]]
        if out.empty:
            continue
        rows = out.drop(columns=["final"]).assign(label_key=key, computed_at=utc_now())
        rows["label"] = rows["label"].astype("Int64")
        stored += write_to_db(rows, table="outcomes", on_conflict="nothing")
    return stored
