"""Least-privilege database roles: what the app and the workers may do in the database.

Three group roles (cluster-wide, created when missing; their privileges are per database):

- `stockpulse_worker` (NOLOGIN): the workers and the scheduled jobs (ingestors, the data-quality
  guard, backfill, corporate actions, reconciliation, scoring, outcomes, alerts, training,
  validation, drift). Reads every relation and writes every data table; reads the migration
  ledger; the sign-in records (`APP_ONLY`) are none of its business.
- `stockpulse_app` (NOLOGIN): the Streamlit app and the training its retrain button starts. Reads
  every relation and writes only what the app's actions write (`APP_WRITES`). It cannot write
  `bars_1m`: an analyst's rejection of a held ticker and acceptance of a quarantined bar go
  through `reject_hold` and `accept_quarantined_bar` (`FUNCTIONS`), SECURITY DEFINER functions
  of migration 0008, which do exactly those moves and nothing else.
- `stockpulse_aggregates` (TimescaleDB only): owns the continuous aggregates; the worker group is
  a member, so the refresh after each write of bars passes TimescaleDB's owner check. It may log
  in but has no password: TimescaleDB runs an aggregate's refresh policy as its owner, and a
  background job of a role that cannot log in fails.

Tables created later by the migrator are covered by default privileges: read by both groups,
written by the worker group. `apply(cur)` (migration 0008, and `create-logins` after every
migration run) brings the groups' privileges in the current database to exactly these rules.

python -m db.roles create-logins     as the database owner, after `python -m db.migrate up`:
    the rules applied, then the LOGIN users APP_DB_USER (default stockpulse_app_login, password
    APP_DB_PASSWORD) in the app group and WORKER_DB_USER (default stockpulse_worker_login,
    password WORKER_DB_PASSWORD) in the worker group created or updated. Passwords travel as
    SCRAM-SHA-256 verifiers, never in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from config.cli import job_parser, setup_logging
from config.secret_policy import MIN_SECRET_LENGTH, PLACEHOLDER_SECRETS
from db import timescale
from db.connections import connect

APP = "stockpulse_app"
WORKER = "stockpulse_worker"
AGGREGATES = "stockpulse_aggregates"
GROUPS = (APP, WORKER)
ROLES_MIGRATION = 8  # db/migrations/m0008_roles.py

# what the app's actions write (beyond reading everything), per table
APP_WRITES: dict[str, str] = {
    "model_events": "INSERT",  # promotions, rollbacks and pins (ml.models.registry)
    "model_evaluations": "INSERT",  # the retrain button's validation
    "job_runs": "INSERT, UPDATE",  # the retrain button's run
    "alert_events": "INSERT",  # a promotion's or rollback's alert
    "alert_channels": "INSERT, UPDATE",  # channels added, enabled, disabled
    "alert_rules": "INSERT, UPDATE",
    "ticker_holds": "UPDATE",  # decisions (a rejection through reject_hold)
    "quarantined_bars": "UPDATE",  # decisions (an acceptance through accept_quarantined_bar)
    "login_failures": "INSERT, UPDATE, DELETE",  # the local sign-in's lockouts
    "login_lockouts": "INSERT, UPDATE, DELETE",
}
APP_ONLY = frozenset({"login_failures", "login_lockouts"})
READ_ONLY = frozenset({"schema_migrations"})  # the migrator alone writes the ledger
WORKER_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
DEFAULT_PRIVILEGES = (
    ("SELECT", "TABLES", APP),
    (WORKER_TABLE_PRIVILEGES, "TABLES", WORKER),
    ("USAGE, SELECT", "SEQUENCES", WORKER),
)
# the SECURITY DEFINER functions of migration 0008 the app's decisions call
FUNCTIONS = (
    "reject_hold(bigint, text, text, text)",
    "accept_quarantined_bar(bigint, text, text)",
)
ROLE_ATTRIBUTES = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
# another session (a test session on the same server) created the same role or membership first
CONCURRENT_CREATION = "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;"
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")  # RFC 3986 unreserved: a URL's password as is


class RoleError(RuntimeError):
    """A login or password that cannot be used; the message names the variable."""


# --------------------------------------------------------------------- groups and grants
def apply(cur: Any) -> None:
    """Create the groups when missing and set their privileges in the current database (and
    schema) to exactly the rules of this module; idempotent. Needs a superuser."""
    schema = _scalar(cur, "SELECT current_schema()")
    for group in GROUPS:
        _ensure_role(cur, group, login=False)
    _revoke(cur, schema, GROUPS)
    _grant(cur, schema)
    for privileges, kind, role in DEFAULT_PRIVILEGES:
        grant = f"GRANT {privileges} ON {kind} TO {{}}"
        _execute(cur, "ALTER DEFAULT PRIVILEGES IN SCHEMA {} " + grant, schema, role)
    _own_aggregates(cur, schema)


def revoke(cur: Any) -> None:
    """Undo `apply` in the current database: every privilege of the groups here and their
    default privileges; the continuous aggregates back to the current user. The roles stay:
    other databases of the server may use them."""
    schema = _scalar(cur, "SELECT current_schema()")
    for view in _continuous_aggregates(cur, schema):
        _execute(cur, "ALTER MATERIALIZED VIEW {}.{} OWNER TO CURRENT_USER", schema, view)
    present = [r for r in (*GROUPS, AGGREGATES) if _role_exists(cur, r)]
    _revoke(cur, schema, present)
    for privileges, kind, role in DEFAULT_PRIVILEGES:
        if role in present:
            revoked = f"REVOKE {privileges} ON {kind} FROM {{}}"
            _execute(cur, "ALTER DEFAULT PRIVILEGES IN SCHEMA {} " + revoked, schema, role)


def _grant(cur: Any, schema: str) -> None:
    cur.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')",
        (schema,),
    )
    kinds = {str(name): str(kind) for name, kind in cur.fetchall()}
    tables = {n for n, k in kinds.items() if k in ("r", "p")}
    readable = {n for n, k in kinds.items() if k != "S"}
    sequences = {n for n, k in kinds.items() if k == "S"}
    database = _scalar(cur, "SELECT current_database()")
    for role in GROUPS:
        _execute(cur, "GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}", database, role)
        _execute(cur, "GRANT USAGE ON SCHEMA {} TO {}", schema, role)
    _grant_on(cur, "TABLE", "SELECT", readable, schema, APP)
    for table, privileges in APP_WRITES.items():
        _grant_on(cur, "TABLE", privileges, {table} & tables, schema, APP)
    inserted = [t for t, p in APP_WRITES.items() if "INSERT" in p and t in tables]
    _grant_on(cur, "SEQUENCE", "USAGE", _owned_sequences(cur, schema, inserted), schema, APP)
    _grant_on(cur, "TABLE", "SELECT", readable - APP_ONLY, schema, WORKER)
    written = tables - APP_ONLY - READ_ONLY
    _grant_on(cur, "TABLE", WORKER_TABLE_PRIVILEGES, written, schema, WORKER)
    app_only = _owned_sequences(cur, schema, sorted(APP_ONLY & tables))
    _grant_on(cur, "SEQUENCE", "USAGE, SELECT", sequences - app_only, schema, WORKER)
    for function in FUNCTIONS:
        target = sql.SQL("FUNCTION {}." + function).format(sql.Identifier(schema))
        cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(target))
        cur.execute(sql.SQL("GRANT EXECUTE ON {} TO {}").format(target, sql.Identifier(APP)))


def _revoke(cur: Any, schema: str, roles: Iterable[str]) -> None:
    """Every privilege of `roles` on this schema, its tables, sequences and the functions, and
    on this database. `roles` own nothing here (an owner would lose its own privileges)."""
    roles = list(roles)
    if not roles:
        return
    names = sql.SQL(", ").join(sql.Identifier(r) for r in roles)
    database = sql.Identifier(_scalar(cur, "SELECT current_database()"))
    ident = sql.Identifier(schema)
    for kind in ("TABLES", "SEQUENCES"):
        revoked = sql.SQL("REVOKE ALL ON ALL " + kind + " IN SCHEMA {} FROM {}")
        cur.execute(revoked.format(ident, names))
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(ident, names))
    cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(database, names))
    for function in FUNCTIONS:
        qualified = f"{ident.as_string(cur)}.{function}"
        if _scalar(cur, "SELECT to_regprocedure(%s) IS NOT NULL", (qualified,)):
            target = sql.SQL("FUNCTION {}." + function).format(ident)
            cur.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(target, names))


def _own_aggregates(cur: Any, schema: str) -> None:
    """TimescaleDB: the continuous aggregates owned by AGGREGATES, of which the worker group is
    a member, so that the workers' refreshes pass the owner check."""
    views = _continuous_aggregates(cur, schema)
    if not views:
        return
    _ensure_role(cur, AGGREGATES, login=True)
    _ensure_member(cur, AGGREGATES, WORKER)
    _execute(cur, "GRANT USAGE ON SCHEMA {} TO {}", schema, AGGREGATES)
    _execute(cur, "GRANT SELECT ON TABLE {}.bars_1m TO {}", schema, AGGREGATES)
    for view, owner in views.items():
        if owner != AGGREGATES:
            _execute(cur, "ALTER MATERIALIZED VIEW {}.{} OWNER TO {}", schema, view, AGGREGATES)


