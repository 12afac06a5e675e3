"""Layout pieces every page shares: page setup, the disclaimer, the account panel, error states,
analyst forms."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from app import sign_in
from app.data import DataUnavailable, database_ok, redact, sentiment_model
from app.text import escape_markdown
from config.feeds import feeds
from config.market_clock import market_time
from config.settings import Settings, SettingsError, get_settings
from core.timeutil import NEW_YORK, utc
from ml.models.model_loader import Serving
from ml.models.registry import RegistryError
from ml.serving.generate_recommendation import DISCLAIMER

log = logging.getLogger(__name__)
ERROR_SHOWN_AT = "_stockpulse_error_shown_at"
FLASH = "_stockpulse_flash"
DISCLAIMER_SHORT = "not financial advice (see the disclaimer above)"


def setup(title: str) -> Settings:
    """What every page shares (called once per run by `app/main.py`): page config, the sidebar's
    account panel and disclaimer, and the settings (a clear stop if they are bad)."""
    st.set_page_config(
        page_title=f"StockPulse · {title}", page_icon=":material/monitoring:", layout="wide"
    )
    try:
        settings = get_settings()
    except SettingsError as exc:
        st.error(f"StockPulse cannot start: {exc}")
        st.stop()
    sign_in.account_panel(settings)
    with st.sidebar:
        st.caption(f"**Disclaimer.** {DISCLAIMER}")
    source_banner(settings)
    return settings


MODE_COLOR = {"SIMULATED": "orange", "REPLAY": "violet", "LIVE": "green"}


def source_banner(settings: Settings) -> None:
    """Where each feed's data comes from, at the top of every page."""
    parts = [
        f"{feed.name.capitalize()} :{MODE_COLOR[feed.mode]}-badge[{feed.mode}] {feed.detail}"
        for feed in feeds(settings)
    ]
    st.markdown(" · ".join(parts), help="Set by MARKET_SOURCE, NEWS_SOURCE and MACRO_SOURCE.")


def model_notices(serving: Serving) -> None:
    """What the pages showing signals say about the serving model: provisional, or serving
    news scored by another sentiment model than the one it was trained on."""
    champion = serving.champion
    if champion is None:
        return
    if serving.provisional:
        provisional_notice(serving.provisional_reason)
    trained_on = champion.metadata.sentiment_models
    current = sentiment_model()
    if trained_on and current and current not in trained_on:
        st.warning(
            f"News is scored by **{current}** now; model {champion.version} was trained on news "
            f"scored by {', '.join(trained_on)}, so its news features may mean something else "
            "(the drift check flags it too).",
            icon=":material/swap_horiz:",
        )


def provisional_notice(reason: str | None) -> None:
    """What every page showing a signal says while the champion is provisional."""
    st.warning(
        "**Signals are provisional (unproven):** "
        f"{escape_markdown(reason or 'the serving model has not beaten the baselines')}",
        icon=":material/warning:",
    )


def disclaimer() -> None:
    """The disclaimer that accompanies every recommendation."""
    st.warning(DISCLAIMER, icon=":material/info:")


@contextmanager
def guard(retry: bool = True) -> Iterator[None]:
    """Show a plain message instead of a traceback when data cannot be read, and retry.

    Inside an auto-refreshing fragment pass `retry=False`: the fragment retries by itself (the
    message says so all the same).
    """
    try:
        yield
    except DataUnavailable as exc:
        st.error(str(exc), icon=":material/database_off:")
        _retry_later() if retry else _retrying_caption()
    except RegistryError as exc:
        st.error(f"The model registry cannot be read: {redact(str(exc))}")
        _retry_later() if retry else _retrying_caption()


def _retrying_caption() -> None:
    interval = get_settings().app_refresh_s
    now = pd.Timestamp.now(tz="UTC")
    st.caption(f"Retrying every {interval:g} s (last try {fmt_server(now)}).")


def _retry_later() -> None:
    """Rerun the whole page every refresh period until the database answers again."""
    interval = get_settings().app_refresh_s
    st.session_state[ERROR_SHOWN_AT] = time.monotonic()

    @st.fragment(run_every=interval)
    def retry() -> None:
        shown = st.session_state.get(ERROR_SHOWN_AT, 0.0)
        if time.monotonic() - shown >= 0.8 * interval and database_ok():
            st.rerun()
        _retrying_caption()

    retry()


def flash(message: str) -> None:
    """A success message shown once at the top of the next run (after `st.rerun()`)."""
    st.session_state[FLASH] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message, icon=":material/check_circle:")


def credentials(key: str) -> tuple[str, str]:
    """Analyst name and password inputs (inside a form); the password is never echoed. With
    sign-in (OpenID Connect) there is nothing to type: the form says whom the record names."""
    settings = get_settings()
    if settings.oidc_enabled:
        who = sign_in.current_identity(settings)
        st.caption(
            f"Recorded as `{who.actor.replace('`', '')}`."
            if who.actor
            else "Sign in (in the sidebar) to do this."
        )
        return "", ""
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


# Two clocks appear on the pages. Market time: the time of bars, signals, news and releases,
# on the market clock (`config.market_clock`: the simulated or replay source's accelerated
# clock, or the wall clock for live data), in UTC and, the universe being US stocks, in New
# York time beside it. Server time: the wall clock of the machine, for page refreshes, jobs,
# heartbeats and model versions (which are named by their training's server time).
MARKET_ZONE = NEW_YORK
MARKET_ZONE_NAME = "New York"


def fmt_new_york(value: object, fmt: str = "%H:%M") -> str:
    """A timestamp in New York time, named ('09:31 New York'; '—' when missing)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    return f"{utc(value).tz_convert(MARKET_ZONE).strftime(fmt)} {MARKET_ZONE_NAME}"


def fmt_market(value: object, fmt: str = "%m-%d %H:%M") -> str:
    """A market time (a bar's, a signal's) in UTC with New York time beside it:
    '01-05 14:31 UTC · 09:31 New York' (the New York date is added when it differs)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    ts = utc(value)
    same_day = ts.tz_convert(MARKET_ZONE).date() == ts.date()
    ny_fmt = "%H:%M" if same_day or "%d" not in fmt else "%m-%d %H:%M"
    return f"{fmt_ts(ts, fmt)} · {fmt_new_york(ts, ny_fmt)}"


def fmt_server(value: object, fmt: str = "%H:%M:%S") -> str:
    """A wall-clock time of this server, named: '14:31:05 UTC server time'."""
    shown = fmt_ts(value, fmt)
    return shown if shown == "—" else f"{shown} server time"


def market_clock_note(settings: Settings | None = None) -> str:
    """Which clock bar and signal times are on, for a page's caption."""
    market = market_time(settings)
    if market.clock == "wall":
        clock = "the wall clock, live market data"
    else:
        speed = f" at {market.speed:g}x" if market.anchored else ""
        clock = f"the {market.clock} market clock{speed}"
    return f"bar and signal times are market time ({clock}), in UTC and New York time"


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
