"""The macro context of the detail page: the latest figure of each macro series known at a
time, and how the page shows it (a year-on-year rate for an index level, a delta coloured by
what a rise means)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from app.data import cached_data, from_db
from db import context as db_context


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
