"""Replay files checked row by row: a malformed row is named (file, line or row, column, value)
and left out, the rest is replayed, and the price ingestor started on such a file keeps
serving instead of exiting (which under supervisord would be a restart loop)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from db.reads import read_from_db
from workers.sources import replay_file
from workers.sources.replay import ReplayFileError, load_bars_file
from workers.sources.simulated import SimulatedMarket

ROOT = Path(__file__).resolve().parents[2]
SESSION = pd.Timestamp("2024-06-10")
OPEN = pd.Timestamp("2024-06-10 13:30", tz="UTC")
LOGGER = replay_file.__name__


def recording() -> pd.DataFrame:
    """A session of AAPL and KO bars from the simulated market, as a recorder would save it."""
    market = SimulatedMarket(seed=9)
    return pd.concat([market.session_bars(t, SESSION) for t in ("AAPL", "KO")], ignore_index=True)


def csv_lines(bars: pd.DataFrame) -> list[str]:
    """The CSV text of `bars`, one string per line (the header first)."""
    return bars.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S%z").splitlines()


@pytest.mark.no_db
def test_bad_csv_rows_are_named_and_skipped_and_the_rest_is_replayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bars = recording()
    lines = csv_lines(bars)
    lines[3] = "AAPL,2024-06-1O 13:32,1,2,0.5,1.5,10"  # line 4: a letter O in the date
    lines[5] = lines[5].replace(lines[5].split(",")[5], "12..5", 1)  # line 6: close
    lines[7] = "," + lines[7].split(",", 1)[1]  # line 8: no ticker
    lines[9] = lines[9] + ",extra"  # line 10: one field too many
    lines[11] = ""  # line 12: empty, ignored without a word
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = load_bars_file(path)
    named = [r.getMessage() for r in caplog.records]
    assert named[:4] == [
        f"replay file {path}, line 4, column ts: '2024-06-1O 13:32' is not a time; row skipped",
        f"replay file {path}, line 6, column close: '12..5' is not a number; row skipped",
        f"replay file {path}, line 8, column ticker: nan is not a ticker; row skipped",
        f"replay file {path}, line 10: expected 7 fields, saw 8; row skipped",
    ]
    rows = len(bars) - 1  # the emptied line held a bar
    assert named[4] == (
        f"replay file {path}: 4 of {rows} row(s) skipped as malformed; the other {rows - 4} "
        "are replayed"
    )
    gone = {2, 4, 6, 8, 10}  # the bars of lines 4, 6, 8, 10 and 12
    want = bars.drop(index=list(gone)).sort_values(["ts", "ticker"], ignore_index=True)
    pd.testing.assert_frame_equal(loaded, want, check_dtype=False)


@pytest.mark.no_db
def test_times_with_and_without_a_timezone_mix_in_one_file(tmp_path: Path) -> None:
    bars = recording().head(3)
    path = tmp_path / "mixed.csv"
    path.write_text(
        "ticker,ts,open,high,low,close,volume\n"
        "AAPL,2024-06-10 13:30:00,1,2,0.5,1.5,10\n"  # naive: UTC
        "AAPL,2024-06-10 09:31:00-04:00,1,2,0.5,1.5,10\n"
        "AAPL,2024-06-10T13:32:00Z,1,2,0.5,1.5,\n"  # no volume: a bar without trades counted 0
    )
    loaded = load_bars_file(path)
    assert loaded["ts"].tolist() == bars["ts"].tolist()
    assert loaded["volume"].tolist() == [10.0, 10.0, 0.0]


@pytest.mark.no_db
def test_a_bad_parquet_row_is_named_by_row_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bars = recording()
    stored = bars.assign(ts=bars["ts"].astype(str))
    stored.loc[6, "ts"] = "not a time"
    path = tmp_path / "bars.parquet"
    stored.to_parquet(path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = load_bars_file(path)
    assert (
        f"replay file {path}, row 7, column ts: 'not a time' is not a time; row skipped"
        in caplog.text
    )
    assert len(loaded) == len(bars) - 1


@pytest.mark.no_db
def test_past_the_limit_bad_rows_are_counted_not_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = csv_lines(recording())
    for i in range(1, 31):
        lines[i] = lines[i].replace("2024-06-10", "2024-13-10", 1)
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_bars_file(path)
    named = [r.getMessage() for r in caplog.records if "; row skipped" in r.getMessage()]
    assert len(named) == replay_file.MAX_BAD_ROWS_NAMED
    assert f"replay file {path}: 10 more bad row(s) skipped, not named one by one" in caplog.text


@pytest.mark.no_db
def test_a_file_without_a_usable_row_is_refused_naming_the_first_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("ticker,ts,open,high,low,close,volume\nAAPL,yesterday-ish,1,2,0.5,1.5,10\n")
    with pytest.raises(
        ReplayFileError,
        match=r"holds no usable bars \(of 1 bad row\(s\), the first: line 2, column ts: "
        r"'yesterday-ish' is not a time\)",
    ):
        load_bars_file(path)


def test_the_price_ingestor_keeps_serving_a_file_with_a_bad_row(
    clean_tables: None, tmp_path: Path
) -> None:
    lines = csv_lines(recording())
    lines[3] = "AAPL,2024-06-1O 13:32,1,2,0.5,1.5,10"
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n")
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "MARKET_SOURCE": "replay",
        "REPLAY_PATH": str(path),
        "REPLAY_SPEED": "20",
        "UNIVERSE": "AAPL,KO",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "workers.price_ingestor", "--max-polls", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert f"replay file {path}, line 4, column ts: '2024-06-1O 13:32' is not a time" in out
    stored = read_from_db("SELECT ticker, ts FROM bars_1m ORDER BY ts, ticker")
    assert len(stored) > 0 and stored["ts"].min() == OPEN  # the good bars were served
    assert pd.Timestamp("2024-06-10 13:32", tz="UTC") not in set(
        stored.loc[stored["ticker"] == "AAPL", "ts"]
    )  # the bad row's minute is not invented


def test_an_unusable_replay_file_keeps_the_ingestor_up_saying_why_until_it_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from config.settings import load_settings
    from core.loops import Shutdown
    from db.health import heartbeats
    from workers.price_ingestor import source_when_usable

    path = tmp_path / "bars.csv"
    path.write_text("ticker,ts,open,high,low,close,volume\nAAPL,yesterday-ish,1,2,0.5,1.5,10\n")
    settings = load_settings(
        market_source="replay", replay_path=path, data_dir=tmp_path / "data", universe=["AAPL"]
    )
    shutdown = Shutdown()
    tries: list[int] = []

    def fix_the_file_on_the_second_wait(seconds: float) -> bool:
        tries.append(1)
        if len(tries) == 2:
            path.write_text("\n".join(csv_lines(recording())) + "\n")
        return False

    shutdown.wait = fix_the_file_on_the_second_wait  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="workers.price_ingestor"):
        source = source_when_usable(settings, None, shutdown, retry_s=0.0)
    assert source is not None and len(tries) == 2  # two refusals, then the fixed file serves
    assert sum("market source unusable" in r.getMessage() for r in caplog.records) == 2
    assert "'yesterday-ish' is not a time" in caplog.records[0].getMessage()
    beat = heartbeats().set_index("worker").loc["price_ingestor"]
    assert beat["status"] == "error" and "yesterday-ish" in str(beat["details"])

    shutdown.request()
    assert source_when_usable(settings, None, shutdown, retry_s=0.0) is None
