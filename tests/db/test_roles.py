"""Least-privilege roles (`db.roles`, migration 0008), tried by logging in as members of each
group: the app reads everything but cannot write bars, while its actions (registry events, the
retrain button's runs, alert channels, sign-in records, the analysts' decisions) work; the
workers write bars and refresh the aggregates. The test server trusts local connections, so a
login connects with any password; the passwords themselves are checked as SCRAM verifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from config.settings import get_settings
from db import alert_channels, quality, quality_decisions, roles
from db.bars import interval_bars, read_bars
from db.connections import autocommit_cursor, connect, dispose_engine, execute
from db.flavour import has_aggregates, refresh_aggregates
from db.models import model_events, record_model_event, store_evaluation
from db.ops import heartbeat, job_run
from db.reads import read_from_db
from db.writes import write_to_db
from workers.bar_store import write_bars
from workers.sources.simulated import SimulatedMarket

SESSION = pd.Timestamp("2026-10-06")
PASSWORD = secrets.token_hex(16)


def session_bars(ticker: str, seed: int = 5) -> pd.DataFrame:
    return SimulatedMarket(seed=seed).session_bars(ticker, SESSION)


def refused(call: Callable[[], Any]) -> None:
    """`call` fails with PostgreSQL's permission error."""
    with pytest.raises((DBAPIError, psycopg2.Error)) as caught:
        call()
    error = getattr(caught.value, "orig", caught.value)
    assert isinstance(error, psycopg2.errors.InsufficientPrivilege), error


@pytest.fixture
def admin(test_database: str) -> Iterator[Any]:
    """A superuser cursor on the session's database, outside the pool."""
    url = make_url(test_database).set(drivername="postgresql")
    conn = psycopg2.connect(url.render_as_string(hide_password=False))
    conn.autocommit = True
    try:
        yield conn.cursor()
    finally:
        conn.close()


@pytest.fixture
def login_as(
    test_database: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], str]]:
    """Point this process's DATABASE_URL at a new LOGIN user of a group; dropped afterwards.
    The rules are applied again first (as `create-logins` does), which also proves them
    idempotent and undoes other tests' aggregates made afresh by the superuser."""
    roles.apply(admin)
    created: list[str] = []

    def switch(group: str) -> str:
        name = f"test_{group.removeprefix('stockpulse_')}_{secrets.token_hex(4)}"
        roles.ensure_login(admin, name, PASSWORD, group)
        created.append(name)
        url = make_url(test_database).set(username=name, password=PASSWORD)
        monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
        get_settings.cache_clear()
        dispose_engine()
        return name

    yield switch
    dispose_engine()
    for name in created:
        drop_login(admin, name)


def drop_login(admin: Any, name: str) -> None:
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (name,))
        if admin.fetchone()[0] == 0:
            break
        time.sleep(0.1)
    admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def relations() -> list[str]:
    """Every table and view of the schema (the continuous aggregates included)."""
    return read_from_db(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = "
        "CAST(current_schema() AS regnamespace) AND c.relkind IN ('r', 'p', 'v', 'm') "
        "ORDER BY 1"
    )["relname"].tolist()


def internal_writes() -> int:
    """Relations of TimescaleDB's internal schema (chunks, compressed chunks, materialized
    aggregates) the current user may insert into, update or delete from."""
    return int(
        read_from_db(
            "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = '_timescaledb_internal' AND c.relkind IN ('r', 'p') AND ("
            "has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE') "
            "OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE'))"
        )["n"].iloc[0]
    )


def compress_history() -> None:
    if has_aggregates():
        execute("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('bars_1m') c")


