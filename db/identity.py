"""Who did what: failed analyst passwords and lockouts per source address, and who started runs.

The lockout state is kept in the database (migration 0007), so it holds across app restarts,
every session and every app server. Every statement runs on the primary (`connect`), never on a
read replica: a lockout must be seen the moment it starts.

- `record_failure(source, name, ...)`: store a wrong password and, at `max_failures` failures from
  `source` within the window, lock that source out.
- `locked_until(source)`: the end of the source's lockout, or None when it may try.
- `record_success(source)`: a correct password: earlier failures from the source stop counting.
- `job_runs_started(jobs, limit)`: the latest runs of some jobs, with who started each.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import text

from db.connections import connect

NAME_MAX_CHARS = 100  # the name typed is stored shortened (the form takes 40)


@dataclass(frozen=True)
class FailureCount:
    """A stored failure: how many count now (this one included) and, when this failure
    reached the limit, the end of the lockout it started."""

    failures: int
    locked_until: pd.Timestamp | None


def _timestamp(value: object) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).tz_convert("UTC")


def locked_until(source: str) -> pd.Timestamp | None:
    """The end of `source`'s lockout when one is running now, else None."""
    with connect() as conn:
        until = conn.execute(
            text(
                "SELECT locked_until FROM login_lockouts WHERE source = :s AND locked_until > now()"
            ),
            {"s": source},
        ).scalar_one_or_none()
    return _timestamp(until)


def record_failure(
    source: str, name: str, *, max_failures: int, window_s: float, lockout_s: float
) -> FailureCount:
    """Store a wrong password from `source` for `name`; when `max_failures` failures from
    `source` fall within the last `window_s` seconds (and after its last correct password or
    lockout), lock `source` out for `lockout_s` seconds. The source's row is locked while
    counting, so concurrent failures are counted once each."""
    params = {"s": source, "n": name[:NAME_MAX_CHARS], "w": window_s, "l": lockout_s}
    with connect() as conn:
        conn.execute(
            text("INSERT INTO login_lockouts (source) VALUES (:s) ON CONFLICT DO NOTHING"), params
        )
        conn.execute(
            text("SELECT 1 FROM login_lockouts WHERE source = :s FOR UPDATE"), params
        ).scalar_one()
        conn.execute(text("INSERT INTO login_failures (source, name) VALUES (:s, :n)"), params)
        failures = conn.execute(
            text(
                "SELECT count(*) FROM login_failures f JOIN login_lockouts l USING (source) "
                "WHERE f.source = :s AND f.at > l.counted_from "
                "AND f.at > now() - make_interval(secs => :w)"
            ),
            params,
        ).scalar_one()
        until = None
        if int(failures) >= max_failures:
            until = conn.execute(
                text(
                    "UPDATE login_lockouts SET locked_until = now() + make_interval(secs => :l), "
                    "counted_from = now() + make_interval(secs => :l) "
                    "WHERE source = :s RETURNING locked_until"
                ),
                params,
            ).scalar_one()
    return FailureCount(int(failures), _timestamp(until))


def record_success(source: str) -> None:
    """A correct password from `source`: its earlier failures no longer count."""
    with connect() as conn:
        conn.execute(
            text("UPDATE login_lockouts SET counted_from = now() WHERE source = :s"),
            {"s": source},
        )


def login_failures(source: str, limit: int = 100) -> pd.DataFrame:
    """The latest failures from `source`, newest first: at, source, name."""
    with connect() as conn:
        rows = conn.execute(
            text(
                "SELECT at, source, name FROM login_failures WHERE source = :s "
                "ORDER BY at DESC, id DESC LIMIT :n"
            ),
            {"s": source, "n": limit},
        ).all()
    frame = pd.DataFrame(rows, columns=["at", "source", "name"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def job_runs_started(jobs: tuple[str, ...], limit: int = 10) -> pd.DataFrame:
    """The latest runs of `jobs`, newest first: id, job, started_at, finished_at, status,
    message, started_by (NULL: the schedule or the command line)."""
    columns = ["id", "job", "started_at", "finished_at", "status", "message", "started_by"]
    with connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, job, started_at, finished_at, status, message, started_by "
                "FROM job_runs WHERE job = ANY(:jobs) ORDER BY started_at DESC, id DESC LIMIT :n"
            ),
            {"jobs": list(jobs), "n": limit},
        ).all()
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("started_at", "finished_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame
