"""Plausible ranges of the macro series: a value outside its series' range (or not finite) is
flagged in `input_flags` and never stored, so features never join it; the rest is stored."""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd
import pytest

from db.context import macro_for_features
from db.reads import read_from_db
from tests.workers.context_http import DATA, RecordedServer, recorded_server_fixture  # noqa: F401
from workers.macro_ingestor import ingest_all
from workers.macro_sources import SERIES, FredCsvSource, SimulatedMacroSource

CSV = "/graph/fredgraph.csv"
RUN_AT = pd.Timestamp("2024-06-03 12:00", tz="UTC")


@pytest.mark.no_db
def test_values_outside_the_range_or_not_finite_are_implausible() -> None:
    values = pd.Series([4.5, -5.0, 30.0, -5.01, 445.0, np.inf, -np.inf, np.nan])
    flagged = SERIES["DGS10"].implausible(values)
    assert flagged.tolist() == [False, False, False, True, True, True, True, True]


@pytest.mark.no_db
def test_every_simulated_value_is_plausible() -> None:
    source = SimulatedMacroSource()
    for spec in SERIES.values():
        frame = source.fetch(spec, date(2017, 1, 1), pd.Timestamp("2031-12-31", tz="UTC"))
        assert not frame.empty and not spec.implausible(frame["value"]).any(), spec.series_id


@pytest.mark.usefixtures("clean_tables")
def test_an_out_of_range_value_is_flagged_and_the_rest_stored(
    recorded_server: RecordedServer, caplog: pytest.LogCaptureFixture
) -> None:
    recorded = (DATA / "macro_fredgraph_dgs10.csv").read_text()
    assert "2024-05-29,4.61" in recorded
    recorded_server.add(CSV, recorded.replace("2024-05-29,4.61", "2024-05-29,461"), 200, "text/csv")
    src = FredCsvSource()
    src.base_url = recorded_server.url(CSV)
    with caplog.at_level(logging.WARNING):
        written, failed = ingest_all(src, ["DGS10"], date(2024, 5, 1), RUN_AT)
    assert failed == {} and written == {"DGS10": 4}
    stored = read_from_db("SELECT obs_date, value FROM macro_observations ORDER BY obs_date")
    assert stored["obs_date"].tolist() == [
        date(2024, 5, 23),
        date(2024, 5, 24),
        date(2024, 5, 28),
        date(2024, 5, 30),
    ]
    flags = read_from_db("SELECT feed, item_key, action, reason, detail FROM input_flags")
    assert flags[["feed", "item_key", "action", "reason"]].values.tolist() == [
        ["macro", "DGS10:2024-05-29", "flagged", "out_of_range"]
    ]
    assert "value 461.0 outside the plausible range [-5, 30]" in flags["detail"].iloc[0]
    assert "macro: flagged DGS10:2024-05-29 (out_of_range)" in caplog.text
    # the features' join never sees it
    joined = macro_for_features(["DGS10"], RUN_AT - pd.Timedelta(days=30), RUN_AT)
    assert date(2024, 5, 29) not in set(joined["obs_date"])
    assert joined["value"].between(4, 5).all() and len(joined) == 4
    # a later run fetching the same answer stores nothing and records the flag only once
    assert ingest_all(src, ["DGS10"], date(2024, 5, 1), RUN_AT)[0] == {"DGS10": 0}
    assert len(read_from_db("SELECT id FROM input_flags")) == 1
