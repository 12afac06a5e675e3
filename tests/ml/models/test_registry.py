from __future__ import annotations

import json
import multiprocessing as mp
import time

import pandas as pd
import pytest

from config.settings import get_settings
from db.reads import read_from_db
from ml.models.registry import (
    EXIT_CONFLICT,
    RegistryConflict,
    RegistryError,
    main,
    pin,
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


def _events() -> list[list[str | None]]:
    frame = read_from_db(
        "SELECT event, version, previous_version, actor FROM model_events ORDER BY id"
    )
    return frame.astype(object).where(frame.notna(), None).values.tolist()


def test_a_promotion_decided_on_a_replaced_champion_is_refused(tiny_versions, clean_tables):
    """Validation reads champion v1 and evaluates for minutes; meanwhile an analyst promotes v2;
    validation's promotion of v3 (decided against v1) is refused and v2 stays champion."""
    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="start", expected_champion=None)
    seen_by_validation = read_registry().champion.version
    promote(v2, by="analyst:ana", reason="better live", expected_champion=v1)
    before = get_settings().model_config_path.read_bytes()
    with pytest.raises(RegistryConflict, match=f"expected {v1}, now {v2}") as refused:
        promote(v3, by="validation", reason="gate passed", expected_champion=seen_by_validation)
    assert (refused.value.expected, refused.value.actual) == (v1, v2)
    assert isinstance(refused.value, RegistryError)  # callers handling RegistryError show it
    assert get_settings().model_config_path.read_bytes() == before  # nothing written
    registry = read_registry()
    assert registry.champion.version == v2
    assert (registry.history[-1].version, registry.history[-1].by) == (v2, "analyst:ana")
    assert _events() == [
        ["promoted", v1, None, "cli"],
        ["promoted", v2, v1, "analyst:ana"],
        ["refused", v3, v2, "validation"],
    ]
    reason = read_from_db("SELECT reason FROM model_events WHERE event = 'refused'")["reason"]
    assert reason.tolist() == [
        f"promotion of {v3} refused: the champion changed since it was read (expected {v1}, "
        f"now {v2}); nothing was changed"
    ]
    with pytest.raises(RegistryConflict, match=f"expected no champion, now {v2}"):
        promote(v3, by="validation", reason="first model", expected_champion=None)


def test_a_rollback_of_a_replaced_champion_leaves_the_new_one(tiny_versions, clean_tables):
    """The drift monitor measured v2; an analyst promoted v3 before its rollback: the rollback
    (its target chosen under the lock) is refused and v3 serves on."""
    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="start")
    promote(v2, by="validation", reason="gate passed")
    promote(v3, by="analyst:ana", reason="better live", expected_champion=v2)
    with pytest.raises(RegistryConflict, match=f"rollback to the previous stable champion "
                       f"refused: .*expected {v2}, now {v3}"):  # fmt: skip
        rollback(by="drift_monitor", reason="drift", expected_champion=v2)
    assert read_registry().champion.version == v3
    assert _events()[-1] == ["refused", v2, v3, "drift_monitor"]
    reg = rollback(by="drift_monitor", reason="drift on v3", expected_champion=v3)
    assert reg.champion.version == v2


def test_concurrent_changes_from_one_champion_let_exactly_one_through(tiny_versions, clean_tables):
    """Four writers decided against the same champion at once: the lock and the check let one
    change through; the three others are refused and recorded, none is lost silently."""
    import threading

    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="start")
    promote(v2, by="cli", reason="next")
    outcomes: dict[str, str] = {}
    start = threading.Barrier(4)

    def act(name: str, change) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        try:
            change()
            outcomes[name] = "changed"
        except RegistryConflict:
            outcomes[name] = "refused"

    writers = {
        "validation": lambda: promote(v3, by="validation", reason="a", expected_champion=v2),
        "analyst": lambda: promote(v1, by="analyst:ana", reason="b", expected_champion=v2),
        "drift": lambda: rollback(by="drift_monitor", reason="c", expected_champion=v2),
        "cli": lambda: rollback(by="cli", reason="d", to=v3, expected_champion=v2),
    }
    threads = [threading.Thread(target=act, args=item) for item in writers.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["changed", "refused", "refused", "refused"]
    registry = read_registry()
    assert len(registry.history) == 3 and registry.history[-1].previous == v2
    assert [e[0] for e in _events()].count("refused") == 3


def test_a_version_whose_model_file_changed_is_not_recorded(tiny_versions, clean_tables):
    """A .tflite that differs from the checksum in its metadata.json: promote, pin and rollback
    to it are refused naming the file, nothing is recorded and the champion keeps serving."""
    v1, v2, v3 = tiny_versions()
    promote(v2, by="cli", reason="start")
    promote(v3, by="cli", reason="next")
    (get_settings().models_dir / v2 / "lstm.tflite").write_bytes(b"not the trained model")
    path = get_settings().model_config_path
    before = path.read_bytes()
    events = _events()
    with pytest.raises(RegistryError, match=f"{v2}/lstm.tflite differs from the checksum"):
        rollback(by="drift_monitor", reason="drift", expected_champion=v3)
    with pytest.raises(RegistryError, match="lstm.tflite differs from the checksum"):
        promote(v2, by="analyst:ana", reason="back", expected_champion=v3)
    with pytest.raises(RegistryError, match="lstm.tflite differs from the checksum"):
        pin(v2, by="analyst:ana")
    assert path.read_bytes() == before and _events() == events
    assert read_registry().champion.version == v3
    assert promote(v1, by="cli", reason="intact", expected_champion=v3).champion.version == v1


def test_undecodable_registry_or_metadata_is_a_registry_error(tiny_versions):
    v1, v2, _ = tiny_versions()
    path = get_settings().model_config_path
    path.write_bytes(b'{"schema_version": 1, "pinned": ["\xff"]}')
    with pytest.raises(RegistryError, match="model_config.json is not UTF-8 text"):
        read_registry()
    path.unlink()
    meta = get_settings().models_dir / v2 / "metadata.json"
    meta.write_bytes(meta.read_bytes().replace(b"{", b"{\xff", 1))
    with pytest.raises(RegistryError, match=f"{v2}/metadata.json is not UTF-8 text"):
        promote(v2, by="cli", reason="broken metadata")
    meta.write_text("{not json")
    with pytest.raises(RegistryError, match=f"{v2}/metadata.json is not valid JSON"):
        promote(v2, by="cli", reason="broken metadata")
    assert not path.exists()


def test_cli_refuses_a_change_when_the_champion_is_not_the_one_given(
    tiny_versions, clean_tables, capsys
):
    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="start")
    promote(v2, by="analyst:ana", reason="better")
    code = main(["promote", v3, "--reason", "r", "--expected-champion", v1])
    assert code == EXIT_CONFLICT
    assert f"expected {v1}, now {v2}" in capsys.readouterr().err
    assert main(["rollback", "--reason", "r", "--expected-champion", "none"]) == EXIT_CONFLICT
    assert read_registry().champion.version == v2
    assert main(["promote", v3, "--reason", "r", "--expected-champion", v2]) == 0
    assert read_registry().champion.version == v3


