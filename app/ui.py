"""Layout pieces every page shares: page setup, the disclaimer, error states, analyst forms."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from app.data import DataUnavailable, database_ok, redact
from config.settings import Settings, SettingsError, get_settings
from core.timeutil import utc
from ml.generate_recommendation import DISCLAIMER
from ml.registry import RegistryError

log = logging.getLogger(__name__)
ERROR_SHOWN_AT = "_stockpulse_error_shown_at"
FLASH = "_stockpulse_flash"
DISCLAIMER_SHORT = "not financial advice (see the disclaimer above)"


def setup(title: str, icon: str = ":material/monitoring:") -> Settings:
    """Page config, the sidebar disclaimer, and the settings (a clear stop if they are bad)."""
    st.set_page_config(page_title=f"StockPulse · {title}", page_icon=icon, layout="wide")
    try:
        settings = get_settings()
    except SettingsError as exc:
        st.error(f"StockPulse cannot start: {exc}")
        st.stop()
    with st.sidebar:
        st.caption(f"**Disclaimer.** {DISCLAIMER}")
    return settings


def disclaimer() -> None:
    """The disclaimer that accompanies every recommendation."""
    st.warning(DISCLAIMER, icon=":material/info:")


@contextmanager
def guard(retry: bool = True) -> Iterator[None]:
    """Show a plain message instead of a traceback when data cannot be read, and retry.

    Inside an auto-refreshing fragment pass `retry=False`: the fragment retries by itself.
    """
    try:
        yield
    except DataUnavailable as exc:
        st.error(str(exc), icon=":material/database_off:")
        if retry:
            _retry_later()
    except RegistryError as exc:
        st.error(f"The model registry cannot be read: {redact(str(exc))}")
        if retry:
            _retry_later()


def _retry_later() -> None:
    """Rerun the whole page every refresh period until the database answers again."""
    interval = get_settings().app_refresh_s
    st.session_state[ERROR_SHOWN_AT] = time.monotonic()

    @st.fragment(run_every=interval)
    def retry() -> None:
        shown = st.session_state.get(ERROR_SHOWN_AT, 0.0)
        if time.monotonic() - shown >= 0.8 * interval and database_ok():
            st.rerun()
        now = pd.Timestamp.now(tz="UTC")
        st.caption(f"Retrying every {interval:g} s (last try {now:%H:%M:%S} UTC).")

    retry()


def flash(message: str) -> None:
    """A success message shown once at the top of the next run (after `st.rerun()`)."""
    st.session_state[FLASH] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message, icon=":material/check_circle:")


def credentials(key: str) -> tuple[str, str]:
    """Analyst name and password inputs (inside a form); the password is never echoed."""
    left, right = st.columns(2)
    name = left.text_input("Analyst name", key=f"{key}_name", max_chars=40)
    password = right.text_input(
        "Analyst password", type="password", key=f"{key}_password", max_chars=200
    )
    return name, password


def fmt_ts(value: object, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC timestamp as text ('—' when missing)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    return f"{utc(value).strftime(fmt)} UTC"


def fmt_age(seconds: float | None) -> str:
    """A duration as '42 s', '7 min', '3.5 h' or '2.0 d'."""
    if seconds is None or pd.isna(seconds):
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
