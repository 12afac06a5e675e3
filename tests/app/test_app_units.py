"""Units of the app: password check, secret masking, progress file, retrain guard, indicators."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app import auth, charts, data, indicators, retrain
from config.settings import load_settings
from db.ops import training_lock
from ml.progress import progress_path

pytestmark = pytest.mark.no_db


def test_password_check_is_exact_and_needs_a_name():
    settings = load_settings(analyst_password="correct horse")
    assert auth.password_ok("correct horse", settings)
    for wrong in ("", None, "correct horse ", "Correct horse", "correct"):
        assert not auth.password_ok(wrong, settings)
    assert auth.authorize(" alice ", "correct horse", settings) == "analyst:alice"
    with pytest.raises(auth.AccessDenied, match="Wrong analyst password"):
        auth.authorize("alice", "nope", settings)
    with pytest.raises(auth.AccessDenied, match="analyst name"):
        auth.authorize("a b; drop", "correct horse", settings)


def test_redact_masks_every_secret():
    settings = load_settings(
        analyst_password="pw-123456",
        database_url="postgresql://u:db-pass-9@db.example:5432/x",
        news_api_key="news-key-1",
    )
    text = "pw-123456 / postgresql://u:db-pass-9@db.example:5432/x / db-pass-9 / news-key-1"
    masked = data.redact(text, settings)
    for secret in ("pw-123456", "db-pass-9", "news-key-1"):
        assert secret not in masked
    assert masked.count("**********") == 4


def test_progress_file_reading_tolerates_partial_and_bad_content(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    assert retrain.read_progress(settings) is None
    path = progress_path(settings.data_dir)
    path.write_text("{not json")
    assert retrain.read_progress(settings) is None
    record = {
        "stage": "training",
        "epoch": 2,
        "epochs": 8,
        "model": "lstm",
        "message": "loss 1.01",
        "updated_at": "2026-01-05T15:00:00+00:00",
    }
    path.write_text(json.dumps(record))
    progress = retrain.read_progress(settings)
    assert (progress.stage, progress.model, progress.fraction) == ("training", "lstm", 0.25)
    assert progress.updated_at == pd.Timestamp("2026-01-05T15:00:00Z")


def test_launcher_refuses_while_the_training_lock_is_held(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    launcher = retrain.RetrainLauncher(settings)
    assert launcher.busy_reason() is None
    with training_lock(settings.lock_path):
        assert "already running" in launcher.busy_reason()
        with pytest.raises(retrain.RetrainRefused, match="A second run was not started"):
            launcher.start(by="analyst:x")
    assert not launcher.child_running()
    assert launcher.busy_reason() is None


def test_indicators_are_causal_and_bounded():
    rng = np.random.default_rng(0)
    ts = pd.date_range("2026-01-05 14:30", periods=300, freq="min", tz="UTC")
    close = pd.Series(100 + rng.normal(0, 0.1, 300).cumsum())
    bars = pd.DataFrame(
        {"ts": ts, "close": close, "high": close + 0.05, "low": close - 0.05, "volume": 1000.0}
    )
    values = indicators.rsi(close).dropna()
    assert values.between(0, 100).all() and len(values) > 250
    lines = indicators.overlay_lines(bars, list(indicators.OVERLAYS))
    assert set(lines) == {"SMA 20", "EMA 50", "Bollinger upper", "Bollinger lower", "VWAP"}
    # a change at bar 200 leaves every earlier value unchanged
    later = bars.copy()
    later.loc[200:, "close"] += 5
    again = indicators.overlay_lines(later, list(indicators.OVERLAYS))
    for name, line in lines.items():
        pd.testing.assert_series_equal(line[:200], again[name][:200])


def test_closed_hours_hide_nights_and_weekends():
    friday = pd.date_range("2026-01-09 14:30", periods=390, freq="min", tz="UTC")
    monday = pd.date_range("2026-01-12 14:30", periods=390, freq="min", tz="UTC")
    breaks = charts.closed_hours(pd.Series(friday.append(monday)), pd.Timedelta(minutes=1))
    assert breaks == [{"bounds": ["2026-01-09T21:00:00+00:00", "2026-01-12T14:30:00+00:00"]}]
