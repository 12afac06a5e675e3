"""Shared pieces of the docker-compose.yml tests: the file's variables and Compose's
interpolation of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message},
# ${NAME:+replacement}, ${NAME+replacement} (nested one level); $$ is a literal $
VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")
PRODUCTION_ENV = {
    "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef",
    "APP_DB_PASSWORD": "a1b2c3d4e5f6a7b8c9d0e1f2",
    "WORKER_DB_PASSWORD": "f9e8d7c6b5a4f3e2d1c0b9a8",
    "ANALYST_PASSWORD": "a-long-analyst-passphrase",
}
REPLICA_ENV = {
    **PRODUCTION_ENV,
    "COMPOSE_PROFILES": "replica",
    "REPLICATION_PASSWORD": "fedcba9876543210fedcba9876543210",
}
REPLICA_SERVICES = {"timescaledb-replica-setup", "timescaledb-replica"}
IMAGE_SERVICES = ("setup", "worker", "app")  # the services that run the StockPulse image
# the database login of each: (user variable, its default, password variable)
LOGINS = {
    "setup": ("POSTGRES_USER", "stockpulse", "POSTGRES_PASSWORD"),
    "worker": ("WORKER_DB_USER", "stockpulse_worker_login", "WORKER_DB_PASSWORD"),
    "app": ("APP_DB_USER", "stockpulse_app_login", "APP_DB_PASSWORD"),
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
            return interpolate(arg, env) if unset_or_empty else (present or "")
        if op in (":+", "+"):
            return "" if unset_or_empty else interpolate(arg, env)
        if op in (":?", "?"):
            if unset_or_empty:
                raise MissingVariableError(f"{name}: {arg}")
            return present or ""
        return present or ""

    return VARIABLE.sub(substitute, value)


def as_dict(env: dict[str, Any] | list[str]) -> dict[str, Any]:
    if isinstance(env, dict):
        return env
    return dict(item.split("=", 1) for item in env)
