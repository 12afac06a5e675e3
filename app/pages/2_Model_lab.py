"""Model lab: champion vs challenger on the same held-out window, promote, roll back, retrain."""

import _stockpulse_path  # noqa: F401
import streamlit as st

from app import lab_data, lab_view, ui
from app.retrain_view import retrain_panel


def champion_card() -> str | None:
    champ = lab_data.registry().champion
    if champ is None:
        st.info(
            "No champion yet: no model has passed validation. Train one with **Retrain** below "
            "(then the gate decides), or promote a trained version by hand."
        )
        return None
    st.markdown(
        f"**Champion:** `{champ.version}` · promoted {ui.fmt_ts(champ.promoted_at)} "
        f"by {champ.promoted_by} — {champ.reason}"
    )
    return champ.version


def evaluation_section() -> None:
    runs = lab_data.evaluations(lab_data.lab_stamp())
    if runs.empty:
        st.info(
            "No validation report yet: `python -m ml.validate_model` (or **Retrain**) scores the "
            "challenger and the champion on the same held-out window."
        )
        return
    labels = {
        int(r.id): f"{ui.fmt_ts(r.at)} · challenger {r.challenger} vs "
        f"{r.champion or 'no champion'} · {'promoted' if r.promoted else 'rejected'}"
        for r in runs.itertuples()
    }
    chosen = st.selectbox("Validation run", list(labels), format_func=labels.__getitem__)
    report = lab_data.evaluation_report(int(chosen))
    if report is None:
        st.warning("This validation report is no longer stored.")
        return
    lab_view.gate_summary(report)
    st.dataframe(
        lab_view.metrics_table(report),
        hide_index=True,
        width="stretch",
        key="metrics_table",
        column_config={
            c: st.column_config.NumberColumn(format="%.4f") for c in lab_view.METRIC_COLUMNS
        },
    )
    lab_view.side_by_side(report)


def page() -> None:
    ui.setup("Model lab")
    st.title("Model lab")
    ui.show_flash()
    with ui.guard():
        champion = champion_card()
        st.header("Champion vs challenger")
        evaluation_section()
        st.header("Retrain")
        retrain_panel()
        st.header("Promote or roll back")
        left, right = st.columns(2)
        with left:
            st.subheader("Promote")
            lab_view.promote_form(champion)
        with right:
            st.subheader("Roll back")
            lab_view.rollback_form(champion)
        with st.expander("Trained versions"):
            st.dataframe(lab_data.versions(), hide_index=True, width="stretch")


page()
