"""docker-compose.yml, checked without Docker: the `replica` profile's standby and its wiring."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy.engine import make_url

from config.settings import load_settings
from tests.orchestration.compose_support import (
    PRODUCTION_ENV,
    REPLICA_ENV,
    REPLICA_SERVICES,
    as_dict,
    interpolate,
)

pytestmark = pytest.mark.no_db


def test_the_replica_services_run_only_under_the_replica_profile(compose):
    profiled = {
        name: svc["profiles"] for name, svc in compose["services"].items() if "profiles" in svc
    }
    # the app's DATABASE_READ_URL keys on COMPOSE_PROFILES being set: `replica` must stay the
    # file's only profile (another one would point the app at a replica that is not running)
    assert profiled == {name: ["replica"] for name in REPLICA_SERVICES}


def test_the_replica_is_a_standby_of_the_primary_with_its_own_volume(compose):
    services = compose["services"]
    primary, setup, replica = (
        services[n] for n in ("timescaledb", "timescaledb-replica-setup", "timescaledb-replica")
    )
    assert replica["image"] == setup["image"] == primary["image"]
    healthy = {"condition": "service_healthy"}
    assert setup["depends_on"] == {"timescaledb": healthy}
    assert replica["depends_on"] == {
        "timescaledb": healthy,
        "timescaledb-replica-setup": {"condition": "service_completed_successfully"},
    }
    env, setup_env = as_dict(replica["environment"]), as_dict(setup["environment"])
    assert env["PRIMARY_HOST"] == setup_env["PGHOST"] == "timescaledb"
    assert env["REPLICATION_USER"] == setup_env["REPLICATION_USER"] == "replicator"
    assert env["REPLICATION_SLOT"] == setup_env["REPLICATION_SLOT"]
    script = replica["command"][0]
    assert "pg_basebackup" in script and "-R -X stream" in script
    assert '-S "$REPLICATION_SLOT"' in script and script.rstrip().endswith("exec postgres")
    assert "pg_create_physical_replication_slot(:'slot', true)" in setup["command"][0]
    mounts = dict(v.split(":", 1) for v in replica["volumes"])
    assert mounts == {"tsreplica": "/var/lib/postgresql"} and "tsreplica" in compose["volumes"]
    assert replica["user"] == "postgres", "PostgreSQL refuses to run as root"
    assert "pg_isready" in replica["healthcheck"]["test"][1]


def test_the_primary_accepts_replication_only_from_the_replication_role(compose):
    primary = compose["services"]["timescaledb"]
    hba_target = "/etc/stockpulse/pg_hba.conf"
    assert f"hba_file={hba_target}" in primary["command"]
    assert primary["configs"] == [{"source": "primary_hba", "target": hba_target}]
    rules = [
        line.split()
        for line in compose["configs"]["primary_hba"]["content"].splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    remote = [r for r in rules if r[0] == "host" and r[3] not in ("127.0.0.1/32", "::1/128")]
    assert remote == [
        ["host", "replication", "replicator", "all", "scram-sha-256"],
        ["host", "all", "all", "all", "scram-sha-256"],
    ], "from the network: passwords only, and replication for the replication role only"


def test_the_replication_password_never_appears_on_a_command_line(raw):
    compose = interpolate(raw, REPLICA_ENV)
    secrets = [REPLICA_ENV["REPLICATION_PASSWORD"], REPLICA_ENV["POSTGRES_PASSWORD"]]
    for name, svc in compose["services"].items():
        argv = json.dumps([svc.get("entrypoint"), svc.get("command"), svc.get("healthcheck")])
        assert not any(secret in argv for secret in secrets), name
    # the scripts read it from their own environment: required, then handed to libpq / psql
    # through the environment, never as an argument
    allowed = (
        r': "\$\{REPLICATION_PASSWORD:\?[^}]+\}"',
        r'PGPASSWORD="\$REPLICATION_PASSWORD" pg_basebackup ',
        r"\\getenv password REPLICATION_PASSWORD$",
    )
    for name in sorted(REPLICA_SERVICES):
        lines = [
            line.strip()
            for line in compose["services"][name]["command"][0].splitlines()
            if "REPLICATION_PASSWORD" in line
        ]
        assert lines and all(any(re.match(a, line) for a in allowed) for line in lines), lines


def test_the_default_start_needs_no_replica_settings(raw):
    compose = interpolate(raw, PRODUCTION_ENV)  # no COMPOSE_PROFILES, no REPLICATION_PASSWORD
    for name in REPLICA_SERVICES:
        assert as_dict(compose["services"][name]["environment"])["REPLICATION_PASSWORD"] == ""


def test_the_app_reads_from_the_replica_only_with_the_profile(raw, monkeypatch):
    from db.connections import read_replica_url

    plain = as_dict(interpolate(raw, PRODUCTION_ENV)["services"]["app"]["environment"])
    replica = as_dict(interpolate(raw, REPLICA_ENV)["services"]["app"]["environment"])
    assert plain["DATABASE_READ_URL"] == ""
    read, write = make_url(replica["DATABASE_READ_URL"]), make_url(replica["DATABASE_URL"])
    assert (read.host, read.port) == ("timescaledb-replica", 5432)
    assert (read.username, read.password, read.database) == (
        write.username,
        write.password,
        write.database,
    )
    for env, host in ((plain, None), (replica, "timescaledb-replica")):
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        url = read_replica_url(load_settings())
        assert (url and make_url(url).host) == host
