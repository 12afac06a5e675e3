"""The analyst password that guards state-changing actions (retrain, promote, rollback)."""

from __future__ import annotations

import hmac
import re

from config.settings import Settings, get_settings

ANALYST_NAME = re.compile(r"^[A-Za-z0-9_.@-]{2,40}$")


class AccessDenied(PermissionError):
    """A wrong password or an unusable analyst name; the message is safe to show."""


def password_ok(candidate: str | None, settings: Settings | None = None) -> bool:
    """Constant-time comparison of `candidate` with `settings.analyst_password`."""
    expected = (settings or get_settings()).analyst_password.get_secret_value()
    if not candidate or not expected:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), expected.encode("utf-8"))


def authorize(name: str | None, password: str | None, settings: Settings | None = None) -> str:
    """The actor string `analyst:<name>` for the registry, or AccessDenied."""
    name = (name or "").strip()
    if not ANALYST_NAME.match(name):
        raise AccessDenied("Enter your analyst name (2-40 letters, digits, . _ @ -).")
    if not password_ok(password, settings):
        raise AccessDenied("Wrong analyst password: nothing was changed.")
    return f"analyst:{name}"
