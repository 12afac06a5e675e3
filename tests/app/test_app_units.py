"""Units of the app: password check, secret masking, progress file, retrain guard, indicators,
clocks, trigger distances, marker verdicts and macro figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app import auth, chart_data, charts, data, indicators, live_data, macro_data, retrain, ui
from config.settings import get_settings, load_settings
from db.ops import training_lock
from ml.serving.generate_recommendation import dual_actions, trigger_distance
from ml.training.progress import progress_path

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


def test_times_name_their_clock():
    winter, summer = pd.Timestamp("2026-01-05 14:31Z"), pd.Timestamp("2026-07-06 13:31Z")
    assert ui.fmt_market(winter) == "01-05 14:31 UTC · 09:31 New York"
    assert ui.fmt_market(summer, "%H:%M") == "13:31 UTC · 09:31 New York"
    # a New York date other than the UTC one is shown
    assert (
        ui.fmt_market(pd.Timestamp("2026-01-06 02:00Z")) == "01-06 02:00 UTC · 01-05 21:00 New York"
    )
    assert ui.fmt_server(winter) == "14:31:00 UTC server time"
    assert ui.fmt_market(None) == ui.fmt_server(pd.NaT) == "—"
    assert ui.fmt_ts(winter) == "2026-01-05 14:31 UTC"  # unchanged


def test_trigger_distance_matches_the_rule():
    """Distance >= 0 with a shared lean is exactly when the rule fires BUY or SELL."""
    rng = np.random.default_rng(3)
    lstm, tf = rng.dirichlet([1, 1, 1], 2000), rng.dirichlet([1, 1, 1], 2000)
    for buy, sell in ((0.55, 0.55), (0.40, 0.70)):
        trig = trigger_distance(lstm, tf, buy, sell)
        actions = dual_actions(lstm, tf, buy, sell)
        assert ((trig.shared_lean & (trig.distance >= 0)) == (actions != 0)).all()
        assert (trig.side[actions == 1] == "BUY").all()
        assert (trig.side[actions == -1] == "SELL").all()
        np.testing.assert_allclose(trig.distance, trig.weaker - trig.threshold)


def test_explain_confidence_stands_for_the_signal_class():
    probs = {  # (down, neutral, up) of the LSTM and the Transformer
        "BUY": ((0.1, 0.2, 0.7), (0.05, 0.3, 0.65)),
        "HOLD": ((0.2, 0.6, 0.2), (0.25, 0.5, 0.25)),
    }
    rows = []
    for action, (lstm, tf) in [*probs.items(), ("HOLD", ((0.1, 0.38, 0.52), (0.15, 0.35, 0.5)))]:
        row = {"action": action}
        for model, p in (("lstm", lstm), ("transformer", tf)):
            row |= {f"{model}_p_down": p[0], f"{model}_p_neutral": p[1], f"{model}_p_up": p[2]}
            row[f"{model}_label"] = ("DOWN", "NEUTRAL", "UP")[int(np.argmax(p))]
        rows.append(row)
    rows.append({"action": None} | {k: np.nan for k in rows[0] if k != "action"})
    out = live_data.explain(pd.DataFrame(rows), get_settings())
    assert out["class_confidence"].tolist()[:2] == [0.65, 0.5]  # P(UP); P(NEUTRAL) for HOLD
    assert np.isnan(out["class_confidence"].iloc[2])  # a HOLD leaning UP: none stands for it
    assert out["lean"].tolist() == ["both UP", "both NEUTRAL", "both UP", None]
    assert out["trigger_text"].tolist() == [
        "0.10 past BUY ≥ 0.55",
        "0.35 short of BUY ≥ 0.55",  # both NEUTRAL: the nearer trigger (a tie: BUY)
        "0.05 short of BUY ≥ 0.55",
        "—",
    ]


def test_marker_verdicts_judge_buy_by_up_and_sell_by_down():
    frame = pd.DataFrame(
        {
            "action": ["BUY", "BUY", "SELL", "SELL", "BUY", "SELL"],
            "outcome": pd.array([2, 1, 0, 2, None, None], dtype="Int64"),
            "realised": [True, True, True, True, True, False],
        }
    )
    assert chart_data.marker_verdicts(frame).tolist() == [
        "right",
        "wrong",  # NEUTRAL: no clear move
        "right",
        "wrong",
        "no outcome",  # the horizon crossed the close
        "pending",
    ]


def test_macro_figures_say_what_a_rise_means_and_show_cpi_year_on_year():
    released = pd.Timestamp("2026-01-13 13:30Z")
    snapshot = pd.DataFrame(
        {
            "series_id": ["CPIAUCSL", "UNRATE", "DGS10", "CPIAUCSL"],
            "obs_date": [pd.Timestamp(d).date() for d in ("2025-12-01",) * 3 + ("2025-11-01",)],
            "value": [324.0, 4.4, 4.2, 323.0],
            "released": [released] * 4,
            "previous": [323.0, 4.3, 4.25, 322.0],
            "previous_obs_date": [None] * 4,
            "year_ago": [315.0, np.nan, np.nan, np.nan],
            "previous_year_ago": [314.5, np.nan, np.nan, np.nan],
        }
    )
    cpi, unrate, dgs10, no_year = macro_data.macro_figures(snapshot)
    assert cpi.value == f"{(324 / 315 - 1) * 100:.2f}%" and cpi.delta_color == "inverse"
    assert cpi.delta == f"{(324 / 315 - 323 / 314.5) * 100:+.2f} pp"
    assert (unrate.value, unrate.delta, unrate.delta_color) == ("4.4%", "+0.1%", "inverse")
    assert (dgs10.delta, dgs10.delta_color) == ("-0.05%", "off")
    assert no_year.label == "CPIAUCSL · index level" and no_year.value == "323"
    assert (no_year.delta, no_year.delta_color) == ("+1", "off")
    assert "needs the 2024-11-01 observation" in no_year.note
    assert cpi.released == released and cpi.obs_date == "2025-12-01"
