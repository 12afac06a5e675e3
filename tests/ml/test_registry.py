from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest

from config.settings import get_settings
from db.database_manager import read_from_db
from ml.registry import (
    RegistryError,
    promote,
    read_registry,
    rollback,
    write_registry,
)


def test_promote_records_checksums_and_history(tiny_versions, clean_tables):
    v1, v2, _ = tiny_versions()
    promote(v1, by="validation", reason="first model")
    reg = promote(v2, by="analyst:ana", reason="better F1")
    assert reg.champion is not None and reg.champion.version == v2
    assert set(reg.champion.files) == {"lstm.tflite", "transformer.tflite", "metadata.json"}
    assert [(h.event, h.version, h.previous) for h in reg.history] == [
        ("promoted", v1, None),
        ("promoted", v2, v1),
    ]
    events = read_from_db("SELECT event, version, actor FROM model_events ORDER BY id")
    assert events.values.tolist() == [
        ["promoted", v1, "validation"],
        ["promoted", v2, "analyst:ana"],
    ]


def test_rollback_goes_to_the_previous_stable_champion(tiny_versions, clean_tables):
    v1, v2, v3 = tiny_versions()
    for v in (v1, v2, v3):
        promote(v, by="validation", reason="gate passed")
    assert rollback(by="drift_monitor", reason="drift").champion.version == v2
    assert rollback(by="drift_monitor", reason="drift again").champion.version == v1
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(by="drift_monitor", reason="and again")


def test_reason_and_files_are_required(tiny_versions):
    v1, *_ = tiny_versions()
    with pytest.raises(RegistryError, match="reason"):
        promote(v1, by="cli", reason=" ")
    with pytest.raises(RegistryError, match="lacks"):
        promote("20990101T000000Z", by="cli", reason="missing")


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"schema_version": 1, "champion": {"version": "x"}}), "champion.path"),
        (json.dumps({"schema_version": 2}), "schema_version"),
        (json.dumps({"history": [{"event": "exploded"}]}), "history.0"),
    ],
)
def test_malformed_registry_is_rejected_clearly(model_env, content, message):
    path = get_settings().model_config_path
    path.write_text(content)
    with pytest.raises(RegistryError, match=message):
        read_registry()


def _reader(path: str, stop_at: float, out: mp.Queue) -> None:
    from pathlib import Path

    bad, reads = 0, 0
    while time.time() < stop_at:
        try:
            json.loads(Path(path).read_text())
            reads += 1
        except (json.JSONDecodeError, FileNotFoundError):
            bad += 1
    out.put((reads, bad))


def test_writes_are_atomic_under_a_concurrent_reader(tiny_versions):
    v1, v2, _ = tiny_versions()
    path = get_settings().model_config_path
    promote(v1, by="cli", reason="start")
    reg = read_registry()
    queue: mp.Queue = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(
        target=_reader, args=(str(path), time.time() + 2.0, queue)
    )
    proc.start()
    writes = 0
    while proc.is_alive():
        reg.history = reg.history[:1] * (1 + writes % 50)  # files of changing size
        write_registry(reg)
        writes += 1
    reads, bad = queue.get(timeout=5)
    assert writes > 50 and reads > 50
    assert bad == 0
