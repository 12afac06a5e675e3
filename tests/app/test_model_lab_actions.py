"""The model lab's actions: promote / rollback behind the password, refused when the champion
changed since the page was drawn, and retrain (refused while training runs)."""

from __future__ import annotations

import time

import pytest

from app import retrain
from config.settings import get_settings
from db.ops import training_lock
from ml.models.registry import read_registry
from tests.app.conftest import TRAINING_ENV
from tests.app.lab_support import CHAMPION, PASSWORD, fill_form, submit
from tests.app.support import alerts, open_page, table_with, texts


def test_promote_needs_the_password_and_is_recorded_with_the_reason(app_env):
    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    at = open_page("lab")
    fill_form(at, "promote", "alice", "wrong-password", "better on the last week")
    submit(at, "Promote")
    assert any("Wrong analyst password" in e for e in alerts(at, "error"))
    assert read_registry().champion.version == CHAMPION
    fill_form(at, "promote", "", PASSWORD, "better on the last week")
    submit(at, "Promote")
    assert any("analyst name" in e for e in alerts(at, "error"))
    fill_form(at, "promote", "alice", PASSWORD, "better on the last week")
    submit(at, "Promote")
    assert not alerts(at, "error")
    registry = read_registry()
    assert registry.champion.version == app_env.version
    last = registry.history[-1]
    assert (last.event, last.by, last.reason) == (
        "promoted",
        "analyst:alice",
        "better on the last week",
    )
    assert any("Champion is now" in s for s in alerts(at, "success"))
    assert not any(PASSWORD in t for t in texts(at))


def test_rollback_returns_to_the_previous_champion(app_env):
    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    app_env.promote(app_env.version)
    at = open_page("lab")
    fill_form(at, "rollback", "bob", PASSWORD, "live accuracy fell")
    submit(at, "Roll back")
    assert not alerts(at, "error")
    registry = read_registry()
    assert registry.champion.version == CHAMPION
    assert (registry.history[-1].event, registry.history[-1].by) == ("rolled_back", "analyst:bob")
    history = table_with(open_page("drift"), "event", "reason")
    assert history.iloc[0]["reason"] == "live accuracy fell"


def test_a_second_retrain_is_refused_while_training_runs(app_env):
    at = open_page("lab")
    with training_lock():  # as the nightly job (or an earlier click) holds it
        fill_form(at, "retrain", "carol", PASSWORD)
        submit(at, "Retrain now")
        assert any("already running" in w for w in alerts(at, "warning"))
        assert not retrain.launcher().child_running()
        assert any("already running" in i for i in alerts(at, "info"))  # the progress panel
    assert not (get_settings().data_dir / "training_progress.json").exists()


def test_retrain_with_a_wrong_password_starts_nothing(app_env):
    at = open_page("lab")
    fill_form(at, "retrain", "carol", "nope")
    submit(at, "Retrain now")
    assert any("Wrong analyst password" in e for e in alerts(at, "error"))
    assert not retrain.launcher().child_running()


@pytest.mark.slow
def test_retrain_runs_the_pipeline_in_the_background_and_shows_the_outcome(
    app_env, monkeypatch: pytest.MonkeyPatch
):
    quick = {**TRAINING_ENV, "HOLDOUT_SESSIONS": "1", "BASELINE_TRAIN_SESSIONS": "2"}
    for key, value in (quick | {"BOOTSTRAP_SAMPLES": "50"}).items():
        monkeypatch.setenv(key, value)  # inherited by the background process
    get_settings.cache_clear()
    app_env.feed(sessions=4).seed()  # no champion yet: the first challenger faces the baselines
    at = open_page("lab")
    fill_form(at, "retrain", "carol", PASSWORD, None)
    at.checkbox[0].check()
    submit(at, "Retrain now")
    assert any("Training started in the background" in s for s in alerts(at, "success"))
    launcher = retrain.launcher()
    second = open_page("lab")  # another analyst clicks while it runs
    fill_form(second, "retrain", "dave", PASSWORD, None)
    submit(second, "Retrain now")
    assert any("already running" in w or "is starting" in w for w in alerts(second, "warning"))
    deadline = time.monotonic() + 600
    while launcher.child_running() and time.monotonic() < deadline:
        time.sleep(1)
    assert launcher.returncode == 0, launcher.last_log_line()
    at.run()
    assert any("finished" in s for s in alerts(at, "success"))
    runs = table_with(at, "model", "macro_f1")
    assert len(runs) >= 4
    assert any("Gate decision" in t for t in texts(at))


