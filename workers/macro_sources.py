"""Macro series and where they come from: FRED/ALFRED (fredapi), FRED's CSV download, simulated.

Every source returns `MACRO_COLUMNS`: series_id, obs_date, realtime_start (UTC: when the value
became public), value. Release times:

- ALFRED (`fred`, needs FRED_API_KEY): each value's real-time period start (the day FRED first
  showed it; revisions are further rows) at the series' official release time of day (ET).
- FRED CSV (`fred_csv`, keyless, no vintages): estimated conservatively from the observation
  period's end plus the series' publication lag (`SeriesSpec`), never earlier than the true
  release; values are the latest revision, so a changed value is stored as a new row stamped
  with the time it was first seen.
- simulated: the same release rule as the CSV estimate, plus one revision of each CPI figure.

A missing value (FRED's ".", a day without an observation) is left out; infinite ones are kept
for the ingestor to flag with the values outside their series' plausible range.
"""

from __future__ import annotations

import functools
import io
import urllib.error
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, time

import numpy as np
import pandas as pd
import requests
from pandas.tseries.holiday import USFederalHolidayCalendar
from pandas.tseries.offsets import CustomBusinessDay

from core.timeutil import NEW_YORK
from workers.http_fetch import PayloadError, http_get, new_session
from workers.sources.base import RateLimitError, SourceError

MACRO_COLUMNS = ["series_id", "obs_date", "realtime_start", "value"]
ET_ZONE = NEW_YORK
FED_DAY = CustomBusinessDay(calendar=USFederalHolidayCalendar())


@dataclass(frozen=True)
class SeriesSpec:
    """A FRED series and when its values become public.

    `release_time` is the official time of day (ET) of a release. Without vintages the release
    day is estimated as: daily series, `lag` federal business days after the observation day;
    monthly series, `lag` calendar days after the observation month ends. `plausible` is the
    inclusive range a true value lies in, wide of every value on record: one outside it (or not
    finite) is a unit or feed error, flagged and never stored.
    """

    series_id: str
    title: str
    frequency: str  # "D" daily, "M" monthly
    release_time: time
    lag: int
    plausible: tuple[float, float]

    def implausible(self, values: pd.Series) -> pd.Series:
        """True where a value is outside `plausible` or not a finite number."""
        low, high = self.plausible
        return ~pd.to_numeric(values, errors="coerce").between(low, high)


# Plausible ranges, wide of the records: interest rates in percent -5..30 (US yields and the
# fed funds rate peaked at 15.8-22.4 in 1981 and have not gone below 0; -5 leaves room for
# negative rates as abroad, and a rate in basis points, 450 for 4.50, falls outside); the
# 10y-2y spread -10..10 pp (records about -2.4 and +2.9); the VIX close 5..150 (records 9.1
# and 82.7); the CPI index (1982-84 = 100) 10..10,000 (21.5 in 1947, about 320 in 2025; a
# percent change, 3.2, falls outside); the unemployment rate 0..40 % (2.5 in 1953, 14.8 in 2020,
# about 25 in 1933).
RATE_RANGE = (-5.0, 30.0)
SERIES: dict[str, SeriesSpec] = {
    s.series_id: s
    for s in (
        # H.15 / Treasury yields: published the same or the next business day, 16:15 ET at the
        # latest; 18:00 leaves a margin.
        SeriesSpec("DGS10", "10-year Treasury yield (%)", "D", time(18, 0), 1, RATE_RANGE),
        SeriesSpec("DGS2", "2-year Treasury yield (%)", "D", time(18, 0), 1, RATE_RANGE),
        SeriesSpec("T10Y2Y", "10-year minus 2-year spread (pp)", "D", time(18, 0), 1, (-10, 10)),
        # Effective fed funds rate: New York Fed, 09:00 ET the next business day.
        SeriesSpec(
            "DFF", "Effective federal funds rate, daily (%)", "D", time(12, 0), 1, RATE_RANGE
        ),
        # Cboe close, FRED the next business day.
        SeriesSpec("VIXCLS", "CBOE VIX close", "D", time(18, 0), 1, (5, 150)),
        # Monthly average of the daily rate: first business days of the next month.
        SeriesSpec(
            "FEDFUNDS", "Effective federal funds rate, monthly (%)", "M", time(18, 0), 5, RATE_RANGE
        ),
        # BLS at 08:30 ET. CPI: usually 10-15 days after the month; the latest on record was
        # 30 days (Sept 2013, shutdown). Employment Situation: usually the first Friday; the
        # latest on record 51 days (Sept 2025, shutdown).
        SeriesSpec(
            "CPIAUCSL", "CPI, all urban consumers (index)", "M", time(8, 30), 31, (10, 10_000)
        ),
        SeriesSpec("UNRATE", "Unemployment rate (%)", "M", time(8, 30), 52, (0, 40)),
    )
}
DEFAULT_SERIES = list(SERIES)


