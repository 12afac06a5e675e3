"""Sign-in: roles from the ID token and the allow-lists, the launcher's secrets, the local
password's lockout per source address (kept in the database), and the identity recorded on
registry events and job runs."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from app import auth, launch, retrain, sign_in
from config.settings import get_settings, load_settings
from db import identity
from db.connections import dispose_engine, execute
from db.ops import STARTED_BY_ENV, job_run, training_lock
from db.reads import read_from_db
from ml.models.registry import read_registry
from tests.app.support import APP_DIR, PAGES, alerts, table_with, texts

ROOT = APP_DIR.parent

PASSWORD = "stockpulse-demo"  # the local profile's default analyst password
SOURCE = "203.0.113.7"
OIDC_ENV = {
    "OIDC_SERVER_METADATA_URL": "http://127.0.0.1:9/.well-known/openid-configuration",
    "OIDC_CLIENT_ID": "stockpulse",
    "AUTH_COOKIE_SECRET": "a-long-cookie-secret-for-tests",
    "ANALYST_EMAILS": "alex@example.com",
    "ADMIN_EMAILS": "root@example.com",
}
CHAMPION = "20260101T000000Z"


@pytest.fixture
def login_records() -> Iterator[None]:
    """No failures or lockouts before and after a test (a lockout of 'unknown', the address of
    every AppTest session, would refuse the passwords of the tests that follow)."""
    execute("TRUNCATE login_failures, login_lockouts")
    yield
    execute("TRUNCATE login_failures, login_lockouts")


@pytest.fixture
def oidc(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in OIDC_ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def open_as(page: str, user: dict[str, Any] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP_DIR / "main.py"), default_timeout=90)
    if user is not None:
        at.user = user
    at.switch_page(PAGES.get(page, page))
    return at.run()


def signed_in(email: str, **claims: Any) -> dict[str, Any]:
    return {"is_logged_in": True, "email": email, "sub": f"sub-{email}", **claims}


# ----------------------------------------------------------------------------- roles
@pytest.mark.no_db
@pytest.mark.parametrize(
    ("claims", "role"),
    [
        ({"email": "v@example.com"}, "viewer"),
        ({"email": "a@example.com", "roles": ["analyst"]}, "analyst"),
        ({"email": "a@example.com", "roles": "reader analyst"}, "analyst"),
        ({"email": "a@example.com", "roles": "analyst,admin"}, "admin"),
        ({"email": "a@example.com", "roles": ["Admin"]}, "admin"),
        ({"email": "a@example.com", "roles": ["owner", 3]}, "viewer"),
        ({"email": "Alex@Example.com"}, "analyst"),  # the allow-list, any case
        ({"email": "root@example.com", "roles": ["analyst"]}, "admin"),  # the higher one
        ({"email": "alex@example.com", "email_verified": False}, "viewer"),
        ({"sub": "no-email", "roles": ["analyst"]}, "analyst"),
    ],
)
def test_roles_come_from_the_role_claim_and_the_allow_lists(claims, role):
    settings = load_settings(**{k.lower(): v for k, v in OIDC_ENV.items()})
    assert auth.role_of(claims, settings) == role


@pytest.mark.no_db
def test_the_role_claim_is_a_setting_and_the_actor_is_the_email_or_the_subject():
    settings = load_settings(**{k.lower(): v for k, v in OIDC_ENV.items()}, role_claim="groups")
    assert auth.role_of({"groups": "admin", "roles": ["viewer"]}, settings) == "admin"
    assert auth.role_of({"roles": ["admin"]}, settings) == "viewer"
    who = auth.oidc_identity({"email": "ana@example.com", "sub": "s-1"}, settings)
    assert (who.actor, who.label) == ("oidc:ana@example.com", "ana@example.com")
    assert auth.oidc_identity({"sub": "s-1"}, settings).actor == "oidc:s-1"
    assert auth.oidc_identity({}, settings) == auth.SIGNED_OUT
    analyst = auth.Identity(actor="oidc:a", role="analyst", label="a")
    assert analyst.may("viewer") and analyst.may("analyst") and not analyst.may("admin")
    assert not auth.SIGNED_OUT.may("viewer")


# ----------------------------------------------------------------------------- launcher
@pytest.mark.no_db
def test_the_launcher_writes_the_auth_secrets_for_st_login_readable_by_this_user_only(tmp_path):
    settings = load_settings(
        **{k.lower(): v for k, v in OIDC_ENV.items()},
        data_dir=tmp_path,
        oidc_client_secret='se"cret\\1',
        oidc_redirect_uri="http://127.0.0.1:8600/oauth2callback",
    )
    path = launch.write_secrets(settings)
    assert path == tmp_path / "streamlit" / "secrets.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tomllib.loads(path.read_text())["auth"] == {
        "redirect_uri": "http://127.0.0.1:8600/oauth2callback",
        "cookie_secret": OIDC_ENV["AUTH_COOKIE_SECRET"],
        "client_id": "stockpulse",
        "client_secret": 'se"cret\\1',
        "server_metadata_url": OIDC_ENV["OIDC_SERVER_METADATA_URL"],
    }
    argv = launch.streamlit_argv(["--server.port", "8600"], path)
    assert argv == [
        sys.executable, "-m", "streamlit", "run", str(APP_DIR / "main.py"),
        "--secrets.files", str(path), "--server.port", "8600",
    ]  # fmt: skip
    # without a provider: no secrets, and the earlier file is gone
    assert launch.write_secrets(load_settings(data_dir=tmp_path)) is None
    assert not path.exists()
    assert "--secrets.files" not in launch.streamlit_argv([], None)


# ----------------------------------------------------------------------------- local password
def test_the_password_is_refused_after_too_many_failures_from_one_address(
    login_records, caplog, monkeypatch
):
    monkeypatch.setenv("LOGIN_MAX_FAILURES", "3")
    settings = load_settings()
    caplog.set_level(logging.WARNING, logger="app.sign_in")
    for _ in range(2):
        with pytest.raises(auth.AccessDenied, match="Wrong analyst password") as err:
            sign_in.check_password("mallory", "guess-1", source=SOURCE, settings=settings)
        assert not isinstance(err.value, sign_in.LockedOut)
    with pytest.raises(sign_in.LockedOut, match="Too many wrong analyst passwords"):
        sign_in.check_password("mallory", "guess-3", source=SOURCE, settings=settings)
    # locked: the right password is refused without being looked at
    with pytest.raises(sign_in.LockedOut, match="try again after"):
        sign_in.check_password("alice", PASSWORD, source=SOURCE, settings=settings)
    # another address is not locked out
    assert sign_in.check_password("bob", PASSWORD, source="198.51.100.2", settings=settings) == (
        "analyst:bob"
    )

    failures = [r for r in caplog.records if r.getMessage().startswith("wrong analyst password")]
    assert len(failures) == 3
    for n, record in enumerate(failures, start=1):
        assert record.levelno == logging.WARNING
        assert SOURCE in record.getMessage() and "'mallory'" in record.getMessage()
        assert f"({n} of 3 " in record.getMessage()
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and SOURCE in refused[0].getMessage()
    assert not any("guess" in r.getMessage() or PASSWORD in r.getMessage() for r in caplog.records)

    stored = identity.login_failures(SOURCE)
    assert list(stored["name"]) == ["mallory"] * 3  # the refused attempt is not a failure
    assert identity.login_failures("198.51.100.2").empty


def test_the_lockout_is_kept_in_the_database_and_ends(login_records, monkeypatch):
    monkeypatch.setenv("LOGIN_MAX_FAILURES", "2")
    settings = load_settings()
    for _ in range(2):
        with pytest.raises(auth.AccessDenied):
            sign_in.check_password("eve", "nope", source=SOURCE, settings=settings)
    # as after an app restart: new connections, new settings, nothing in memory
    dispose_engine()
    get_settings.cache_clear()
    assert identity.locked_until(SOURCE) is not None
    with pytest.raises(sign_in.LockedOut):
        sign_in.check_password("alice", PASSWORD, source=SOURCE, settings=load_settings())
    # 16 minutes later the lockout has ended: the right password works again, and the count
    # starts afresh
    execute("UPDATE login_failures SET at = at - interval '16 minutes'")
    execute(
        "UPDATE login_lockouts SET locked_until = locked_until - interval '16 minutes', "
        "counted_from = counted_from - interval '16 minutes'"
    )
    assert identity.locked_until(SOURCE) is None
    with pytest.raises(auth.AccessDenied) as err:
        sign_in.check_password("eve", "nope", source=SOURCE, settings=settings)
    assert not isinstance(err.value, sign_in.LockedOut)
    assert sign_in.check_password("alice", PASSWORD, source=SOURCE, settings=settings) == (
        "analyst:alice"
    )


def test_a_right_password_stops_earlier_failures_from_counting(login_records, monkeypatch):
    monkeypatch.setenv("LOGIN_MAX_FAILURES", "3")
    settings = load_settings()
    for _ in range(2):
        for _ in range(2):
            with pytest.raises(auth.AccessDenied):
                sign_in.check_password("alice", "typo", source=SOURCE, settings=settings)
        assert sign_in.check_password("alice", PASSWORD, source=SOURCE, settings=settings)
    assert identity.locked_until(SOURCE) is None
    assert len(identity.login_failures(SOURCE)) == 4  # every failure is still on record


def test_a_bad_name_is_refused_before_the_password_and_counts_nothing(login_records):
    with pytest.raises(auth.AccessDenied, match="analyst name"):
        sign_in.check_password("a b; drop", "nope", source=SOURCE, settings=load_settings())
    assert identity.login_failures(SOURCE).empty


def test_the_retrain_form_locks_out_after_the_failures_and_refuses_the_right_password(
    app_env, login_records, monkeypatch
):
    """In the app (AppTest: no client address, so 'unknown'): after LOGIN_MAX_FAILURES wrong
    passwords the next attempt, with the right password, is refused and starts nothing."""
    from tests.app.test_model_lab import fill_form, submit

    monkeypatch.setenv("LOGIN_MAX_FAILURES", "2")
    get_settings.cache_clear()
    at = open_as("lab")
    with training_lock():  # were the password accepted, nothing could start anyway
        for _ in range(2):
            at = submit(fill_form(at, "retrain", "carol", "nope"), "Retrain now")
        assert any("Too many wrong analyst passwords" in e for e in alerts(at, "error"))
        at = submit(fill_form(at, "retrain", "carol", PASSWORD), "Retrain now")
        assert any("Too many wrong analyst passwords" in e for e in alerts(at, "error"))
        assert not any("already running" in w for w in alerts(at, "warning"))
    assert not retrain.launcher().child_running()
    assert list(identity.login_failures(sign_in.UNKNOWN_SOURCE)["name"]) == ["carol", "carol"]


def test_a_viewer_reads_the_pages_without_a_password(app_env, login_records):
    for page in ("home", "lab", "drift", "health", "views/alerts.py"):
        at = open_as(page)
        assert not at.exception, page
        assert any("Local profile" in c for c in texts(at)), page
    lab = open_as("lab")
    assert any(b.label == "Retrain now" for b in lab.button)  # the password guards it
    assert identity.login_failures(sign_in.UNKNOWN_SOURCE).empty


# ----------------------------------------------------------------------------- signed in (OIDC)
def test_a_signed_in_viewer_sees_no_retrain_promote_rollback_or_pin_controls(app_env, oidc):
    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    app_env.version  # noqa: B018 (a second version: there is something to promote)
    at = open_as("lab", signed_in("viola@example.com"))
    assert not at.exception
    labels = {b.label for b in at.button}
    assert not labels & {"Retrain now", "Promote", "Promote challenger", "Roll back", "Apply"}
    assert "Sign out" in labels
    assert not at.get("form")
    assert any("need the analyst role" in i for i in alerts(at, "info"))
    assert "viola@example.com · viewer" in [t.value for t in at.text]
    assert not any(t.key and t.key.endswith("_password") for t in at.text_input)


def test_signed_out_with_a_provider_shows_a_sign_in_button_and_no_controls(app_env, oidc):
    at = open_as("lab", {"is_logged_in": False})
    assert not at.exception
    labels = {b.label for b in at.button}
    assert "Sign in" in labels and "Retrain now" not in labels
    # a server started without `python -m app.launch` has no [auth] secrets: it says so
    next(b for b in at.button if b.label == "Sign in").click()
    at = at.run()
    assert any("start it with `python -m app.launch`" in e for e in alerts(at, "error"))


def test_an_analyst_from_the_allow_list_promotes_and_the_record_names_them(app_env, oidc):
    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    at = open_as("lab", signed_in("alex@example.com"))
    assert "alex@example.com · analyst" in [t.value for t in at.text]
    assert any(b.label == "Retrain now" for b in at.button)
    assert not any(t.key and t.key.endswith("_password") for t in at.text_input)
    assert any("Recorded as `oidc:alex@example.com`" in c for c in texts(at))
    form = next(f for f in at.get("form") if f.proto.form.form_id == "promote_form")
    form.text_input[0].input("better on the last week")
    next(b for b in at.button if b.label == "Promote").click()
    at = at.run()
    assert not alerts(at, "error")
    registry = read_registry()
    assert registry.champion.version == app_env.version
    assert registry.champion.promoted_by == "oidc:alex@example.com"
    assert registry.history[-1].by == "oidc:alex@example.com"
    events = read_from_db("SELECT event, actor FROM model_events ORDER BY id DESC LIMIT 1")
    assert events.iloc[0].tolist() == ["promoted", "oidc:alex@example.com"]
    assert any("by `oidc:alex@example.com`" in m for m in texts(at))  # the champion card
    history = table_with(open_as("drift", signed_in("alex@example.com")), "event", "by")
    assert history.iloc[0][["event", "by"]].tolist() == ["promoted", "oidc:alex@example.com"]


def test_alert_settings_need_the_admin_role_when_signed_in(app_env, oidc):
    def add_channel(user: dict[str, Any]) -> AppTest:
        at = open_as("views/alerts.py", user)
        at.text_input(key="channel_name").input("desk")
        at.text_input(key="channel_url").input("json://127.0.0.1:9/alerts")
        next(b for b in at.button if b.label == "Add channel").click()
        return at.run()

    at = add_channel(signed_in("ana@example.com", roles=["analyst"]))
    assert any("needs the admin role" in e for e in alerts(at, "error"))
    assert read_from_db("SELECT count(*) AS n FROM alert_channels")["n"].iloc[0] == 0
    at = add_channel(signed_in("root@example.com"))
    assert not alerts(at, "error")
    added = read_from_db("SELECT name, created_by FROM alert_channels")
    assert added.iloc[0].tolist() == ["desk", "oidc:root@example.com"]


# ----------------------------------------------------------------------------- job runs
def test_job_runs_record_who_started_them(clean_tables, monkeypatch):
    monkeypatch.delenv(STARTED_BY_ENV, raising=False)
    with job_run("pipeline"):
        pass
    with job_run("pipeline", started_by="oidc:ana@example.com"):
        pass
    monkeypatch.setenv(STARTED_BY_ENV, "analyst:carol")
    with job_run("train_model"):
        pass
    runs = read_from_db("SELECT job, started_by FROM job_runs ORDER BY id").fillna("NULL")
    assert runs.values.tolist() == [
        ["pipeline", "NULL"],
        ["pipeline", "oidc:ana@example.com"],
        ["train_model", "analyst:carol"],
    ]
    listed = identity.job_runs_started(("pipeline",))
    assert listed["started_by"].fillna("NULL").tolist() == ["oidc:ana@example.com", "NULL"]


def test_a_retrain_from_the_app_records_the_analyst_on_its_job_runs(
    app_env, login_records, monkeypatch
):
    """The retrain form starts the pipeline process (here a stand-in recording its job run as
    `python -m ml.lifecycle.pipeline` does): the run names the analyst, and the lab lists it."""
    from tests.app.test_model_lab import fill_form, submit

    monkeypatch.setattr(retrain, "PIPELINE_MODULE", "tests.app.pipeline_stand_in")
    with job_run("pipeline"):  # a run of the schedule
        pass
    at = open_as("lab")
    at = submit(fill_form(at, "retrain", "carol", PASSWORD), "Retrain now")
    assert any("Training started" in s for s in alerts(at, "success"))
    launcher = retrain.launcher()
    deadline = time.monotonic() + 60
    while launcher.returncode is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert launcher.returncode == 0, launcher.last_log_line()
    runs = read_from_db("SELECT job, started_by, status FROM job_runs ORDER BY id").fillna("NULL")
    assert runs.values.tolist() == [
        ["pipeline", "NULL", "ok"],
        ["pipeline", "analyst:carol", "ok"],
    ]
    retrain.training_runs.clear()  # type: ignore[attr-defined]
    listed = retrain.training_runs()
    assert listed["started_by"].tolist() == ["analyst:carol", retrain.NOT_FROM_THE_APP]
    at = open_as("lab")
    shown = next(d.value for d in at.dataframe if "started_by" in d.value.columns)
    assert shown["started_by"].tolist() == ["analyst:carol", retrain.NOT_FROM_THE_APP]
    assert os.environ.get(STARTED_BY_ENV) is None  # set for the child process only


@pytest.mark.no_db
def test_the_launcher_refuses_to_serve_production_with_a_placeholder_secret(tmp_path):
    env = {
        **os.environ,
        "PROFILE": "production",
        "ANALYST_PASSWORD": "choose-a-password",
        "DATA_DIR": str(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "app.launch", "--server.port", "8699"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "ANALYST_PASSWORD" in proc.stderr and "choose-a-password" not in proc.stderr