# --------------------------------------------------------------------------- the app
def test_the_app_reads_everything_and_cannot_write_bars(clean_tables, login_as):  # type: ignore[no-untyped-def]
    stored = write_to_db(session_bars("KO"), table="bars_1m")
    start, end = SESSION.tz_localize("UTC"), SESSION.tz_localize("UTC") + pd.Timedelta(days=1)
    refresh_aggregates(start, end)  # as the bar write path does after every write
    compress_history()
    login_as(roles.APP)
    for name in relations():  # every relation the pages could read
        read_from_db(f'SELECT count(*) AS n FROM "{name}"')  # noqa: S608 (catalog names)
    assert len(read_bars(["KO"], start, end)) == stored  # compressed history
    assert not interval_bars("KO", "1h", start, end).empty  # the aggregates
    refused(lambda: write_to_db(session_bars("AAPL"), table="bars_1m"))
    refused(lambda: execute("UPDATE bars_1m SET close = close * 2"))
    refused(lambda: execute("DELETE FROM bars_1m"))
    refused(lambda: execute("TRUNCATE bars_1m"))
    refused(lambda: execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'x')"))
    assert internal_writes() == 0, "no write reaches the bars through TimescaleDB's internals"
    assert len(read_from_db("SELECT ts FROM bars_1m WHERE ticker = 'KO'")) == stored


def hold_ko_and_quarantine_two_msft_prints() -> pd.DataFrame:
    """A session of KO bars stored and KO held from its 301st bar on (a level shift); two MSFT
    prints quarantined as spikes. Returns KO's bars."""
    bars = session_bars("KO")
    write_to_db(bars, table="bars_1m")
    onset = pd.Timestamp(bars["ts"].iloc[300])
    hold = pd.DataFrame(
        [{"ticker": "KO", "onset_ts": onset, "reason": "level_shift", "detail": "halved"}]
    ).assign(source="simulated")
    suspect = (
        session_bars("MSFT")
        .iloc[[10, 11]]
        .assign(source="simulated", reason="spike", detail="a spike")
    )
    with connect() as conn:
        quality.hold_tickers(conn, hold)
        quality.quarantine(conn, suspect)
    return bars


def test_the_apps_actions_write_what_they_need(clean_tables, login_as, admin):  # type: ignore[no-untyped-def]
    bars = hold_ko_and_quarantine_two_msft_prints()
    login_as(roles.APP)

    # the model lab and the retrain button's pipeline
    record_model_event("promoted", "v2", "v1", "analyst:ann", "beats the champion")
    store_evaluation("v2", "v1", True, {"gate": "passed"})
    with job_run("pipeline", started_by="analyst:ann") as run:
        run.note("trained v2")
    assert model_events()["version"].tolist() == ["v2"]
    # alert channels and rules
    alert_channels.add_channel(name="desk", url="json://localhost/hook", actor="analyst:ann")
    assert alert_channels.set_channel_enabled("desk", False, "analyst:ann")
    rule = alert_channels.add_rule(channel="desk", kinds=["promotion"], actor="analyst:ann")
    assert alert_channels.set_rule_enabled(rule, False, "analyst:ann")
    # the local sign-in's records
    execute("INSERT INTO login_failures (source, name) VALUES ('10.0.0.9', 'ann')")
    execute("INSERT INTO login_lockouts (source) VALUES ('10.0.0.9')")
    execute("UPDATE login_lockouts SET counted_from = now() WHERE source = '10.0.0.9'")

    # the analysts' decisions, two of which move bars in and out of bars_1m
    hold_id = int(quality.held_tickers()["id"].iloc[0])
    said = quality_decisions.decide_hold(
        hold_id, "rejected", "analyst:ann", "the source halved its history"
    )
    assert f"{len(bars) - 300} bar(s) moved to quarantine" in said
    first, second = quality.quarantined()["id"].sort_values().tolist()
    quality_decisions.decide_bar(first, "accepted", "analyst:ann", "a real print")
    quality_decisions.decide_bar(second, "rejected", "analyst:ann", "a bad print")
    with pytest.raises(quality_decisions.DecisionError, match="already"):
        quality_decisions.decide_hold(hold_id, "accepted", "analyst:bob", "changed mind")

    admin.execute("SELECT count(*), max(ts) FROM bars_1m WHERE ticker = 'KO'")
    assert admin.fetchone() == (300, bars["ts"].iloc[299].to_pydatetime())
    admin.execute(
        "SELECT status, reason, count(*) FROM quarantined_bars GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert admin.fetchall() == [
        ("accepted", "spike", 1),
        ("rejected", "level_shift", len(bars) - 300),
        ("rejected", "spike", 1),
    ]
    admin.execute("SELECT status, decided_by FROM ticker_holds")
    assert admin.fetchall() == [("rejected", "analyst:ann")]
    admin.execute("SELECT count(*) FROM bars_1m WHERE ticker = 'MSFT'")
    assert admin.fetchone() == (1,)  # the accepted print
    admin.execute("SELECT kind FROM alert_events")
    assert admin.fetchall() == [("promotion",)]
    admin.execute("SELECT status, started_by FROM job_runs")
    assert admin.fetchall() == [("ok", "analyst:ann")]