def at_release_time(day: pd.Timestamp | date, spec: SeriesSpec) -> pd.Timestamp:
    """`day` at the series' release time of day in New York, as UTC."""
    local = pd.Timestamp.combine(pd.Timestamp(day).date(), spec.release_time)
    return pd.Timestamp(local).tz_localize(ET_ZONE).tz_convert("UTC")


def estimated_release(spec: SeriesSpec, obs_dates: pd.Series) -> pd.Series:
    """Conservative release times (UTC) for observations of a series without vintages."""
    obs = pd.to_datetime(obs_dates)
    if spec.frequency == "D":
        days = obs.map(lambda d: d + spec.lag * FED_DAY)
    else:
        days = obs + pd.offsets.MonthEnd(0) + pd.Timedelta(days=spec.lag)
    return days.map(lambda d: at_release_time(d, spec))


def frame_of(
    series_id: str, obs: pd.Series, released: pd.Series, values: pd.Series
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "series_id": series_id,
            "obs_date": pd.to_datetime(obs).dt.date.to_numpy(),
            "realtime_start": pd.to_datetime(released, utc=True).to_numpy(),
            "value": pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64"),
        }
    )
    frame["realtime_start"] = pd.to_datetime(frame["realtime_start"], utc=True)
    return frame[frame["value"].notna()].reset_index(drop=True)


class MacroSource(ABC):
    """One provider of macro series."""

    name = "base"
    has_vintages = True  # False: values are the latest revision only

    @abstractmethod
    def fetch(self, spec: SeriesSpec, start: date, now: pd.Timestamp) -> pd.DataFrame:
        """Observations from `start` on, released by `now`, with `MACRO_COLUMNS`."""


class FredApiSource(MacroSource):
    """FRED's API through fredapi: every release and revision (ALFRED real-time periods)."""

    name = "fred"

    def __init__(self, api_key: str, root_url: str | None = None) -> None:
        from fredapi import Fred

        if not api_key:
            raise ValueError("the fred source needs FRED_API_KEY (or use --source fred_csv)")
        self.fred = Fred(api_key=api_key)
        if root_url:
            self.fred.root_url = root_url

    def fetch(self, spec: SeriesSpec, start: date, now: pd.Timestamp) -> pd.DataFrame:
        try:
            raw = self.fred.get_series_all_releases(spec.series_id)
        except (ValueError, ET.ParseError) as exc:  # fredapi's reading of an error answer
            raise _fred_error(spec.series_id, exc) from None
        except OSError as exc:  # URLError, timeouts, refused connections
            raise SourceError(f"fred {spec.series_id}: request failed: {exc}") from None
        missing = {"date", "realtime_start", "value"} - set(raw.columns)
        if missing:
            raise PayloadError(f"fred {spec.series_id}: no observations in the answer")
        released = raw["realtime_start"].map(lambda d: at_release_time(d, spec))
        frame = frame_of(spec.series_id, raw["date"], released, raw["value"])
        keep = (frame["obs_date"] >= start) & (frame["realtime_start"] <= now)
        return frame[keep].reset_index(drop=True)


def _fred_error(series_id: str, exc: Exception) -> Exception:
    """Classify a fredapi failure by the HTTP status behind it (fredapi hides it in the context)."""
    http = exc.__context__ if isinstance(exc.__context__, urllib.error.HTTPError) else None
    code = http.code if http is not None else None
    msg = f"fred {series_id}: " + (f"HTTP {code}: " if code else "") + str(exc)
    if code == 429 or "Too Many Requests" in str(exc):
        return RateLimitError(msg)
    if code is not None and code >= 500:
        return SourceError(msg)
    if isinstance(exc, ET.ParseError):
        return PayloadError(f"fred {series_id}: malformed XML answer: {exc}")
    return PayloadError(msg)


