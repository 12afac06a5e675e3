"""The macro job on the real database: release times stored, revisions kept as new rows,
idempotent re-runs, a failing series logged without partial rows, job_runs bookkeeping."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import date

import pandas as pd
import pytest

from config.settings import get_settings
from db.reads import read_from_db
from tests.workers.context_http import RecordedServer, recorded_server_fixture  # noqa: F401
from workers import macro_ingestor
from workers.macro_ingestor import ingest_all, make_macro_source
from workers.macro_sources import FredApiSource, FredCsvSource, SimulatedMacroSource

OBS = "/fred/series/observations"
CSV = "/graph/fredgraph.csv"
NOW = pd.Timestamp("2026-01-01", tz="UTC")

pytestmark = pytest.mark.usefixtures("clean_tables")


def macro() -> pd.DataFrame:
    return read_from_db(
        "SELECT series_id, obs_date, realtime_start, value, source FROM macro_observations "
        "ORDER BY series_id, obs_date, realtime_start"
    )


def fred(server: RecordedServer) -> FredApiSource:
    return FredApiSource("abcdef0123456789abcdef0123456789", root_url=server.url("/fred"))


def test_vintages_stored_with_release_times_and_reruns_are_idempotent(
    recorded_server: RecordedServer,
) -> None:
    recorded_server.add_file(
        OBS, "macro_fred_cpiaucsl_all_releases.xml", when={"series_id": "CPIAUCSL"}
    )
    recorded_server.add_file(OBS, "macro_fred_dgs10_all_releases.xml", when={"series_id": "DGS10"})
    written, failed = ingest_all(
        fred(recorded_server), ["CPIAUCSL", "DGS10"], date(2023, 1, 1), NOW
    )
    assert failed == {} and written == {"CPIAUCSL": 8, "DGS10": 5}
    stored = macro()
    assert (stored["source"] == "fred").all()
    cpi = stored[stored["series_id"] == "CPIAUCSL"]
    assert cpi.groupby("obs_date").size().tolist() == [2, 2, 2, 2]  # revisions are rows
    assert (cpi["realtime_start"].dt.date > cpi["obs_date"]).all()
    again, _ = ingest_all(fred(recorded_server), ["CPIAUCSL", "DGS10"], date(2023, 1, 1), NOW)
    assert again == {"CPIAUCSL": 0, "DGS10": 0}
    pd.testing.assert_frame_equal(macro(), stored)


def test_a_failing_series_leaves_no_rows_and_the_others_still_run(
    recorded_server: RecordedServer, caplog: pytest.LogCaptureFixture
) -> None:
    recorded_server.add_file(OBS, "macro_fred_truncated.xml", when={"series_id": "DGS10"})
    recorded_server.add_file(
        OBS, "macro_fred_error_rate_limit.xml", status=429, when={"series_id": "DGS2"}
    )
    recorded_server.add_file(
        OBS, "macro_fredgraph_html.csv", status=500, when={"series_id": "VIXCLS"}
    )
    recorded_server.add_file(
        OBS, "macro_fred_cpiaucsl_all_releases.xml", when={"series_id": "CPIAUCSL"}
    )
    with caplog.at_level(logging.WARNING):
        written, failed = ingest_all(
            fred(recorded_server),
            ["DGS10", "DGS2", "VIXCLS", "CPIAUCSL"],
            date(2023, 1, 1),
            NOW,
            attempts=2,
            max_wait_s=0.05,
        )
    assert written == {"CPIAUCSL": 8}
    assert set(failed) == {"DGS10", "DGS2", "VIXCLS"}
    assert "PayloadError" in failed["DGS10"] and "RateLimitError" in failed["DGS2"]
    assert set(macro()["series_id"]) == {"CPIAUCSL"}
    assert "DGS10: not ingested from fred" in caplog.text
    # transient errors were retried, a malformed answer was not
    assert recorded_server.hits(OBS, series_id="DGS2") == 2
    assert recorded_server.hits(OBS, series_id="VIXCLS") == 2
    assert recorded_server.hits(OBS, series_id="DGS10") == 1
    assert "abcdef0123456789" not in caplog.text


def test_csv_revision_becomes_a_new_row_stamped_when_seen(recorded_server: RecordedServer) -> None:
    recorded_server.add_file(CSV, "macro_fredgraph_dgs10.csv")
    src = FredCsvSource()
    src.base_url = recorded_server.url(CSV)
    first_run = pd.Timestamp("2024-06-03 12:00", tz="UTC")
    assert ingest_all(src, ["DGS10"], date(2024, 5, 1), first_run)[0] == {"DGS10": 5}
    assert ingest_all(src, ["DGS10"], date(2024, 5, 1), first_run)[0] == {"DGS10": 0}
    recorded_server.routes.clear()
    recorded_server.add_file(CSV, "macro_fredgraph_dgs10_revised.csv")
    second_run = pd.Timestamp("2024-06-04 12:00", tz="UTC")
    assert ingest_all(src, ["DGS10"], date(2024, 5, 1), second_run)[0] == {"DGS10": 2}
    stored = macro()
    friday = stored[stored["obs_date"] == date(2024, 5, 24)]
    assert friday["value"].tolist() == [4.47, 4.46]  # the first print is kept
    assert friday["realtime_start"].tolist() == [
        pd.Timestamp("2024-05-28 22:00", tz="UTC"),
        second_run,
    ]
    new_obs = stored[stored["obs_date"] == date(2024, 5, 31)].iloc[0]
    assert new_obs["realtime_start"] == pd.Timestamp("2024-06-03 22:00", tz="UTC")
    assert ingest_all(src, ["DGS10"], date(2024, 5, 1), second_run)[0] == {"DGS10": 0}


def test_main_simulated_fills_every_series_and_records_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert macro_ingestor.main(["--source", "simulated", "--start", "2024-01-01"]) == 0
    stored = macro()
    assert set(stored["series_id"]) == set(macro_ingestor.DEFAULT_SERIES)
    assert (stored["realtime_start"] <= pd.Timestamp.now(tz="UTC")).all()
    runs = read_from_db("SELECT job, status, message FROM job_runs ORDER BY id")
    assert runs["job"].tolist() == ["macro_ingestor"] and runs["status"].tolist() == ["ok"]
    assert "simulated:" in runs["message"].iloc[0]
    # a second run (default start: two years before the newest observation) adds nothing
    assert macro_ingestor.main(["--source", "simulated"]) == 0
    assert len(macro()) == len(stored)


def test_main_marks_the_job_failed_when_a_series_fails(
    recorded_server: RecordedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded_server.add_file(CSV, "macro_fredgraph_malformed.csv", when={"id": "DGS10"})
    recorded_server.add_file(CSV, "macro_fredgraph_unrate_legacy.csv", when={"id": "UNRATE"})
    monkeypatch.setattr(FredCsvSource, "base_url", recorded_server.url(CSV))
    code = macro_ingestor.main(["--source", "fred_csv", "--series", "DGS10", "UNRATE"])
    assert code == 1
    runs = read_from_db("SELECT status, message FROM job_runs")
    assert runs["status"].tolist() == ["failed"]
    assert "DGS10" in runs["message"].iloc[0]
    assert set(macro()["series_id"]) == {"UNRATE"}


def test_source_choice_and_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRED_API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert isinstance(make_macro_source("fred"), FredCsvSource)  # no key: keyless CSV
        assert isinstance(make_macro_source("simulated"), SimulatedMacroSource)
        monkeypatch.setenv("FRED_API_KEY", "k" * 32)
        get_settings.cache_clear()
        assert isinstance(make_macro_source("fred"), FredApiSource)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    out = subprocess.run(
        [sys.executable, "-m", "workers.macro_ingestor", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--source" in out.stdout and "--start" in out.stdout
