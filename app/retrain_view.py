"""The retrain section of the model lab: the button (for analysts), live progress and the latest
training runs with who started each."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import auth, retrain, sign_in, ui
from ml.training.progress import TrainingProgress

SEEN_BUSY = "_stockpulse_retrain_seen_busy"


def retrain_panel() -> None:
    """Start `python -m ml.lifecycle.pipeline` in the background (the form only for those allowed
    to); show its progress and outcome to everyone."""
    launcher = retrain.launcher()
    if sign_in.shows_actions("analyst"):
        with st.form("retrain_form", clear_on_submit=True):
            quick = st.checkbox("Quick run (few epochs, fewer windows: minutes instead of hours)")
            name, password = ui.credentials("retrain")
            submitted = st.form_submit_button("Retrain now", icon=":material/model_training:")
        if submitted:
            _start(launcher, name, password, quick)
    progress_status(launcher, launcher.busy_reason() is not None)


def _start(launcher: retrain.RetrainLauncher, name: str, password: str, quick: bool) -> None:
    try:
        by = sign_in.authorize(name, password)
    except auth.AccessDenied as exc:
        st.error(str(exc), icon=":material/lock:")
        return
    try:
        pid = launcher.start(by=by, quick=quick)
    except retrain.RetrainRefused as exc:
        st.warning(str(exc), icon=":material/hourglass_top:")
        return
    st.success(
        f"Training started in the background (process {pid}); validation follows. "
        "You can leave this page: the run continues and its outcome shows here."
    )


def progress_status(launcher: retrain.RetrainLauncher, running: bool) -> None:
    """Progress while training runs (refreshing every 2 s), the outcome afterwards. Idle, it
    still looks every refresh period, so a session opened before another analyst (or the
    schedule) started a retrain shows its progress."""

    @st.fragment(run_every=2.0 if running else launcher.settings.app_refresh_s)
    def show() -> None:
        busy = launcher.busy_reason()
        progress = retrain.read_progress(launcher.settings)
        if busy is not None:
            st.session_state[SEEN_BUSY] = True
            st.info(busy, icon=":material/hourglass_top:")
            if progress is not None:
                where = f" · {progress.model} epoch {progress.epoch}/{progress.epochs}"
                detail = where if progress.model and progress.epoch is not None else ""
                st.progress(
                    progress.fraction or 0.0,
                    text=f"{progress.stage}{detail} — {progress.message}",
                )
            runs_table()
            return
        _outcome(launcher, progress)
        if st.session_state.pop(SEEN_BUSY, False):
            st.rerun()  # the run ended: redraw the lab with the new version and evaluation
        runs_table()

    show()


def runs_table() -> None:
    """The latest training runs and who started each (the schedule's runs name no one)."""
    runs: pd.DataFrame | None = None
    with ui.guard(retry=False):
        runs = retrain.training_runs()
    if runs is None or runs.empty:
        return
    with st.expander("Training runs and who started them"):
        st.dataframe(
            runs,
            hide_index=True,
            width="stretch",
            key="training_runs",
            column_config={
                "started_at": st.column_config.DatetimeColumn("Started (server time, UTC)"),
                "started_by": "Started by",
                "duration_s": st.column_config.NumberColumn("Duration (s)", format="%.0f"),
            },
        )


def _outcome(launcher: retrain.RetrainLauncher, progress: TrainingProgress | None) -> None:
    code = launcher.returncode
    last = progress and f"{progress.stage}: {progress.message} ({ui.fmt_ts(progress.updated_at)})"
    if code is not None and code != 0:
        st.error(
            f"The last retrain from this app ended with exit code {code}. "
            f"{launcher.last_log_line() or ''} Log: {launcher.log_path}"
        )
    elif code == 0:
        st.success(f"The last retrain from this app finished. {last or ''}")
    elif last:
        st.caption(f"Last training progress: {last}")
    else:
        st.caption("No training has run yet.")
