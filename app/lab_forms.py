"""The model lab's guarded registry actions: promote a version, roll back, pin a version to score
in shadow. Each needs the analyst role (`app.sign_in.authorize`) and, for a change of champion, a
reason recorded in the registry history; a change refers to the champion the form was drawn with
(`app.lab_data.champion_seen`), and the registry refuses it when another one replaced it since.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import auth, lab_data, sign_in, ui
from app.data import redact
from ml.models.registry import (
    RegistryError,
    list_versions,
    pin,
    previous_champion,
    promote,
    rollback,
)

PREVIOUS = "previous stable champion"


def promote_form(
    champion: str | None,
    candidates: list[str] | None = None,
    key: str = "promote",
    label: str = "Promote",
) -> None:
    """Promote a complete version (a reason required, and the analyst role: signed in, or the
    analyst password); `candidates` narrows the choice (the scoreboard offers its challengers)."""
    if candidates is None:
        candidates = [v for v in reversed(list_versions()) if v != champion]
    if not candidates:
        st.caption("No other trained version to promote.")
        return
    with st.form(f"{key}_form", clear_on_submit=True):
        version = st.selectbox("Version to promote", candidates, key=f"{key}_version")
        reason = st.text_input(
            "Reason (recorded in the registry history)", max_chars=300, key=f"{key}_reason"
        )
        name, password = ui.credentials(key)
        submitted = st.form_submit_button(label, type="primary")
    seen = lab_data.champion_seen(key, champion)
    if submitted:
        _act(
            name,
            password,
            reason,
            lambda by: promote(str(version), by=by, reason=reason, expected_champion=seen),
        )


def rollback_form(champion: str | None) -> None:
    """Roll back to the previous stable champion or a chosen version."""
    if champion is None:
        st.caption("There is no champion to roll back.")
        return
    default = previous_champion(lab_data.registry())
    others = [v for v in reversed(list_versions()) if v != champion]
    options = [PREVIOUS, *others] if default else others
    if not options:
        st.caption("No earlier version to roll back to.")
        return
    with st.form("rollback_form", clear_on_submit=True):
        label = f"Roll back to ({PREVIOUS}: {default})" if default else "Roll back to"
        target = st.selectbox(label, options)
        reason = st.text_input("Reason (recorded in the registry history)", max_chars=300)
        name, password = ui.credentials("rollback")
        submitted = st.form_submit_button("Roll back")
    seen = lab_data.champion_seen("rollback", champion)
    if submitted:
        to = None if target == PREVIOUS else str(target)
        _act(
            name,
            password,
            reason,
            lambda by: rollback(by=by, reason=reason, to=to, expected_champion=seen),
        )


def _act(name: str, password: str, reason: str, action: Any) -> None:
    try:
        by = sign_in.authorize(name, password)
    except auth.AccessDenied as exc:
        st.error(str(exc), icon=":material/lock:")
        return
    if not reason.strip():
        st.error("Give a reason: it is recorded in the registry history.")
        return
    try:
        registry = action(by)
    except RegistryError as exc:
        st.error(f"Not changed: {redact(str(exc))}")
        return
    champ = registry.champion
    ui.flash(
        f"Champion is now {champ.version if champ else '—'} ({by}). "
        "Live scoring switches to it within one refresh."
    )
    st.rerun()


def pin_form(champion: str | None, pinned: list[str]) -> None:
    """Pin a version so it scores every new bar in shadow (or unpin it)."""
    others = [v for v in reversed(list_versions()) if v != champion]
    if not others:
        return
    with st.form("pin_form", clear_on_submit=True):
        version = st.selectbox("Version", others, key="pin_version")
        action = st.radio("Action", ["pin", "unpin"], horizontal=True, key="pin_action")
        name, password = ui.credentials("pin")
        submitted = st.form_submit_button("Apply")
    if pinned:
        st.caption("Pinned: " + ", ".join(pinned))
    if submitted:
        try:
            by = sign_in.authorize(name, password)
            pin(str(version), by=by, pinned=action == "pin")
        except auth.AccessDenied as exc:
            st.error(str(exc), icon=":material/lock:")
            return
        except RegistryError as exc:
            st.error(f"Not changed: {redact(str(exc))}")
            return
        ui.flash(f"{version} {'pinned' if action == 'pin' else 'unpinned'} by {by}.")
        st.rerun()
