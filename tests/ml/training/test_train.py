"""Training end to end on small data: the version folder, metadata, TFLite parity, the split,
the lock, the job record and the command line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.settings import Settings, get_settings, load_settings
from ml.features.feature_engineering import FEATURE_COLUMNS, FeatureParams
from ml.features.labels import CLASSES, LabelParams
from ml.models.metadata import read_metadata_file
from ml.training.dataset import RawData, build_samples, chronological_split, prepare
from ml.training.progress import Progress, read_progress
from workers.sources.simulated import SimulatedMarket

pytestmark = pytest.mark.xdist_group("train")  # one worker trains the module's shared version

TICKERS = ["AAPL", "KO", "XOM"]
START, END = pd.Timestamp("2026-03-02", tz="UTC"), pd.Timestamp("2026-03-07", tz="UTC")


def sim_bars(start: pd.Timestamp = START, end: pd.Timestamp = END) -> pd.DataFrame:
    return SimulatedMarket(3, planted_signal=1.0).history(TICKERS, start, end)


def small_settings(tmp: Path, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "models_dir": tmp / "models",
        "data_dir": tmp / "data",
        "model_config_path": tmp / "model_config.json",
        "universe": TICKERS,
        "train_epochs": 2,
        "serving_batch": 7,
    }
    return load_settings(**{**base, **extra})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings]:
    from ml.training.train_model import train_from_raw

    tmp = tmp_path_factory.mktemp("train")
    settings = small_settings(tmp)
    folder = train_from_raw(RawData(sim_bars()), settings, progress=Progress(None, None))
    return folder, settings


def test_version_folder_has_both_models_and_complete_metadata(trained: tuple) -> None:
    folder, settings = trained
    assert folder.parent == settings.models_dir
    assert pd.to_datetime(folder.name, format="%Y%m%dT%H%M%SZ") <= pd.Timestamp.now()
    raw = json.loads((folder / "metadata.json").read_text())
    meta = read_metadata_file(folder / "metadata.json")  # the schema, extra keys refused
    assert raw["created_at"] and raw["scaler"]["features"] == list(FEATURE_COLUMNS)
    assert meta.version == folder.name
    assert meta.features == list(FEATURE_COLUMNS)
    assert meta.classes == list(CLASSES)
    assert meta.labels == LabelParams.from_settings(settings)
    assert meta.feature_params == FeatureParams.from_settings(settings)
    assert meta.tflite_batch == settings.serving_batch == 7
    assert meta.tickers == sorted(TICKERS)
    for name in ("lstm.tflite", "transformer.tflite"):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert meta.files[name] == digest
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["lstm.tflite", "metadata.json", "transformer.tflite"]  # no temporary file
    assert not settings.model_config_path.exists()  # trained, not promoted


def test_train_and_validation_ranges_are_chronological_with_a_gap(trained: tuple) -> None:
    folder, settings = trained
    meta = read_metadata_file(folder / "metadata.json")
    (train_start, train_end), (val_start, _) = meta.ranges()
    assert train_start < train_end < val_start
    assert val_start - train_end >= pd.Timedelta(minutes=settings.label_horizon_bars)
    assert meta.purge_gap_minutes is not None
    assert meta.purge_gap_minutes >= settings.label_horizon_bars
    assert meta.training.n_train is not None and meta.training.n_train > 1000
    assert meta.training.n_val is not None and meta.training.n_val > 300


def test_reference_stats_metrics_and_training_record(trained: tuple) -> None:
    folder, settings = trained
    meta = read_metadata_file(folder / "metadata.json")
    stats = meta.reference_stats
    for name in ("ret_1", "rsi_14", "volume_z", "session_frac"):
        ref = stats[name]
        assert len(ref.edges) == 11 and len(ref.proportions) == 10
        assert sum(ref.proportions) == pytest.approx(1.0)
        assert ref.std is not None and ref.std > 0 and len(ref.sample) > 100
    assert stats["macro_dgs10"].count == 0 and stats["macro_dgs10"].mean is None  # no macro
    for model in ("lstm", "transformer"):
        m = meta.metrics.models[model]
        assert 0 <= m.macro_f1 <= 1 and 0 <= m.accuracy <= 1
        assert m.log_loss is not None and m.log_loss > 0
        assert set(m.precision) == set(m.recall) == set(CLASSES)
        assert m.n == meta.training.n_val
        assert 1 / 3 <= meta.reference_confidence[model] <= 1
        assert meta.training.epochs_run[model] in (1, 2)
        assert meta.training.tflite_parity_max_abs_diff[model] <= 1e-4
        assert meta.training.hyperparameters[model]  # what built the model, recorded
    assert set(meta.metrics.baselines) == {"majority", "logistic", "gbt"}
    assert 0 <= meta.metrics.baselines["majority"].macro_f1 < 0.5
    assert meta.training.config["seed"] == settings.train_seed
    assert meta.training.config["epochs"] == 2


def test_tflite_files_have_a_fixed_batch_and_match_keras_outputs(trained: tuple) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from ml.models.tflite_export import tflite_predict

    folder, settings = trained
    meta = read_metadata_file(folder / "metadata.json")
    val_start = meta.ranges()[1][0]
    samples = build_samples(RawData(sim_bars()), meta, start=val_start)
    assert samples.X.shape[1:] == (meta.window_length, len(meta.features))
    for name in ("lstm", "transformer"):
        content = (folder / f"{name}.tflite").read_bytes()
        interpreter = Interpreter(model_content=content)
        shape = interpreter.get_input_details()[0]["shape"].tolist()
        assert shape == [settings.serving_batch, meta.window_length, len(meta.features)]
        probs = tflite_predict(content, samples.X[:50])  # 50 = 7 full batches + a padded one
        assert probs.shape == (50, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_samples_rebuilt_from_metadata_alone(trained: tuple) -> None:
    folder, _ = trained
    meta = read_metadata_file(folder / "metadata.json")
    val = build_samples(RawData(sim_bars()), meta, start=meta.ranges()[1][0])
    assert len(val) == meta.training.n_val
    assert val.X.dtype == np.float32 and np.isfinite(val.X).all()
    up, down = val.y == CLASSES.index("UP"), val.y == CLASSES.index("DOWN")
    assert (val.fwd_return[up] > 0).all() and (val.fwd_return[down] < 0).all()
    assert (val.exit_ts > val.bar_ts).all()


def test_parity_failure_stops_training_before_anything_is_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ml.models.tflite_export as export
    from ml.training.train_model import train_from_raw

    real = export.tflite_predict
    monkeypatch.setattr(export, "tflite_predict", lambda content, X: real(content, X) + 1e-3)
    settings = small_settings(tmp_path, train_epochs=1)
    bars = sim_bars(END - pd.Timedelta(days=3), END)
    with pytest.raises(export.TFLiteParityError, match="differ from Keras"):
        train_from_raw(RawData(bars), settings, progress=Progress(None, None))
    assert not settings.models_dir.exists() or not any(settings.models_dir.iterdir())


def test_split_purges_and_embargoes_the_label_horizon() -> None:
    params = LabelParams(0.8, 0.8, horizon_bars=10, vol_lookback=30)
    prepared = prepare(RawData(sim_bars()), list(FEATURE_COLUMNS), 32, params, FeatureParams())
    split = chronological_split(prepared, 0.25, params.horizon_bars)
    ts = prepared.frame["ts"]
    exits = prepared.frame["exit_ts"]
    val_start = ts.iloc[split.val_rows].min()
    assert ts.iloc[split.train_rows].max() < val_start
    assert (exits.iloc[split.train_rows] < val_start).all()
    assert split.gap >= pd.Timedelta(minutes=params.horizon_bars)
    # one session only: the split falls inside it, and the gap still covers the horizon
    one_day = sim_bars(pd.Timestamp("2026-03-03", tz="UTC"), pd.Timestamp("2026-03-04", tz="UTC"))
    prepared = prepare(RawData(one_day), list(FEATURE_COLUMNS), 32, params, FeatureParams())
    split = chronological_split(prepared, 0.25, params.horizon_bars)
    assert split.gap >= pd.Timedelta(minutes=params.horizon_bars)
    assert len(split.train_rows) > len(split.val_rows) > 0


def test_train_from_the_database_records_the_job(
    clean_tables: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from db.reads import read_from_db
    from db.writes import write_to_db
    from ml.training.train_model import train

    write_to_db(sim_bars().assign(source="simulated"), table="bars_1m")
    settings = small_settings(tmp_path, train_lookback_days=10)
    folder = train(settings, end="2026-03-07", quick=True, epochs=1)
    assert (folder / "metadata.json").is_file()
    assert "training [lstm 1/1]" in capsys.readouterr().out
    progress = read_progress(settings.data_dir)
    assert progress is not None and progress.stage == "done" and progress.finished
    runs = read_from_db(
        "SELECT job, status, message FROM job_runs WHERE job = :j", {"j": "train_model"}
    )
    assert runs["status"].tolist() == ["ok"] and folder.name in runs["message"].iloc[0]


def test_train_refuses_while_the_lock_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from core.locks import EXIT_BUSY, LockBusyError
    from db.ops import training_lock
    from ml.training.train_model import main, train

    settings = small_settings(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        with training_lock(settings.lock_path):
            with pytest.raises(LockBusyError):
                train(settings, quick=True)
            assert main(["--quick"]) == EXIT_BUSY
    finally:
        get_settings.cache_clear()
    assert "already running" in capsys.readouterr().err


def test_command_line_help_and_bad_arguments() -> None:
    run = [sys.executable, "-m", "ml.training.train_model"]
    ok = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "--quick" in ok.stdout and "--epochs" in ok.stdout
    bad = subprocess.run([*run, "--epochs", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--epochs must be >= 1" in bad.stderr


def test_empty_database_range_gives_a_clear_error(clean_tables: None, tmp_path: Path) -> None:
    from ml.training.dataset import DatasetError
    from ml.training.train_model import train

    settings = small_settings(tmp_path)
    with pytest.raises(DatasetError, match="no bars"):
        train(settings, end="2020-01-10", quick=True)
    progress = read_progress(settings.data_dir)
    assert progress is not None and progress.stage == "failed"
    assert "no bars" in progress.message