class FredCsvSource(MacroSource):
    """FRED's keyless CSV download (latest values only; release times estimated)."""

    name = "fred_csv"
    has_vintages = False
    base_url = "https://fred.stlouisfed.org/graph/fredgraph.csv"

    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session or new_session()

    def fetch(self, spec: SeriesSpec, start: date, now: pd.Timestamp) -> pd.DataFrame:
        resp = http_get(
            self.session,
            self.base_url,
            who=f"fred_csv {spec.series_id}",
            params={"id": spec.series_id, "cosd": start.isoformat()},
        )
        table = self.parse(spec, resp.text)
        frame = frame_of(
            spec.series_id, table["obs"], estimated_release(spec, table["obs"]), table["value"]
        )
        keep = (frame["obs_date"] >= start) & (frame["realtime_start"] <= now)
        return frame[keep].reset_index(drop=True)

    @staticmethod
    def parse(spec: SeriesSpec, text: str) -> pd.DataFrame:
        """obs / value columns of a fredgraph.csv answer; the whole answer is refused if bad."""
        who = f"fred_csv {spec.series_id}"
        header = [c.strip() for c in (text.lstrip().splitlines() or [""])[0].split(",")]
        if header[1:] != [spec.series_id] or header[0] not in ("observation_date", "DATE"):
            raise PayloadError(f"{who}: unexpected header {str(header[:3])[:120]}")
        try:
            raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as exc:
            raise PayloadError(f"{who}: unreadable CSV: {exc}") from None
        if raw.empty:
            raise PayloadError(f"{who}: no observations")
        obs = pd.to_datetime(raw.iloc[:, 0].str.strip(), format="%Y-%m-%d", errors="coerce")
        text_values = raw.iloc[:, 1].str.strip()
        values = pd.to_numeric(text_values.replace({".": None, "": None}), errors="coerce")
        bad = obs.isna() | (values.isna() & ~text_values.isin([".", ""]))
        if bad.any():
            raise PayloadError(
                f"{who}: {int(bad.sum())} malformed row(s), e.g. {raw[bad].iloc[0].tolist()}"
            )
        return pd.DataFrame({"obs": obs, "value": values})


class SimulatedMacroSource(MacroSource):
    """Deterministic macro history for the demo, with a revision of every CPI figure."""

    name = "simulated"
    epoch = "2017-01-01"
    horizon = "2031-12-31"

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one per source, keyed on nothing
    def _paths(self) -> dict[str, pd.Series]:
        rng = np.random.default_rng([self.seed, 9001])
        days = pd.date_range(self.epoch, self.horizon, freq="D")
        n = len(days)
        moves = rng.choice([-0.25, 0.0, 0.25], p=[0.04, 0.92, 0.04], size=n) * (days.dayofweek == 2)
        dff = np.clip(1.4 + np.cumsum(moves), 0.05, 6.0) + rng.normal(0, 0.01, n)
        dgs2 = dff + 0.2 + np.cumsum(rng.normal(0, 0.02, n)) * 0.2
        spread = 0.5 + np.cumsum(rng.normal(0, 0.015, n)) * 0.3
        log_vix = np.log(18) + np.cumsum(rng.normal(0, 0.06, n)) * 0.15
        months = pd.date_range(self.epoch, self.horizon, freq="MS")
        cpi = 243.0 * np.cumprod(1 + rng.normal(0.0025, 0.002, len(months)))
        unrate = np.clip(4.0 + np.cumsum(rng.normal(0, 0.1, len(months))) * 0.5, 3.0, 10.0)
        daily = pd.Series(dff, index=days)
        return {
            "DFF": daily.round(2),
            "DGS2": pd.Series(dgs2, index=days).round(2),
            "DGS10": pd.Series(dgs2 + spread, index=days).round(2),
            "T10Y2Y": pd.Series(spread, index=days).round(2),
            "VIXCLS": pd.Series(np.exp(log_vix), index=days).round(2),
            "FEDFUNDS": daily.resample("MS").mean().round(2),
            "CPIAUCSL": pd.Series(cpi, index=months).round(3),
            "CPIAUCSL_revised": pd.Series(
                cpi + rng.normal(0, 0.08, len(months)), index=months
            ).round(3),
            "UNRATE": pd.Series(unrate, index=months).round(1),
        }

    def fetch(self, spec: SeriesSpec, start: date, now: pd.Timestamp) -> pd.DataFrame:
        if spec.series_id not in SERIES:
            raise PayloadError(f"simulated: no series '{spec.series_id}'")
        paths = self._paths()
        path = paths[spec.series_id]
        if spec.frequency == "D" and spec.series_id != "DFF":
            path = path[path.index.dayofweek < 5]
        path = path[path.index >= pd.Timestamp(start)]
        obs = pd.Series(path.index)
        released = estimated_release(spec, obs)
        parts = [frame_of(spec.series_id, obs, released, path.reset_index(drop=True))]
        if spec.series_id == "CPIAUCSL":  # revised with the next month's release
            revised = paths["CPIAUCSL_revised"].reindex(path.index).reset_index(drop=True)
            later = released.map(lambda t: t + pd.DateOffset(months=1))
            parts.append(frame_of(spec.series_id, obs, later, revised))
        frame = pd.concat(parts, ignore_index=True)
        return frame[frame["realtime_start"] <= now].reset_index(drop=True)
