"""Identities and roles, and the local analyst password.

Three roles, each allowed what the one before it is: **viewer** (reads every page), **analyst**
(retrain, promote, roll back, pin, accept or reject data flags) and **admin** (also the alert
channels and rules, which decide what the alert worker sends and where).

With an OpenID Connect provider (`settings.oidc_enabled`) a signed-in user's role is the highest
of the roles named in the ID token's `settings.role_claim` (a list, or a space or comma separated
string) and of the allow-lists `settings.admin_emails` / `settings.analyst_emails`; anyone else
signed in is a viewer. The actor recorded for their actions is `oidc:<email>` (`oidc:<sub>`
without an e-mail). Without a provider, a state-changing action takes the one analyst password
(`authorize`; rate-limited per source address by `app.sign_in`) and records `analyst:<name>`.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from config.settings import Settings, get_settings

Role = Literal["viewer", "analyst", "admin"]
RANK: dict[Role, int] = {"viewer": 0, "analyst": 1, "admin": 2}
ANALYST_NAME = re.compile(r"^[A-Za-z0-9_.@-]{2,40}$")


class AccessDenied(PermissionError):
    """A wrong password, an unusable analyst name or a role too low; the message is safe to
    show."""


@dataclass(frozen=True)
class Identity:
    """Who uses this session: `actor` is what the records name (None when signed out)."""

    actor: str | None
    role: Role
    label: str  # what the sidebar shows: the e-mail, the name, or "signed out"

    def may(self, needed: Role) -> bool:
        """True when this identity's role allows actions that need `needed`."""
        return self.actor is not None and RANK[self.role] >= RANK[needed]


SIGNED_OUT = Identity(actor=None, role="viewer", label="signed out")


def claimed_roles(value: object) -> set[str]:
    """The role names in a role claim: a list of names or a space/comma separated string."""
    if isinstance(value, str):
        names: list[object] = list(value.replace(",", " ").split())
    elif isinstance(value, list | tuple | set | frozenset):
        names = list(value)
    else:
        return set()
    return {n.strip().lower() for n in names if isinstance(n, str) and n.strip()}


def role_of(claims: Mapping[str, object], settings: Settings | None = None) -> Role:
    """The role of a signed-in user from the ID token's claims: the highest of the role claim's
    known roles and the e-mail allow-lists (not used when the provider says the e-mail is
    unverified); viewer otherwise."""
    settings = settings or get_settings()
    found: set[str] = claimed_roles(claims.get(settings.role_claim))
    email = claims.get("email")
    if isinstance(email, str) and claims.get("email_verified") is not False:
        email = email.strip().lower()
        if email in settings.admin_emails:
            found.add("admin")
        if email in settings.analyst_emails:
            found.add("analyst")
    known: list[Role] = [r for r in RANK if r in found]
    return max(known, key=RANK.__getitem__, default="viewer")


def oidc_identity(claims: Mapping[str, object], settings: Settings | None = None) -> Identity:
    """The identity of a user signed in with OpenID Connect (`st.user`'s claims)."""
    email = claims.get("email")
    subject = email if isinstance(email, str) and email.strip() else claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        return SIGNED_OUT
    subject = subject.strip()
    return Identity(actor=f"oidc:{subject}", role=role_of(claims, settings), label=subject)


def password_ok(candidate: str | None, settings: Settings | None = None) -> bool:
    """Constant-time comparison of `candidate` with `settings.analyst_password`."""
    expected = (settings or get_settings()).analyst_password.get_secret_value()
    if not candidate or not expected:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), expected.encode("utf-8"))


def checked_name(name: str | None) -> str:
    """The analyst name typed, trimmed, or AccessDenied when it is not usable."""
    name = (name or "").strip()
    if not ANALYST_NAME.match(name):
        raise AccessDenied("Enter your analyst name (2-40 letters, digits, . _ @ -).")
    return name


def authorize(name: str | None, password: str | None, settings: Settings | None = None) -> str:
    """The actor string `analyst:<name>`, or AccessDenied. The bare password check: the app
    goes through `app.sign_in.authorize`, which adds the per-address lockout."""
    name = checked_name(name)
    if not password_ok(password, settings):
        raise AccessDenied("Wrong analyst password: nothing was changed.")
    return f"analyst:{name}"
