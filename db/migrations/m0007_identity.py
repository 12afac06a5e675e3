"""Identity: failed analyst passwords, lockouts per source address, and who started a job run.

- `login_failures`: one row per wrong analyst password (the local profile's sign-in): when, the
  source address and the name typed (never the password).
- `login_lockouts`: one row per source address that has failed: `counted_from` (failures before
  it no longer count: set by a correct password and when a lockout ends) and `locked_until`
  (attempts from that address are refused until then, without checking the password).
- `job_runs.started_by`: the identity that started a run (`oidc:<email>`, `analyst:<name>`);
  NULL for runs of the schedule or the command line.
"""

from __future__ import annotations

NAME = "identity: login failures, lockouts, job_runs.started_by"

UP = [
    """CREATE TABLE login_failures (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        source text NOT NULL,
        name text NOT NULL
    )""",
    "CREATE INDEX login_failures_source_idx ON login_failures (source, at)",
    """CREATE TABLE login_lockouts (
        source text PRIMARY KEY,
        counted_from timestamptz NOT NULL DEFAULT '-infinity',
        locked_until timestamptz
    )""",
    "ALTER TABLE job_runs ADD COLUMN started_by text",
]

DOWN = [
    "ALTER TABLE job_runs DROP COLUMN IF EXISTS started_by",
    "DROP TABLE IF EXISTS login_lockouts",
    "DROP TABLE IF EXISTS login_failures",
]
