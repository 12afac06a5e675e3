"""Drift and history: registry history, drift metrics against thresholds, live confidence."""

import _stockpulse_path  # noqa: F401
import pandas as pd
import streamlit as st

from app import charts, lab_data, live, ui

SPANS = {"1 day": 1, "7 days": 7, "30 days": 30, "90 days": 90}
LOW_IS_BAD = {"ks_pvalue", "realised_accuracy", "confidence_lstm", "confidence_transformer"}
CONFIDENCE_METRICS = ("confidence_lstm", "confidence_transformer", "realised_accuracy")


def history_section() -> None:
    st.header("Registry history")
    history = lab_data.registry_history()
    if history.empty:
        st.info("No promotion or rollback yet.")
    else:
        st.dataframe(
            history,
            hide_index=True,
            width="stretch",
            key="history_table",
            column_config={"at": st.column_config.DatetimeColumn("At (UTC)")},
        )
    with st.expander("Events recorded in the database"):
        st.dataframe(lab_data.model_events(), hide_index=True, width="stretch")


def drift_section(since: pd.Timestamp) -> None:
    st.header("Drift")
    frame = lab_data.drift_metrics(since)
    if frame.empty:
        st.info("No drift checks in this period: `python -m ml.drift_monitor` records them.")
        return
    alarms = frame[frame["alarm"].astype(bool)]
    latest = frame["checked_at"].max()
    st.caption(
        f"{frame['checked_at'].nunique()} checks, the latest {ui.fmt_ts(latest)}; "
        f"{len(alarms)} alarming values in the period."
    )
    metrics = [m for m in frame["metric"].unique() if m not in CONFIDENCE_METRICS]
    cols = st.columns(2)
    for i, metric in enumerate(sorted(metrics)):
        cols[i % 2].plotly_chart(
            charts.drift_figure(frame, metric, low_is_bad=metric in LOW_IS_BAD),
            key=f"drift_{metric}",
            width="stretch",
        )
    if not alarms.empty:
        with st.expander(f"Alarms ({len(alarms)})"):
            st.dataframe(alarms.iloc[::-1], hide_index=True, width="stretch")


def confidence_section(since: pd.Timestamp) -> None:
    st.header("Live confidence and realised accuracy")
    models = live.serving_models()
    if models is None:
        st.info("No model is serving yet, so there is no live confidence to show.")
        return
    conf = lab_data.live_confidence(models.version, since)
    drift = lab_data.drift_metrics(since)
    accuracy = drift[
        (drift["metric"] == "realised_accuracy") & (drift["model_version"] == models.version)
    ]
    if conf.empty and accuracy.empty:
        st.info(f"No signals from {models.version} in this period yet.")
        return
    st.plotly_chart(
        charts.confidence_figure(conf, accuracy, f"Serving model {models.version}"),
        key="confidence_chart",
        width="stretch",
    )


def page() -> None:
    ui.setup("Drift & history")
    st.title("Drift & history")
    span = st.sidebar.selectbox("Period", list(SPANS), index=1)
    since = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=SPANS[span])).floor("h")
    with ui.guard():
        history_section()
        drift_section(since)
        confidence_section(since)


page()
