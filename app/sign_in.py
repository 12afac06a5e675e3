"""Sign-in on the pages: who uses this session, the sidebar's account panel, and the guard every
state-changing action goes through (`authorize`).

With an OpenID Connect provider the session's identity is Streamlit's `st.user` (signed in with
`st.login`, the provider's settings written by `app.launch`); roles as `app.auth` says. Without
one, the pages are open to read and each action takes the analyst password, refused for
`settings.login_lockout_min` minutes from a source address after `settings.login_max_failures`
wrong ones within that time (kept in the database: `db.identity`); every wrong password is
logged with the source address and the name typed, never the password.
"""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAuthError

from app.auth import SIGNED_OUT, AccessDenied, Identity, Role, checked_name, oidc_identity
from app.auth import password_ok as _password_ok
from app.data import DataUnavailable, from_db
from config.settings import Settings, get_settings
from db import identity as records

log = logging.getLogger(__name__)
UNKNOWN_SOURCE = "unknown"


class LockedOut(AccessDenied):
    """Too many wrong passwords from this source address; the message says until when."""


def source_address() -> str:
    """The session's client address as Streamlit sees it ('unknown' when it gives none, as for
    a browser on this machine)."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else UNKNOWN_SOURCE


def current_identity(settings: Settings | None = None) -> Identity:
    """The signed-in user of this session (OpenID Connect), or SIGNED_OUT (also always without
    a provider: the local profile has no sign-in)."""
    settings = settings or get_settings()
    if not settings.oidc_enabled:
        return SIGNED_OUT
    claims = dict(st.user.to_dict())
    if claims.get("is_logged_in") is not True:
        return SIGNED_OUT
    return oidc_identity(claims, settings)


def shows_actions(needed: Role = "analyst", settings: Settings | None = None) -> bool:
    """Whether the page shows the controls of actions that need `needed`: with a provider only
    to a user whose role allows them; in the local profile always (the password guards them)."""
    settings = settings or get_settings()
    return not settings.oidc_enabled or current_identity(settings).may(needed)


def authorize(
    name: str | None,
    password: str | None,
    *,
    needs: Role = "analyst",
    settings: Settings | None = None,
) -> str:
    """The actor to record for an action that needs the role `needs`, or AccessDenied. With a
    provider: the signed-in identity (name and password are not used); else the analyst
    password, rate-limited per source address."""
    settings = settings or get_settings()
    if settings.oidc_enabled:
        return _signed_in_actor(current_identity(settings), needs)
    try:
        return check_password(name, password, source=source_address(), settings=settings)
    except DataUnavailable as exc:
        raise AccessDenied(
            f"The sign-in record cannot be checked: {exc} Nothing was changed."
        ) from None


def _signed_in_actor(who: Identity, needs: Role) -> str:
    if who.actor is None:
        raise AccessDenied("Sign in (in the sidebar) to do this: nothing was changed.")
    if not who.may(needs):
        raise AccessDenied(
            f"This needs the {needs} role; {who.label} is signed in as {who.role}. "
            "Nothing was changed."
        )
    return who.actor


def check_password(
    name: str | None, password: str | None, *, source: str, settings: Settings | None = None
) -> str:
    """`analyst:<name>` for the right password from `source`, or AccessDenied: LockedOut, without
    looking at the password, while `source` is locked out; a wrong password is stored and
    logged, and the one that reaches the limit starts the lockout."""
    settings = settings or get_settings()
    until = from_db(records.locked_until, source)
    if until is not None:
        log.warning(
            "analyst password refused from %s for name %r: locked out until %s",
            source,
            (name or "")[:40],
            until,
        )
        raise LockedOut(_locked_message(until))
    analyst = checked_name(name)
    if _password_ok(password, settings):
        from_db(records.record_success, source)
        return f"analyst:{analyst}"
    lockout_s = settings.login_lockout_min * 60
    failed = from_db(
        records.record_failure,
        source,
        analyst,
        max_failures=settings.login_max_failures,
        window_s=lockout_s,
        lockout_s=lockout_s,
    )
    log.warning(
        "wrong analyst password from %s for name %r (%d of %d allowed in %g min)",
        source,
        analyst,
        failed.failures,
        settings.login_max_failures,
        settings.login_lockout_min,
    )
    if failed.locked_until is not None:
        raise LockedOut(f"Wrong analyst password. {_locked_message(failed.locked_until)}")
    raise AccessDenied("Wrong analyst password: nothing was changed.")


def _locked_message(until: pd.Timestamp) -> str:
    return (
        "Too many wrong analyst passwords from this address: try again after "
        f"{until.tz_convert('UTC'):%H:%M:%S} UTC. Nothing was changed."
    )


def account_panel(settings: Settings) -> None:
    """The sidebar's account panel: who is signed in and their role, with a sign-out button; a
    sign-in button when signed out; in the local profile, how actions are guarded."""
    with st.sidebar:
        if not settings.oidc_enabled:
            st.caption(
                "**Local profile** (no sign-in): every page reads freely; retrain, promote, "
                "roll back, pin, data flags and alert settings ask for the analyst password."
            )
            return
        who = current_identity(settings)
        if who.actor is None:
            st.caption("Signed out: every page reads freely; sign in to act.")
            if st.button("Sign in", key="account_sign_in", icon=":material/login:"):
                _login()
            return
        st.caption("Signed in as")
        st.text(f"{who.label} · {who.role}")
        if st.button("Sign out", key="account_sign_out", icon=":material/logout:"):
            st.logout()


def _login() -> None:
    """Start `st.login`; a server started without the sign-in's secrets says how to fix it."""
    try:
        st.login()
    except StreamlitAuthError as exc:
        log.error("sign-in is not configured on this server: %s", exc)
        st.error(
            "Sign-in is not configured on this server: start it with `python -m app.launch` "
            "(supervisord's `app` program), which passes the provider's settings to Streamlit."
        )