def test_only_the_app_group_executes_the_definer_functions(login_as, admin):  # type: ignore[no-untyped-def]
    worker = login_as(roles.WORKER)
    app = login_as(roles.APP)
    for function in roles.FUNCTIONS:
        admin.execute(
            "SELECT p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner) = current_user, "
            "has_function_privilege(%s, p.oid, 'EXECUTE'), "
            "has_function_privilege(%s, p.oid, 'EXECUTE'), "
            "EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) "
            "FROM pg_proc p WHERE p.oid = to_regprocedure(%s)",
            (app, worker, function),
        )
        assert admin.fetchone() == (
            True,
            ["search_path=pg_catalog, pg_temp"],
            True,
            True,
            False,
            False,  # not PUBLIC
        ), function


# --------------------------------------------------------------------------- the workers
def test_the_workers_write_bars_into_new_and_compressed_chunks(clean_tables, login_as, admin):  # type: ignore[no-untyped-def]
    write_to_db(session_bars("KO"), table="bars_1m")
    compress_history()
    login_as(roles.WORKER)
    aapl, ko = session_bars("AAPL"), session_bars("KO")
    assert write_bars(aapl, source="simulated") == len(aapl)  # refreshes the aggregates
    corrected = ko.assign(close=ko["close"] * 1.001)
    corrected["high"] = corrected[["high", "close"]].max(axis=1)
    assert write_to_db(corrected, table="bars_1m") == len(ko)  # compressed history rewritten
    heartbeat("price_ingestor")
    with job_run("backfill"):
        pass
    if has_aggregates():
        with autocommit_cursor() as cur:
            cur.execute("CALL refresh_continuous_aggregate('bars_1h', NULL, NULL)")
    refused(lambda: execute("INSERT INTO login_failures (source, name) VALUES ('x', 'y')"))
    refused(lambda: execute("DELETE FROM schema_migrations"))
    admin.execute("SELECT ticker, count(*) FROM bars_1m GROUP BY 1 ORDER BY 1")
    assert admin.fetchall() == [("AAPL", len(aapl)), ("KO", len(ko))]
    if has_aggregates():  # every chunk carries the hypertable's grants
        admin.execute(
            "SELECT bool_and(has_table_privilege(%s, c, 'INSERT')), "
            "bool_and(has_table_privilege(%s, c, 'SELECT')), "
            "bool_or(has_table_privilege(%s, c, 'INSERT')) FROM show_chunks('bars_1m') c",
            (roles.WORKER, roles.APP, roles.APP),
        )
        assert admin.fetchone() == (True, True, False)


