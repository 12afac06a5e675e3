"""Live signals: the universe's last prices and the newest dual-model signal, auto-refreshing.

A page of the workbench (`streamlit run app/main.py`).
"""

import time

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import data, live, ui
from config.settings import get_settings

ACTION_BADGE = {"BUY": "▲ BUY", "SELL": "▼ SELL", "HOLD": "· HOLD"}
COLUMNS = {
    "ticker": st.column_config.TextColumn("Ticker", width="small"),
    "detail": st.column_config.LinkColumn("Chart", display_text="open", width="small"),
    "last": st.column_config.NumberColumn("Last", format="%.2f"),
    "change_pct": st.column_config.NumberColumn("Change", format="%+.2f%%"),
    "spark": st.column_config.LineChartColumn("Last 90 min", width="medium"),
    "signal": st.column_config.TextColumn("Signal"),
    "confidence": st.column_config.ProgressColumn(
        "Confidence", min_value=0.0, max_value=1.0, format="%.2f", color="blue"
    ),
    "agree": st.column_config.CheckboxColumn("Models agree"),
    "lstm": st.column_config.TextColumn("LSTM P(down/flat/up)"),
    "transformer": st.column_config.TextColumn("Transformer P(down/flat/up)"),
    "bar": st.column_config.TextColumn("Signal for bar"),
}


def _probs(frame: pd.DataFrame, model: str) -> pd.Series:
    cols = [f"{model}_p_down", f"{model}_p_neutral", f"{model}_p_up"]
    return frame[cols].apply(
        lambda r: "—" if r.isna().any() else " / ".join(f"{v:.2f}" for v in r), axis=1
    )


def board_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The live table as shown: one row per ticker."""
    return pd.DataFrame(
        {
            "ticker": frame["ticker"],
            "detail": "/stock_detail?ticker=" + frame["ticker"],
            "last": frame["last"],
            "change_pct": frame["change_pct"],
            "spark": frame["spark"],
            "signal": frame["action"].map(ACTION_BADGE).fillna("—"),
            "confidence": frame["confidence"],
            "agree": frame["models_agree"],
            "lstm": _probs(frame, "lstm"),
            "transformer": _probs(frame, "transformer"),
            "bar": frame["signal_ts"].map(lambda v: ui.fmt_ts(v, "%m-%d %H:%M")),
        }
    )


def model_notice(version: str | None) -> None:
    problem = live.model_problem()
    if version is None and problem:
        st.warning(f"No model is serving: {problem}. Fix or roll back the registry (Model lab).")
    elif version is None:
        st.info(
            "No model is trained yet, so there are no signals: prices below still update live. "
            "Train one with **Retrain** in the Model lab (or `python -m ml.pipeline`); "
            "signals appear here by themselves once a model is promoted.",
            icon=":material/model_training:",
        )
    elif problem:
        st.warning(f"The newest registry entry could not be loaded: {problem}")


def summary(frame: pd.DataFrame, stamp: data.LiveStamp, version: str | None) -> None:
    actions = frame["action"].value_counts()
    cols = st.columns(5)
    stamp_metric(cols[0], "Newest bar", stamp.bars_ts)
    stamp_metric(cols[1], "Newest signal", stamp.signal_ts)
    cols[2].metric("BUY", int(actions.get("BUY", 0)))
    cols[3].metric("SELL", int(actions.get("SELL", 0)))
    cols[4].metric("HOLD", int(actions.get("HOLD", 0)))
    st.caption(f"Serving model **{version or 'none'}** · times in UTC")


def stamp_metric(col: DeltaGenerator, label: str, ts: pd.Timestamp | None) -> None:
    """A bar time as a metric: the minute as the value, the day in the label."""
    day = "" if ts is None else f" · {ts:%a %m-%d}"
    col.metric(f"{label}{day}", "—" if ts is None else f"{ts:%H:%M}")


@st.fragment(run_every=get_settings().app_refresh_s)
def live_board() -> None:
    """Redrawn every refresh period without reloading the page or the models."""
    started = time.perf_counter()
    settings = get_settings()
    with ui.guard(retry=False):
        serving = live.serving()
        version = serving.champion.version if serving.champion else None
        model_notice(version)
        ui.model_notices(serving)
        scorer = live.live_scorer()
        stamp = data.live_stamp(version)
        if scorer.catch_up(stamp.bars_ts):
            stamp = data.live_stamp(version)
        frame = data.live_table(stamp, version, tuple(settings.universe))
        if frame["bar_ts"].isna().all():
            st.info(
                "No bars in the database yet: start the price ingestor "
                "(`python -m workers.price_ingestor`). This page updates by itself."
            )
            return
        summary(frame, stamp, version)
        st.dataframe(
            board_view(frame),
            column_config=COLUMNS,
            hide_index=True,
            width="stretch",
            height=36 * (len(frame) + 1) + 4,
            key="live_table",
        )
        status = scorer.status
        if status.last_error:
            st.warning(f"Scoring paused: {status.last_error}. Retrying by itself.")
        render_ms = (time.perf_counter() - started) * 1000
        st.caption(
            f"Refreshed {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC in {render_ms:.0f} ms, every "
            f"{settings.app_refresh_s:g} s · {status.bars_scored} bars scored by this server "
            f"({status.invocations} model invocations) · each signal: {ui.DISCLAIMER_SHORT}"
        )


st.title("Live signals")
ui.disclaimer()
live_board()