def _continuous_aggregates(cur: Any, schema: str) -> dict[str, str]:
    """The continuous aggregates of `schema` and their owners (none without TimescaleDB)."""
    if timescale.installed(cur) is None:
        return {}
    cur.execute(
        "SELECT view_name, view_owner FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = %s",
        (schema,),
    )
    return {str(view): str(owner) for view, owner in cur.fetchall()}


def _owned_sequences(cur: Any, schema: str, tables: Iterable[str]) -> set[str]:
    """The sequences behind the serial or identity columns of `tables`."""
    cur.execute(
        "SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
        "AND d.deptype IN ('a', 'i') AND n.nspname = %s AND t.relname = ANY(%s)",
        (schema, list(tables)),
    )
    return {str(row[0]) for row in cur.fetchall()}


# --------------------------------------------------------------------- roles
def _ensure_role(cur: Any, name: str, *, login: bool) -> None:
    """Role `name` exists with exactly the attributes of a StockPulse group (LOGIN when asked,
    no password). Concurrent creations (test sessions on one server) are tolerated."""
    cur.execute(
        "SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls "
        "OR NOT rolinherit, rolcanlogin FROM pg_roles WHERE rolname = %s",
        (name,),
    )
    row = cur.fetchone()
    attributes = f"{'LOGIN' if login else 'NOLOGIN'} {ROLE_ATTRIBUTES} PASSWORD NULL"
    if row is None:
        create = "CREATE ROLE {} " + attributes
        _execute(cur, f"DO $$ BEGIN {create}; {CONCURRENT_CREATION} END $$", name)
    elif row[0] or bool(row[1]) != login:
        _execute(cur, "ALTER ROLE {} " + attributes, name)