def _use_database(monkeypatch, url: str) -> None:
    from db.connections import dispose_engine

    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    dispose_engine()


def test_changes_made_while_the_database_is_down_reach_model_events_at_the_next_change(
    tiny_versions, clean_tables, monkeypatch
):
    """The registry serves on without the database: a promotion (and a refusal) made while it
    is unreachable waits in the file's queue, and the next change writes it to model_events,
    in order and with the time of the change; afterwards the file's history and the table
    agree and nothing is queued."""
    import os

    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="start")
    reachable = os.environ["DATABASE_URL"]
    _use_database(monkeypatch, "postgresql://nobody:secret@127.0.0.1:1/stockpulse")
    assert promote(v2, by="analyst:ana", reason="better").champion.version == v2
    with pytest.raises(RegistryConflict):
        promote(v3, by="validation", reason="gate passed", expected_champion=v1)
    queued = read_registry().unrecorded_events
    assert [(e.event, e.version, e.by) for e in queued] == [
        ("promoted", v2, "analyst:ana"),
        ("refused", v3, "validation"),
    ]
    _use_database(monkeypatch, reachable)
    assert _events() == [["promoted", v1, None, "cli"]]
    pin(v3, by="analyst:ana")
    assert _events() == [
        ["promoted", v1, None, "cli"],
        ["promoted", v2, v1, "analyst:ana"],
        ["refused", v3, v2, "validation"],
        ["pinned", v3, v2, "analyst:ana"],
    ]
    registry = read_registry()
    assert registry.unrecorded_events == []
    stored = read_from_db("SELECT at FROM model_events WHERE event <> 'refused' ORDER BY id")
    history_at = [pd.Timestamp(h.at) for h in registry.history]
    assert stored["at"].tolist() == history_at
    assert [[h.event, h.version, h.previous, h.by] for h in registry.history] == [
        e for e in _events() if e[0] != "refused"
    ]


def test_a_registry_file_that_cannot_be_written_leaves_both_stores_unchanged(
    tiny_versions, clean_tables, monkeypatch
):
    v1, v2, _ = tiny_versions()
    promote(v1, by="cli", reason="start")
    path = get_settings().model_config_path
    before, events = path.read_bytes(), _events()

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ml.models.registry.write_text_atomic", disk_full)
    with pytest.raises(OSError, match="No space left"):
        promote(v2, by="analyst:ana", reason="better")
    assert path.read_bytes() == before and _events() == events
    assert read_registry().champion.version == v1


def test_an_event_already_in_model_events_is_not_stored_twice(
    tiny_versions, clean_tables, monkeypatch
):
    """The file could not be rewritten after the table was: the event stays queued, and the
    next change finds it stored already."""
    from core.files import write_text_atomic

    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="start")
    writes: list[str] = []

    def second_write_fails(path, text, **kwargs):
        writes.append(text)
        if len(writes) == 2:
            raise OSError(5, "Input/output error")
        write_text_atomic(path, text, **kwargs)

    monkeypatch.setattr("ml.models.registry.write_text_atomic", second_write_fails)
    assert promote(v2, by="analyst:ana", reason="better").champion.version == v2
    assert [e.version for e in read_registry().unrecorded_events] == [v2]
    monkeypatch.undo()
    promote(v3, by="validation", reason="gate passed")
    assert _events() == [
        ["promoted", v1, None, "cli"],
        ["promoted", v2, v1, "analyst:ana"],
        ["promoted", v3, v2, "validation"],
    ]
    assert read_registry().unrecorded_events == []
