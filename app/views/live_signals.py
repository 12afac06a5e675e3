"""Live signals: the universe's last prices and the newest dual-model signal, auto-refreshing.

A page of the workbench (`streamlit run app/main.py`).
"""

import time

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import data, live, quality_view, ui
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


def scorer_notice(scorer: live.ScorerState) -> None:
    """Say plainly when the signals shown are not current."""
    newest = ui.fmt_ts(scorer.newest_scored, "%m-%d %H:%M") if scorer.newest_scored else "none"
    if scorer.state == "never":
        st.warning(
            "The scoring worker has not reported yet, so new bars are not being scored: start "
            "it with `python -m ml.scoring_worker` (supervisord's `scoring_worker` program). "
            f"Newest signal: {newest}."
        )
    elif scorer.state in ("down", "stopped"):
        age = ui.fmt_age(scorer.beat_age_s or 0.0)
        what = "stopped" if scorer.state == "stopped" else f"silent for {age}"
        st.error(
            f"The scoring worker is {what}: the signals below are from bar {newest} and "
            "are not current. supervisord restarts it; see its log (`scoring_worker.log`)."
        )
    elif scorer.state == "behind":
        minutes = int((scorer.behind or pd.Timedelta(0)).total_seconds() // 60)
        st.warning(
            f"The scoring worker is behind: the newest signal is for bar {newest}, "
            f"{minutes} bar-minute(s) before the newest stored bar. It catches up by itself."
        )
    if scorer.error:
        st.warning(f"Scoring problem reported by the worker: {scorer.error}")


def scorer_line(scorer: live.ScorerState | None) -> str:
    """The worker's state in one caption phrase."""
    if scorer is None:
        return "no model serving"
    if scorer.newest_scored is None:
        return f"scoring worker: {scorer.state}, no signal yet"
    line = (
        f"scoring worker: {scorer.state}, newest bar scored "
        f"{ui.fmt_ts(scorer.newest_scored, '%H:%M')}"
    )
    if scorer.behind is not None:
        line += f", {int(scorer.behind.total_seconds() // 60)} min behind the newest bar"
    if scorer.pass_ms is not None:
        line += f", last pass {scorer.pass_ms:.0f} ms"
    return line


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
        quality_view.held_notice()
        stamp = data.live_stamp(version)
        scorer = live.scorer_state(stamp.bars_ts, stamp.signal_ts) if version else None
        if scorer is not None:
            scorer_notice(scorer)
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
        render_ms = (time.perf_counter() - started) * 1000
        st.caption(
            f"Refreshed {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC in {render_ms:.0f} ms, every "
            f"{settings.app_refresh_s:g} s · {scorer_line(scorer)} · each signal: "
            f"{ui.DISCLAIMER_SHORT}"
        )


st.title("Live signals")
ui.disclaimer()
live_board()
