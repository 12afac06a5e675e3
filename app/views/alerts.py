"""Alerts: the delivery log, the channels alerts go to and the rules that send them there.

Adding, enabling or disabling a channel or a rule needs the admin role when signed in (OpenID
Connect), else the analyst password; the record names who did it. Channel URLs are secrets:
the page shows their scheme only, and the URL field is a password field that is cleared on
submit. The alert worker (`python -m workers.alert_worker`) delivers; this page only reads and
configures.
"""

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from app import auth, data, sign_in, ui
from app.text import escape_markdown
from config.alerting import ALERT_KINDS
from config.settings import Settings, get_settings
from db import alert_channels
from db.alert_channels import EVERY_CHANNEL, SETTINGS_CHANNEL, AlertConfigError

EVERY = "every channel"


def settings_channels(settings: Settings) -> pd.DataFrame:
    """The channels of ALERT_URLS: name and scheme only."""
    urls = settings.alert_urls.get_secret_value().split() if settings.alert_urls else []
    return pd.DataFrame(
        {
            "name": [f"{SETTINGS_CHANNEL}{i}" for i in range(1, len(urls) + 1)],
            "scheme": [u.split("://", 1)[0] if "://" in u else "?" for u in urls],
        }
    )


@st.fragment(run_every=get_settings().app_refresh_s)
def log_section() -> None:
    """The newest deliveries and events, redrawn every refresh period."""
    st.header("Delivery log")
    with ui.guard(retry=False):
        log = data.from_db(alert_channels.delivery_log, 200)
        events = data.from_db(alert_channels.recent_events, 100)
        if events.empty:
            st.info(
                "No alert event yet. Events come from champion BUY/SELL signals, promotions, "
                "rollbacks, drift alarms, stale feeds and failed jobs."
            )
            return
        counts = log["status"].value_counts() if not log.empty else pd.Series(dtype=int)
        cols = st.columns(3)
        for col, status in zip(cols, ("sent", "pending", "failed"), strict=True):
            col.metric(f"Deliveries {status} (newest 200)", int(counts.get(status, 0)))
        if log.empty:
            st.info("No delivery yet: no rule sends these events to a channel.")
        else:
            st.dataframe(
                log,
                hide_index=True,
                width="stretch",
                key="alert_log",
                column_config={
                    "created_at": st.column_config.DatetimeColumn("Event at (UTC)"),
                    "next_attempt_at": st.column_config.DatetimeColumn("Next attempt (UTC)"),
                    "sent_at": st.column_config.DatetimeColumn("Sent at (UTC)"),
                    "waiting_reason": "Waiting for",
                    "last_error": "Last error (secrets masked)",
                },
            )
        with st.expander("Events (newest 100), with their deliveries"):
            st.dataframe(events, hide_index=True, width="stretch", key="alert_events")


def _guarded(name: str, password: str, action: Callable[[str], str]) -> None:
    """Run `action(actor)` for a signed-in admin (or with the analyst password, without sign-in);
    show what went wrong, else flash success."""
    try:
        by = sign_in.authorize(name, password, needs="admin")
    except auth.AccessDenied as exc:
        st.error(str(exc), icon=":material/lock:")
        return
    try:
        message = data.from_db(action, by)
    except AlertConfigError as exc:
        st.error(f"Not changed: {escape_markdown(exc)}")
        return
    except data.DataUnavailable as exc:
        st.error(str(exc), icon=":material/database_off:")
        return
    ui.flash(message)
    st.rerun()


