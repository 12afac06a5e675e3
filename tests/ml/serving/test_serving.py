from __future__ import annotations

import numpy as np
import pytest

from config.settings import get_settings
from ml.models.model_loader import ModelLoadError, ModelManager, load_active_models, load_version
from ml.models.predict import PredictionInputError, make_prediction, predict_batch
from ml.models.registry import RegistryError, promote, read_registry, sha256_file, write_registry

from ..conftest import BATCH, FEATURES, WINDOW

pytestmark = pytest.mark.no_db


def test_no_champion_means_no_models(model_env):
    assert load_active_models() is None


def test_load_and_predict_single_and_batched(tiny_versions):
    v1, *_ = tiny_versions()
    promote(v1, by="cli", reason="test")
    models = load_active_models()
    assert models is not None and models.version == v1
    rng = np.random.default_rng(0)
    windows = rng.random((11, WINDOW, FEATURES), dtype=np.float32)  # > batch: padded chunks
    batch = predict_batch(models.lstm, windows)
    assert len(batch) == 11
    one = make_prediction(models.lstm, windows[5])
    assert one.label == batch[5].label
    assert one.probabilities == pytest.approx(batch[5].probabilities, abs=1e-6)
    assert sum(one.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert models.lstm.invocations == 3 + 1  # ceil(11 / BATCH) + 1
    assert BATCH == 4


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((WINDOW + 1, FEATURES)), "shape"),
        (np.zeros((2, WINDOW, FEATURES - 1)), "shape"),
        (np.zeros((0, WINDOW, FEATURES)), "shape"),
        (np.full((WINDOW, FEATURES), np.nan), "NaN/inf"),
        (np.where(np.eye(WINDOW, FEATURES) > 0, np.inf, 0.0), "NaN/inf"),
    ],
)
def test_bad_inputs_are_rejected(tiny_versions, bad, message):
    v1, *_ = tiny_versions()
    models = load_version(v1)
    with pytest.raises(PredictionInputError, match=message):
        make_prediction(models.transformer, bad)


def test_checksum_mismatch_keeps_the_old_models_serving(tiny_versions):
    v1, v2, _ = tiny_versions()
    promote(v1, by="cli", reason="first")
    manager = ModelManager()
    assert manager.current().version == v1
    (get_settings().models_dir / v2 / "transformer.tflite").write_bytes(b"corrupted")
    with pytest.raises(Exception, match="lacks|checksum|cannot"):
        load_version(v2)
    # promote refuses a file that differs from the version's metadata; a registry recording the
    # corrupted file's checksum anyway (edited by hand) is refused by the loader too, because
    # the bytes do not match the version's own metadata
    with pytest.raises(RegistryError, match="transformer.tflite differs from the checksum"):
        promote(v2, by="cli", reason="second")
    registry = read_registry()
    assert registry.champion is not None and registry.champion.version == v1
    folder = get_settings().models_dir / v2
    files = {f: sha256_file(folder / f) for f in registry.champion.files}
    registry.champion = registry.champion.model_copy(update={"version": v2, "files": files})
    write_registry(registry)
    served = manager.current()
    assert served is not None and served.version == v1
    assert manager.last_error and "checksum" in manager.last_error


def test_reload_on_registry_change(tiny_versions):
    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="first")
    manager = ModelManager()
    first = manager.current()
    assert manager.current() is first  # no change, no reload
    promote(v2, by="cli", reason="second")
    second = manager.current()
    assert second is not None and second.version == v2 and second is not first
    assert manager.reloads == 2


def test_missing_file_is_a_clear_error(tiny_versions):
    v1, *_ = tiny_versions()
    (get_settings().models_dir / v1 / "lstm.tflite").unlink()
    with pytest.raises(ModelLoadError, match="lstm.tflite is missing"):
        load_version(v1)


def test_a_version_copied_under_another_name_is_refused(tiny_versions):
    import shutil

    from ml.models.metadata import MetadataError, version_metadata

    v1, *_ = tiny_versions()
    models = get_settings().models_dir
    shutil.copytree(models / v1, models / "20991231T000000Z")
    with pytest.raises(ModelLoadError, match=f"holds the metadata of version {v1}"):
        load_version("20991231T000000Z")
    with pytest.raises(MetadataError, match="must name the folder's version"):
        version_metadata("20991231T000000Z")
    assert load_version(v1).version == v1


def test_undecodable_challenger_metadata_leaves_the_champion_serving(tiny_versions):
    """A \\xff byte in the newest challenger's metadata.json: the champion serves on, the
    challenger is left out of shadow scoring with the reason, naming the file."""
    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="first")
    path = get_settings().models_dir / v3 / "metadata.json"
    path.write_bytes(b"\xff" + path.read_bytes())
    serving = ModelManager().serving()
    assert serving.champion is not None and serving.champion.version == v1
    assert [m.version for m in serving.challengers] == []
    assert f"{v3}/metadata.json is not UTF-8 text" in serving.skipped[v3]
    with pytest.raises(ModelLoadError, match="is not UTF-8 text"):
        load_version(v3)
    with pytest.raises(RegistryError, match="metadata.json is not UTF-8 text"):
        promote(v3, by="cli", reason="broken")


def test_undecodable_registry_keeps_the_old_models_serving(tiny_versions):
    v1, *_ = tiny_versions()
    promote(v1, by="cli", reason="first")
    manager = ModelManager()
    assert manager.current().version == v1
    path = get_settings().model_config_path
    path.write_bytes(path.read_bytes().replace(b'"champion"', b'"champ\xffion"', 1))
    with pytest.raises(RegistryError, match="model_config.json is not UTF-8 text"):
        read_registry()
    served = manager.current()
    assert served is not None and served.version == v1
    assert manager.last_error and "is not UTF-8 text" in manager.last_error