def _ensure_member(cur: Any, group: str, member: str) -> None:
    if not _is_member(cur, group, member):
        _execute(
            cur, f"DO $$ BEGIN GRANT {{}} TO {{}}; {CONCURRENT_CREATION} END $$", group, member
        )


def _is_member(cur: Any, group: str, member: str) -> bool:
    return bool(
        _scalar(
            cur,
            "SELECT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s AND u.rolname = %s)",
            (group, member),
        )
    )


def _role_exists(cur: Any, name: str) -> bool:
    return bool(_scalar(cur, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (name,)))


# --------------------------------------------------------------------- logins
@dataclass(frozen=True)
class LoginSpec:
    """A LOGIN user of one group, named and given its password by environment variables."""

    group: str
    user_variable: str
    password_variable: str
    default_user: str


LOGINS = (
    LoginSpec(APP, "APP_DB_USER", "APP_DB_PASSWORD", "stockpulse_app_login"),
    LoginSpec(WORKER, "WORKER_DB_USER", "WORKER_DB_PASSWORD", "stockpulse_worker_login"),
)


def check_password(variable: str, password: str) -> None:
    """Refuse a placeholder, default or short password, or one a URL cannot carry as is."""
    if password.lower() in PLACEHOLDER_SECRETS or len(password) < MIN_SECRET_LENGTH:
        raise RoleError(
            f"set {variable}: placeholder, default or short passwords are refused "
            f"(at least {MIN_SECRET_LENGTH} characters, e.g. `openssl rand -hex 24`)"
        )
    if not URL_SAFE.fullmatch(password):
        raise RoleError(
            f"set {variable}: use letters, digits and - . _ ~ only (it goes into DATABASE_URL)"
        )


