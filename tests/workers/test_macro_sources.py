"""Macro sources against recorded FRED answers over a local HTTP server, and the release-time
rules: ALFRED vintages at the official release hour, conservative estimates without them."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from tests.workers.context_http import RecordedServer, recorded_server_fixture  # noqa: F401
from workers.http_fetch import PayloadError
from workers.macro_sources import (
    SERIES,
    FredApiSource,
    FredCsvSource,
    SimulatedMacroSource,
    estimated_release,
)
from workers.sources.base import RateLimitError, SourceError

pytestmark = pytest.mark.no_db

NOW = pd.Timestamp("2026-01-01", tz="UTC")
OBS = "/fred/series/observations"


def fred(server: RecordedServer) -> FredApiSource:
    return FredApiSource("abcdef0123456789abcdef0123456789", root_url=server.url("/fred"))


def csv_source(server: RecordedServer) -> FredCsvSource:
    src = FredCsvSource()
    src.base_url = server.url("/graph/fredgraph.csv")
    return src


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_alfred_vintages_become_rows_at_the_release_hour(recorded_server: RecordedServer) -> None:
    recorded_server.add_file(OBS, "macro_fred_cpiaucsl_all_releases.xml")
    rows = fred(recorded_server).fetch(SERIES["CPIAUCSL"], date(2023, 1, 1), NOW)
    assert len(rows) == 8
    jan = rows[rows["obs_date"] == date(2024, 1, 1)].sort_values("realtime_start")
    # first print at 08:30 New York on its release day, the revision a year later
    assert jan["realtime_start"].tolist() == [utc("2024-02-13 13:30"), utc("2025-02-12 13:30")]
    assert jan["value"].tolist() == [308.417, 308.024]
    (_, query, _) = recorded_server.requests[0]
    assert query["series_id"] == ["CPIAUCSL"] and query["realtime_start"] == ["1776-07-04"]


def test_alfred_rows_filtered_by_start_and_now_and_missing_values_dropped(
    recorded_server: RecordedServer,
) -> None:
    recorded_server.add_file(OBS, "macro_fred_dgs10_all_releases.xml")
    src = fred(recorded_server)
    rows = src.fetch(SERIES["DGS10"], date(2024, 5, 24), utc("2024-05-30 12:00"))
    # 05-23 is before start, 05-27 (Memorial Day) is '.', 05-29 and 05-30 not released yet
    assert rows["obs_date"].tolist() == [date(2024, 5, 24), date(2024, 5, 28)]
    assert rows["realtime_start"].tolist() == [utc("2024-05-28 22:00"), utc("2024-05-29 22:00")]


@pytest.mark.parametrize(
    ("name", "status", "error", "match"),
    [
        ("macro_fred_error_rate_limit.xml", 429, RateLimitError, "Too Many Requests"),
        ("macro_fred_error_bad_series.xml", 400, PayloadError, "does not exist"),
        ("macro_fred_truncated.xml", 200, PayloadError, "malformed XML"),
        ("macro_fred_empty.xml", 200, PayloadError, "no observations"),
        ("macro_fredgraph_html.csv", 500, SourceError, "HTTP 500"),
        ("macro_fredgraph_html.csv", 503, SourceError, "HTTP 503"),
    ],
)
def test_fred_bad_answers_raise_clear_errors(
    recorded_server: RecordedServer, name: str, status: int, error: type[Exception], match: str
) -> None:
    recorded_server.add_file(OBS, name, status=status, content_type="text/xml")
    with pytest.raises(error, match=match) as info:
        fred(recorded_server).fetch(SERIES["DGS10"], date(2024, 1, 1), NOW)
    assert "abcdef0123456789" not in str(info.value)  # the key never shows in errors


def test_fred_unreachable_is_a_source_error() -> None:
    src = FredApiSource("k", root_url="http://127.0.0.1:9/fred")
    with pytest.raises(SourceError, match="request failed"):
        src.fetch(SERIES["DGS10"], date(2024, 1, 1), NOW)


def test_csv_parses_both_header_styles_with_estimated_releases(
    recorded_server: RecordedServer,
) -> None:
    recorded_server.add_file(
        "/graph/fredgraph.csv", "macro_fredgraph_dgs10.csv", when={"id": "DGS10"}
    )
    recorded_server.add_file(
        "/graph/fredgraph.csv", "macro_fredgraph_unrate_legacy.csv", when={"id": "UNRATE"}
    )
    src = csv_source(recorded_server)
    dgs10 = src.fetch(SERIES["DGS10"], date(2024, 5, 1), NOW)
    assert len(dgs10) == 5  # the empty holiday value is dropped
    friday = dgs10[dgs10["obs_date"] == date(2024, 5, 24)].iloc[0]
    # Friday -> the next federal business day is Tuesday (Monday is Memorial Day), 18:00 EDT
    assert friday["realtime_start"] == utc("2024-05-28 22:00")
    unrate = src.fetch(SERIES["UNRATE"], date(2024, 1, 1), NOW)
    assert unrate["value"].tolist() == [3.7, 3.9, 3.8, 3.9]
    # January's figure: month end + 52 days, 08:30 New York
    assert unrate["realtime_start"].iloc[0] == utc("2024-03-23 12:30")
    assert recorded_server.hits("/graph/fredgraph.csv", id="DGS10", cosd="2024-05-01") == 1


def test_csv_estimates_are_never_earlier_than_alfred_releases(
    recorded_server: RecordedServer,
) -> None:
    recorded_server.add_file(OBS, "macro_fred_dgs10_all_releases.xml", when={"series_id": "DGS10"})
    recorded_server.add_file(
        OBS, "macro_fred_cpiaucsl_all_releases.xml", when={"series_id": "CPIAUCSL"}
    )
    for series_id in ("DGS10", "CPIAUCSL"):
        vintages = fred(recorded_server).fetch(SERIES[series_id], date(2020, 1, 1), NOW)
        first = vintages.groupby("obs_date")["realtime_start"].min()
        estimate = estimated_release(SERIES[series_id], pd.Series(first.index))
        assert (estimate.to_numpy() >= first.to_numpy()).all(), series_id


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("macro_fredgraph_malformed.csv", "malformed row"),
        ("macro_fredgraph_html.csv", "unexpected header"),
        ("macro_fredgraph_header_only.csv", "no observations"),
        ("macro_fredgraph_unrate_legacy.csv", "unexpected header"),  # another series' file
    ],
)
def test_csv_bad_answers_are_refused_whole(
    recorded_server: RecordedServer, name: str, match: str
) -> None:
    recorded_server.add_file("/graph/fredgraph.csv", name)
    with pytest.raises(PayloadError, match=match):
        csv_source(recorded_server).fetch(SERIES["DGS10"], date(2024, 1, 1), NOW)


@pytest.mark.parametrize(("status", "error"), [(429, RateLimitError), (500, SourceError)])
def test_csv_http_errors(
    recorded_server: RecordedServer, status: int, error: type[Exception]
) -> None:
    recorded_server.add("/graph/fredgraph.csv", "Too Many Requests", status=status)
    with pytest.raises(error):
        csv_source(recorded_server).fetch(SERIES["DGS10"], date(2024, 1, 1), NOW)


def test_simulated_series_are_deterministic_released_after_their_period() -> None:
    src = SimulatedMacroSource(seed=42)
    now = utc("2024-06-01")
    for series_id, spec in SERIES.items():
        rows = src.fetch(spec, date(2024, 1, 1), now)
        assert not rows.empty and (rows["realtime_start"] <= now).all()
        period_end = pd.to_datetime(rows["obs_date"]) + (
            pd.Timedelta(days=1) if spec.frequency == "D" else pd.offsets.MonthBegin(1)
        )
        assert (rows["realtime_start"].dt.tz_convert(None) >= period_end).all(), series_id
        later = src.fetch(spec, date(2024, 3, 1), now)
        pd.testing.assert_frame_equal(
            later, rows[rows["obs_date"] >= date(2024, 3, 1)].reset_index(drop=True)
        )
    cpi = src.fetch(SERIES["CPIAUCSL"], date(2023, 1, 1), now)
    assert cpi.groupby("obs_date").size().max() == 2  # every figure revised once
    spread = src.fetch(SERIES["T10Y2Y"], date(2024, 1, 1), now)["value"]
    dgs10 = src.fetch(SERIES["DGS10"], date(2024, 1, 1), now)["value"]
    dgs2 = src.fetch(SERIES["DGS2"], date(2024, 1, 1), now)["value"]
    assert (spread - (dgs10 - dgs2)).abs().max() <= 0.011