def test_promote_and_rollback_in_one_session_show_in_another_at_its_next_rerun(app_env):
    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    watcher, history = open_page("lab"), open_page("drift")
    assert any(f"`{CHAMPION}`" in t for t in texts(watcher))
    events_before = len(table_with(history, "event", "actor"))

    other = open_page("lab")
    fill_form(other, "promote", "alice", PASSWORD, "better on the last week")
    submit(other, "Promote")
    watcher.run()
    history.run()
    assert any(f"**Champion:** `{app_env.version}`" in t for t in texts(watcher))
    events = table_with(history, "event", "actor")
    assert len(events) == events_before + 1
    assert (events.iloc[0]["event"], events.iloc[0]["actor"]) == ("promoted", "analyst:alice")

    fill_form(other, "rollback", "bob", PASSWORD, "live accuracy fell")
    submit(other, "Roll back")
    watcher.run()
    history.run()
    assert any(f"**Champion:** `{CHAMPION}`" in t for t in texts(watcher))
    events = table_with(history, "event", "actor")
    assert (events.iloc[0]["event"], events.iloc[0]["actor"]) == ("rolled_back", "analyst:bob")
    assert table_with(history, "event", "reason").iloc[0]["reason"] == "live accuracy fell"


OTHER = "20260201T000000Z"


def test_a_promotion_drawn_before_the_champion_changed_is_refused_then_goes_through(app_env):
    """The champion replaced elsewhere (another session, the gate, the command line) between
    drawing the page and the click: the promotion is refused with the plain conflict message
    and nothing changes; the next click, on the page as drawn now, goes through."""
    from ml.models.registry import RegistryConflict, promote

    app_env.copy_version(CHAMPION)
    app_env.copy_version(OTHER)
    app_env.promote(CHAMPION)
    at = open_page("lab")
    promote(OTHER, by="cli", reason="replaced elsewhere")
    stored = get_settings().model_config_path.read_bytes()
    fill_form(at, "promote", "alice", PASSWORD, "better on the last week")
    submit(at, "Promote")
    assert not at.exception
    conflict = RegistryConflict(f"promotion of {app_env.version}", app_env.version, CHAMPION, OTHER)
    assert alerts(at, "error") == [f"Not changed: {conflict}"]
    assert get_settings().model_config_path.read_bytes() == stored
    assert any(f"**Champion:** `{OTHER}`" in t for t in texts(at))
    fill_form(at, "promote", "alice", PASSWORD, "better on the last week")
    submit(at, "Promote")
    assert not alerts(at, "error")
    registry = read_registry()
    assert registry.champion.version == app_env.version
    assert (registry.history[-1].previous, registry.history[-1].by) == (OTHER, "analyst:alice")


def test_a_rollback_drawn_before_the_champion_changed_is_refused_then_goes_through(app_env):
    from ml.models.registry import RegistryConflict, promote

    app_env.copy_version(CHAMPION)
    app_env.copy_version(OTHER)
    app_env.promote(CHAMPION)
    app_env.promote(app_env.version)
    at = open_page("lab")
    promote(OTHER, by="cli", reason="replaced elsewhere")
    stored = get_settings().model_config_path.read_bytes()
    fill_form(at, "rollback", "bob", PASSWORD, "live accuracy fell")
    submit(at, "Roll back")
    assert not at.exception
    action = "rollback to the previous stable champion"
    conflict = RegistryConflict(action, None, app_env.version, OTHER)
    assert alerts(at, "error") == [f"Not changed: {conflict}"]
    assert get_settings().model_config_path.read_bytes() == stored
    fill_form(at, "rollback", "bob", PASSWORD, "live accuracy fell")
    submit(at, "Roll back")
    assert not alerts(at, "error")
    registry = read_registry()
    assert registry.champion.version == app_env.version  # the champion before OTHER
    last = registry.history[-1]
    assert (last.event, last.previous, last.by) == ("rolled_back", OTHER, "analyst:bob")
