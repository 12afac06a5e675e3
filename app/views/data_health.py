"""Data health: the read replica, freshness and gaps per ticker, the data-quality guard (held
tickers, quarantined bars, the daily reconciliation, flagged inputs, with analysts' decisions),
the backfill queue, workers and cron jobs."""

import pandas as pd
import streamlit as st

from app import data, health_data, quality_view, ui
from config.market_clock import MarketTime, market_time
from config.settings import get_settings

STALE_BEAT_S = 300.0


def tickers_section(universe: list[str], market: MarketTime, stamp: health_data.OpsStamp) -> None:
    newest = data.live_stamp(None).bars_ts
    frame = health_data.ticker_health(tuple(universe), market.now.floor("min"), stamp, newest)
    st.header(f"Bars per ticker · session {frame.attrs.get('session', '?')}")
    st.caption(
        f"Judged on the {market.description}: market now {market.now:%a %Y-%m-%d %H:%M} UTC. "
        "Worker heartbeats and job runs below are judged on the wall clock."
    )
    if frame["latest_bar"].isna().all():
        st.info(
            "No bars stored yet: start the price ingestor (`python -m workers.price_ingestor`)."
        )
    view = frame.assign(
        latest_bar=frame["latest_bar"].map(ui.fmt_ts),
        age=(frame["age_min"] * 60).map(ui.fmt_age),
    )[
        [
            "ticker",
            "latest_bar",
            "age",
            "bars_in_session",
            "missing_in_session",
            "gaps_pending",
            "gaps_failed",
            "gaps_filled",
        ]
    ]
    st.caption(f"{frame.attrs.get('expected', 0)} session minutes so far.")
    st.dataframe(
        view,
        hide_index=True,
        width="stretch",
        height=36 * (len(view) + 1) + 4,
        key="ticker_health",
        column_config={
            "ticker": "Ticker",
            "latest_bar": "Latest bar",
            "age": "Age",
            "bars_in_session": st.column_config.NumberColumn("Bars in session"),
            "missing_in_session": st.column_config.NumberColumn("Missing minutes"),
            "gaps_pending": st.column_config.NumberColumn("Gaps pending"),
            "gaps_failed": st.column_config.NumberColumn("Gaps failed"),
            "gaps_filled": st.column_config.NumberColumn("Gaps filled"),
        },
    )


def backfill_section(stamp: health_data.OpsStamp) -> None:
    st.header("Backfill queue")
    queue = health_data.backfill_queue(stamp)
    if queue.empty:
        st.success("No pending or failed gaps.")
    else:
        st.dataframe(queue, hide_index=True, width="stretch", key="backfill_table")


def workers_section(now: pd.Timestamp) -> None:
    st.header("Workers")
    beats = health_data.heartbeats(now.floor("s"))
    if beats.empty:
        st.info("No worker has reported a heartbeat yet.")
        return
    beats = beats.assign(
        state=beats["age_s"].map(lambda s: "stale" if s > STALE_BEAT_S else "alive"),
        age=beats["age_s"].map(ui.fmt_age),
    )
    stale = beats[beats["state"] == "stale"]
    if not stale.empty:
        st.warning(f"No heartbeat for over {STALE_BEAT_S:.0f} s: {', '.join(stale['worker'])}")
    cols = ["worker", "state", "age", "status", "pid", "details", "last_beat"]
    st.dataframe(beats[cols], hide_index=True, width="stretch", key="workers_table")


def jobs_section(stamp: health_data.OpsStamp, now: pd.Timestamp) -> None:
    st.header("Scheduled jobs")
    runs = health_data.job_runs(stamp, (now - pd.Timedelta(days=7)).floor("h"))
    if runs.empty:
        st.info("No job has run yet.")
        return
    failed = runs[runs["status"] == "failed"]
    if not failed.empty:
        st.error(f"Last run failed: {', '.join(failed['job'])}")
    st.dataframe(
        runs,
        hide_index=True,
        width="stretch",
        key="jobs_table",
        column_config={
            "runs_recent": st.column_config.NumberColumn("Runs (7 d)"),
            "failed_recent": st.column_config.NumberColumn("Failed (7 d)"),
            "duration_s": st.column_config.NumberColumn("Duration (s)", format="%.1f"),
        },
    )


def replica_section() -> None:
    """Where the app's reads go and, with a read replica, how far behind it is (measured on
    the replica). First on the page: every section below reads through it."""
    try:
        state = data.replica_state()
    except data.DataUnavailable as exc:
        st.header("Read replica")
        st.error(f"The read replica (DATABASE_READ_URL) cannot be reached. {exc}")
        return
    if state is None:
        st.caption("Reads go to the primary (no DATABASE_READ_URL is set).")
        return
    st.header("Read replica")
    if not state.routed:
        st.caption("DATABASE_READ_URL is set, but this process reads from the primary.")
        return
    if not state.in_recovery:
        st.warning(
            "The server at DATABASE_READ_URL is not in recovery: it is a primary, not a "
            "streaming standby of the StockPulse database."
        )
    where, lag, behind = st.columns(3)
    where.metric("Reads go to", "replica")
    lag.metric(
        "Replay lag",
        "none replayed yet" if state.replay_lag_s is None else f"{state.replay_lag_s:.1f} s",
    )
    behind.metric(
        "Bytes behind", "n/a" if state.bytes_behind is None else f"{state.bytes_behind:,} B"
    )
    st.caption(
        "Writes and the workers always use the primary. Replay lag is the age of the newest "
        "transaction the replica has applied (it also grows while the primary writes nothing); "
        "bytes behind is WAL the replica has received but not applied yet."
    )


@st.fragment(run_every=get_settings().app_refresh_s)
def health() -> None:
    """Every section, redrawn each refresh period (reads keyed on the operations stamp)."""
    settings = get_settings()
    now = pd.Timestamp.now(tz="UTC")
    replica_section()
    with ui.guard(retry=False):
        st.caption(f"Database: {health_data.flavour()}")
        stamp = health_data.ops_stamp()
        tickers_section(list(settings.universe), market_time(settings), stamp)
        backfill_section(stamp)
        workers_section(now)
        jobs_section(stamp, now)


def page() -> None:
    st.title("Data health")
    ui.show_flash()
    health()
    with ui.guard():  # outside the refreshing fragment: a form being filled in is not redrawn
        quality_view.quality_section()


page()