def scram_sha256(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of `password` (what `pg_authid` stores), so the
    password itself never reaches the server or its logs. `password` is URL-safe ASCII, which
    SASLprep leaves as it is."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def ensure_login(cur: Any, name: str, password: str, group: str) -> None:
    """Create or update LOGIN user `name` with `password`, a member of `group` and of no other
    StockPulse group. Refuses the groups' own names, the current user and any role with
    privileges of its own (a superuser, the replication role, ...), which it would take away."""
    current = _scalar(cur, "SELECT current_user")
    if name in (*GROUPS, AGGREGATES) or name == current:
        raise RoleError(f"{name!r} cannot be a login of {group}: choose a name of its own")
    cur.execute(
        "SELECT rolsuper, rolreplication OR rolcreaterole OR rolcreatedb OR rolbypassrls "
        "FROM pg_roles WHERE rolname = %s",
        (name,),
    )
    row = cur.fetchone()
    if row is not None and (row[0] or row[1]):
        kind = "a superuser" if row[0] else "a role with privileges of its own"
        raise RoleError(f"{name!r} is {kind}: a StockPulse login must be a role of its own")
    verb = "CREATE" if row is None else "ALTER"
    cur.execute(
        sql.SQL(verb + " ROLE {} WITH LOGIN " + ROLE_ATTRIBUTES + " PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(scram_sha256(password))
        )
    )
    _ensure_member(cur, group, name)
    for other in (*GROUPS, AGGREGATES):
        if other != group and _is_member(cur, other, name):
            _execute(cur, "REVOKE {} FROM {}", other, name)


def create_logins(logins: Iterable[tuple[LoginSpec, str, str]]) -> None:
    """Apply the rules, then create or update each (spec, user, password), in one transaction."""
    with connect() as conn:
        cur = conn.connection.cursor()
        applied = _scalar(cur, "SELECT to_regclass('schema_migrations') IS NOT NULL") and (
            _scalar(
                cur,
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = %s)",
                (ROLES_MIGRATION,),
            )
        )
        if not applied:
            raise RoleError("the schema is not up to date: run `python -m db.migrate up` first")
        apply(cur)
        for spec, user, password in logins:
            ensure_login(cur, user, password, spec.group)


def logins_from_environment(env: dict[str, str]) -> list[tuple[LoginSpec, str, str]]:
    """(spec, user, password) of each login from the environment; RoleError naming the
    variable when a password is missing or weak, or two logins share a name."""
    out = []
    for spec in LOGINS:
        password = env.get(spec.password_variable, "")
        check_password(spec.password_variable, password)
        out.append((spec, env.get(spec.user_variable) or spec.default_user, password))
    names = [user for _, user, _ in out]
    if len(set(names)) != len(names):
        raise RoleError(f"{' and '.join(s.user_variable for s in LOGINS)} must differ")
    return out


# --------------------------------------------------------------------- helpers
def _execute(cur: Any, template: str, *names: str) -> None:
    """`template` with each {} an identifier from `names` (fixed SQL otherwise)."""
    cur.execute(sql.SQL(template).format(*(sql.Identifier(n) for n in names)))


def _grant_on(
    cur: Any, kind: str, privileges: str, names: Iterable[str], schema: str, role: str
) -> None:
    ordered = sorted(names)
    if ordered:
        objects = sql.SQL(", ").join(sql.Identifier(schema, n) for n in ordered)
        cur.execute(
            sql.SQL("GRANT " + privileges + " ON " + kind + " {} TO {}").format(
                objects, sql.Identifier(role)
            )
        )


def _scalar(cur: Any, query: str, params: tuple[Any, ...] | None = None) -> Any:
    cur.execute(query, params)
    return cur.fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("db.roles", __doc__)
    parser.add_argument("action", choices=["create-logins"])
    parser.parse_args(argv)
    setup_logging("db.roles")
    try:
        logins = logins_from_environment(dict(os.environ))
        create_logins(logins)
    except RoleError as exc:
        print(f"not done: {exc}", file=sys.stderr)
        return 2
    for spec, user, _ in logins:
        print(f"{user}: LOGIN in {spec.group}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
