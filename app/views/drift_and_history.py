"""Drift and history: registry history, drift figures against thresholds, live confidence.

Registry events and drift checks are stamped by the server's wall clock (server time); live
confidence is bucketed by bar time (market time); each is labelled so."""

import pandas as pd
import streamlit as st

from app import charts, data, lab_data, lab_view, live, ui
from app.text import escape_markdown
from config.settings import get_settings
from ml.features.drift import Metric
from ml.models.metadata import MODEL_NAMES

SPANS = {"1 day": 1, "7 days": 7, "30 days": 30, "90 days": 90}
PANELS = (
    ("Population stability (PSI) per feature", (Metric.PSI,), False),
    ("Kolmogorov-Smirnov p-value per feature", (Metric.KS_PVALUE,), True),
    ("Share of drifted features", (Metric.DRIFTED_SHARE,), False),
    (
        "Concept drift: drop from the reference",
        (
            *(Metric.confidence_drop(m) for m in MODEL_NAMES),
            *(Metric.accuracy_drop(m) for m in MODEL_NAMES),
        ),
        False,
    ),
    (
        "News scored by another sentiment model (1 = changed)",
        (Metric.SENTIMENT_MODEL_CHANGED,),
        False,
    ),
)
LIVE_CHECKS = (
    *(Metric.confidence(m) for m in MODEL_NAMES),
    *(Metric.realised_accuracy(m) for m in MODEL_NAMES),
)


def history_section(stamp: lab_data.LabStamp) -> None:
    st.header("Registry history")
    history = lab_data.registry_history()
    if history.empty:
        st.info("No promotion or rollback yet.")
    else:
        st.dataframe(
            history,
            hide_index=True,
            width="stretch",
            column_config={
                "at": st.column_config.DatetimeColumn("at (server time, UTC)"),
                "trained": "trained as (quick or full run)",
            },
        )
        st.caption(
            "Times here are server time (the machine's clock, UTC), not the market clock. How "
            "each version was trained, in full: the model lab's trained versions."
        )
    with st.expander("Events recorded in the database"):
        st.dataframe(
            lab_data.model_events(stamp),
            hide_index=True,
            width="stretch",
            column_config={"at": st.column_config.DatetimeColumn("at (server time, UTC)")},
        )


def alarm_states(frame: pd.DataFrame) -> None:
    states = frame[frame["metric"].str.startswith(Metric.ALARM_PREFIX)]
    if states.empty:
        return
    latest = states.sort_values("checked_at").groupby("metric").tail(1)
    raised = latest[latest["alarm"].astype(bool)]
    if not raised.empty:
        names = escape_markdown(
            ", ".join(m.removeprefix(Metric.ALARM_PREFIX) for m in raised["metric"])
        )
        st.error(f"Drift alarm raised ({names}): the drift monitor rolls the champion back.")
    view = pd.DataFrame(
        {
            "alarm": latest["metric"].str.removeprefix(Metric.ALARM_PREFIX),
            "consecutive checks over threshold": latest["value"],
            "threshold": latest["threshold"],
            "raised": latest["alarm"].astype(bool),
            "checked (server time)": latest["checked_at"].map(lab_view.server_time),
            "model": latest["model_version"],
        }
    )
    st.dataframe(view, hide_index=True, width="stretch")


def drift_section(frame: pd.DataFrame) -> None:
    st.header("Drift")
    if frame.empty:
        st.info(
            "No drift checks in this period: `python -m ml.lifecycle.drift_monitor` records them."
        )
        return
    latest = frame["checked_at"].max()
    st.caption(
        f"{frame['checked_at'].nunique()} checks, the latest {lab_view.server_time(latest)}; "
        "check times are server time."
    )
    alarm_states(frame)
    cols = st.columns(2)
    shown = [p for p in PANELS if frame["metric"].isin(p[1]).any()]
    for i, (title, metrics, low_is_bad) in enumerate(shown):
        cols[i % 2].plotly_chart(
            charts.drift_figure(frame, metrics, title, low_is_bad=low_is_bad),
            key=f"drift_{metrics[0]}",
            width="stretch",
        )


def confidence_section(frame: pd.DataFrame, since: pd.Timestamp) -> None:
    st.header("Live confidence and realised accuracy")
    models = live.serving_models()
    if models is None:
        st.info("No model is serving yet, so there is no live confidence to show.")
        return
    newest = data.live_stamp(models.version).signal_ts
    conf = lab_data.live_confidence(newest, models.version, since)
    checks = frame[frame["metric"].isin(LIVE_CHECKS) & (frame["model_version"] == models.version)]
    if conf.empty and checks.empty:
        st.info(f"No signals from {escape_markdown(models.version)} in this period yet.")
        return
    st.plotly_chart(
        charts.confidence_figure(conf, checks, f"Serving model {models.version}"),
        key="confidence_chart",
        width="stretch",
    )
    st.caption(
        "Confidence per hour of bars: market time (UTC). The drift job's checks are placed at "
        "their check time, server time: on an accelerated simulated clock the two need not "
        "line up."
    )


@st.fragment(run_every=get_settings().app_refresh_s)
def history_and_drift(days: int) -> None:
    """Registry history, drift checks and live confidence: redrawn every refresh period; the
    reads are keyed on the newest evaluation, registry event and drift check."""
    since = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=days)).floor("h")
    with ui.guard(retry=False):
        stamp = lab_data.lab_stamp()
        history_section(stamp)
        frame = lab_data.drift_metrics(stamp, since)
        drift_section(frame)
        confidence_section(frame, since)


def page() -> None:
    st.title("Drift & history")
    span = st.sidebar.selectbox("Period", list(SPANS), index=1)
    history_and_drift(SPANS[span])


page()