# --------------------------------------------------------------------------- the logins
def test_create_logins_makes_each_login_a_member_of_its_group_only(admin, monkeypatch):  # type: ignore[no-untyped-def]
    names = {spec.group: f"test_login_{secrets.token_hex(4)}" for spec in roles.LOGINS}
    passwords = {spec.group: secrets.token_hex(12) for spec in roles.LOGINS}
    for spec in roles.LOGINS:
        monkeypatch.setenv(spec.user_variable, names[spec.group])
        monkeypatch.setenv(spec.password_variable, passwords[spec.group])
    try:
        assert roles.main(["create-logins"]) == 0
        passwords[roles.APP] = secrets.token_hex(12)  # a second run updates the password
        monkeypatch.setenv("APP_DB_PASSWORD", passwords[roles.APP])
        assert roles.main(["create-logins"]) == 0
        for group, name in names.items():
            admin.execute(
                "SELECT r.rolcanlogin, r.rolsuper, r.rolcreaterole, a.rolpassword, "
                "ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "WHERE m.member = r.oid) FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid "
                "WHERE r.rolname = %s",
                (name,),
            )
            login, superuser, createrole, stored, groups = admin.fetchone()
            assert (login, superuser, createrole, groups) == (True, False, False, [group])
            # the server kept the verifier as sent, and it is the password's
            iterations, salt = stored.split("$")[1].split(":")
            expected = roles.scram_sha256(
                passwords[group], salt=base64.b64decode(salt), iterations=int(iterations)
            )
            assert stored == expected
    finally:
        for name in names.values():
            drop_login(admin, name)


SUPERUSER = "<a superuser>"
REPLICATOR = "<a replication role>"
CURRENT_USER = "<the current user>"
APP_LOGIN = "<the app's login>"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("APP_DB_PASSWORD", "", "set APP_DB_PASSWORD: placeholder"),
        ("WORKER_DB_PASSWORD", "choose-a-long-random-password", "set WORKER_DB_PASSWORD"),
        ("APP_DB_PASSWORD", "short", "at least 12 characters"),
        ("WORKER_DB_PASSWORD", "0123456789ab@cdef", "URL"),
        ("APP_DB_USER", SUPERUSER, "is a superuser"),
        ("WORKER_DB_USER", REPLICATOR, "privileges of its own"),
        ("APP_DB_USER", CURRENT_USER, "choose a name of its own"),
        ("APP_DB_USER", roles.WORKER, "choose a name of its own"),
        ("WORKER_DB_USER", APP_LOGIN, "must differ"),
    ],
)
def test_create_logins_refuses_what_it_must_not_do(  # type: ignore[no-untyped-def]
    monkeypatch, capsys, admin, variable, value, message
):
    for spec in roles.LOGINS:
        monkeypatch.setenv(spec.user_variable, f"test_refused_{secrets.token_hex(4)}")
        monkeypatch.setenv(spec.password_variable, secrets.token_hex(12))
    other = f"test_other_{secrets.token_hex(4)}"  # a role of the server that is not ours
    if value in (SUPERUSER, REPLICATOR):
        attribute = "SUPERUSER" if value == SUPERUSER else "LOGIN REPLICATION"
        admin.execute(f'CREATE ROLE "{other}" {attribute}')
        value = other
    elif value == CURRENT_USER:
        admin.execute("SELECT current_user")
        value = admin.fetchone()[0]
    elif value == APP_LOGIN:
        value = os.environ["APP_DB_USER"]
    monkeypatch.setenv(variable, value)
    attributes = "SELECT rolsuper, rolreplication, rolcanlogin FROM pg_roles WHERE rolname = %s"
    admin.execute(attributes, (value,))
    before = admin.fetchone()
    try:
        assert roles.main(["create-logins"]) == 2
        assert message in capsys.readouterr().err
        admin.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'test_refused_%%'")
        assert admin.fetchone() == (0,), "nothing was created"
        admin.execute(attributes, (value,))
        assert admin.fetchone() == before, "an existing role keeps its attributes"
    finally:
        admin.execute(f'DROP ROLE IF EXISTS "{other}"')


@pytest.mark.no_db
def test_the_scram_verifier_matches_rfc_7677() -> None:
    """The example exchange of RFC 7677 (user "user", password "pencil"): the server's
    signature computed from the verifier's ServerKey, and the client's proof checked against
    its StoredKey, are the RFC's."""
    verifier = roles.scram_sha256(
        "pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), iterations=4096
    )
    head, keys = verifier.rsplit("$", 1)
    assert head == "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = (
        f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        f"c=biws,r={nonce}"
    ).encode()
    server_signature = hmac.digest(server_key, auth_message, "sha256")
    assert base64.b64encode(server_signature) == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.digest(stored_key, auth_message, "sha256")
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