def channels_section(settings: Settings) -> list[str]:
    """The channels, a form to add one and one to enable or disable one; returns their names."""
    st.header("Channels")
    from_settings = settings_channels(settings)
    stored = data.from_db(alert_channels.channels_table)
    if from_settings.empty and stored.empty:
        st.info("No channel yet: set ALERT_URLS, or add one below.")
    if not from_settings.empty:
        st.caption("From ALERT_URLS (the settings' rule below sends to them):")
        st.dataframe(from_settings, hide_index=True, width="stretch", key="settings_channels")
    if not stored.empty:
        st.caption("Added here (URLs are secrets: only their scheme is shown):")
        st.dataframe(stored, hide_index=True, width="stretch", key="app_channels")
    with st.form("add_channel_form", clear_on_submit=True):
        st.markdown(
            "**Add a channel** (an apprise URL: Slack, Teams, Discord, Telegram, e-mail, JSON)"
        )
        left, right = st.columns(2)
        name = left.text_input("Channel name", max_chars=40, key="channel_name")
        url = right.text_input("Apprise URL", type="password", max_chars=2000, key="channel_url")
        left, right = st.columns(2)
        quiet = left.text_input(
            f"Quiet hours, {settings.alert_timezone} (HH:MM-HH:MM; empty: ALERT_QUIET_HOURS)",
            max_chars=11,
            key="channel_quiet",
        )
        rate = right.number_input(
            "Alerts per minute at most (0: ALERT_RATE_PER_MIN)", 0, 600, 0, key="channel_rate"
        )
        who, password = ui.credentials("add_channel")
        submitted = st.form_submit_button("Add channel")
    if submitted:

        def add(by: str) -> str:
            added = alert_channels.add_channel(
                name=name, url=url, actor=by, quiet=quiet or None, max_per_minute=rate or None
            )
            return f"Channel {escape_markdown(added)} added by {escape_markdown(by)}."

        _guarded(who, password, add)
    names = list(from_settings["name"]) + list(stored["name"])
    if not stored.empty:
        _enable_form("channel", list(stored["name"]), alert_channels.set_channel_enabled)
    return names


def _enable_form(what: str, choices: list[Any], setter: Callable[[Any, bool, str], bool]) -> None:
    with st.form(f"enable_{what}_form", clear_on_submit=True):
        st.markdown(f"**Enable or disable a {what}**")
        choice = st.selectbox(what.capitalize(), choices, key=f"enable_{what}_choice")
        action = st.radio("Action", ["disable", "enable"], horizontal=True, key=f"{what}_act")
        who, password = ui.credentials(f"enable_{what}")
        submitted = st.form_submit_button("Apply")
    if submitted:

        def apply(by: str) -> str:
            if not setter(choice, action == "enable", by):
                raise AlertConfigError(f"there is no {what} {choice}")
            return f"The {what} {escape_markdown(choice)} is {action}d ({escape_markdown(by)})."

        _guarded(who, password, apply)


def rules_section(settings: Settings, channels: list[str]) -> None:
    st.header("Rules")
    st.caption(
        "An event goes to every enabled channel some enabled rule sends it to. Watch-list and "
        "least confidence apply to BUY/SELL signals."
    )
    settings_rule = pd.DataFrame(
        [
            {
                "channel": "ALERT_URLS",
                "kinds": ", ".join(settings.alert_events),
                "tickers": ", ".join(settings.alert_watchlist) or "the universe",
                "min_confidence": settings.alert_min_confidence,
            }
        ]
    )
    st.caption("From the settings (ALERT_EVENTS, ALERT_WATCHLIST, ALERT_MIN_CONFIDENCE):")
    st.dataframe(settings_rule, hide_index=True, width="stretch", key="settings_rule")
    stored = data.from_db(alert_channels.rules_table)
    if not stored.empty:
        st.caption("Added here:")
        st.dataframe(stored, hide_index=True, width="stretch", key="app_rules")
    with st.form("add_rule_form", clear_on_submit=True):
        st.markdown("**Add a rule**")
        target = st.selectbox("Send to", [EVERY, *channels], key="rule_channel")
        kinds = st.multiselect("Events", list(ALERT_KINDS), default=["signal"], key="rule_kinds")
        tickers = st.multiselect(
            "Watch-list (empty: every ticker)", list(settings.universe), key="rule_tickers"
        )
        confidence = st.slider("Least confidence of a signal", 0.0, 1.0, 0.6, 0.05, key="rule_min")
        who, password = ui.credentials("add_rule")
        submitted = st.form_submit_button("Add rule")
    if submitted:

        def add(by: str) -> str:
            channel = EVERY_CHANNEL if target == EVERY else str(target)
            rule_id = alert_channels.add_rule(
                channel=channel, kinds=kinds, tickers=tickers, min_confidence=confidence, actor=by
            )
            return f"Rule {rule_id} added by {escape_markdown(by)}."

        _guarded(who, password, add)
    if not stored.empty:
        _enable_form("rule", [int(i) for i in stored["id"]], alert_channels.set_rule_enabled)


def page() -> None:
    settings = get_settings()
    st.title("Alerts")
    ui.show_flash()
    st.caption(
        "Delivered by the alert worker through apprise, once per event and channel, retried "
        f"with back-off, at most {settings.alert_rate_per_min} per channel and minute unless "
        "a channel says otherwise; quiet hours are wall-clock hours in "
        f"{settings.alert_timezone}. Signals are not financial advice."
    )
    log_section()
    with ui.guard():
        channels = channels_section(settings)
        rules_section(settings, channels)


page()
