"""Model lab: a verdict card per challenger (the gate's held-out result and the live
scoreboard side by side, on the served signal and per network), the live scoreboard, the
held-out report; promote, pin, roll back, retrain (those controls only for analysts: signed in
with that role, or anyone in the local profile, where the analyst password guards them)."""

import streamlit as st

from app import data, lab_data, lab_forms, lab_view, live, sign_in, ui, verdict_view
from app.retrain_view import retrain_panel
from app.text import code_span, escape_markdown
from config.settings import get_settings
from ml.lifecycle.report import ReportError
from ml.lifecycle.verdict import card


def champion_card() -> str | None:
    champ = lab_data.registry().champion
    if champ is None:
        st.info(
            "No champion yet: no model has passed validation. Train one with **Retrain** below "
            "(then the gate decides), or promote a trained version by hand."
        )
        return None
    st.markdown(
        f"**Champion:** `{champ.version}` · promoted {lab_view.server_time(champ.promoted_at)} "
        f"by `{code_span(champ.promoted_by)}` — {escape_markdown(champ.reason)}"
    )
    st.caption(f"Trained: {lab_view.provenance_text(lab_data.provenance(champ.version))}.")
    if champ.provisional:
        why = champ.provisional_reason or "it has not beaten the baselines"
        st.warning(f"Provisional champion: {escape_markdown(why)}", icon=":material/warning:")
    return champ.version


def skipped_challengers() -> None:
    """The challengers left out of shadow scoring, each with why (no verdict card for them)."""
    problems = lab_data.challenger_problems()
    if not problems:
        return
    lines = [
        f"`{code_span(version)}`: {escape_markdown(data.redact(why), max_chars=400)}"
        for version, why in problems.items()
    ]
    st.warning(
        "Not scoring in shadow, so no verdict for them (the champion serves on):\n\n- "
        + "\n- ".join(lines),
        icon=":material/block:",
    )


@st.fragment(run_every=get_settings().app_refresh_s)
def verdict_section() -> None:
    """One verdict card per challenger scoring in shadow (refreshing with the scoreboard)."""
    with ui.guard(retry=False):
        serving = live.serving()
        if serving.champion is None:
            st.info("Verdicts start once a champion serves and a challenger scores beside it.")
            return
        skipped_challengers()
        challengers = tuple(m.version for m in serving.challengers)
        if not challengers:
            st.info(
                "No challenger to judge: the newest trained version that is not the champion "
                "(and any version pinned below) gets a verdict card once it scores in shadow.",
                icon=":material/compare_arrows:",
            )
            return
        champion = serving.champion.version
        board = lab_data.scoreboard(data.live_stamp(champion).signal_ts, champion, challengers)
        stamp = lab_data.lab_stamp()
        for version in challengers:
            try:
                report = lab_data.latest_report(stamp, version)
            except ReportError as exc:
                st.warning(f"The held-out report of {version} cannot be shown: {exc}.")
                report = None
            verdict_view.verdict_card(card(version, report, board, champion))


@st.fragment(run_every=get_settings().app_refresh_s)
def scoreboard_section() -> None:
    """Champion and challengers on the bars since the challenger was trained (refreshing)."""
    with ui.guard(retry=False):
        serving = live.serving()
        if serving.champion is None:
            st.info("The scoreboard starts once a champion serves.")
            return
        challengers = tuple(m.version for m in serving.challengers)
        if not challengers:
            st.info(
                "No challenger scores in shadow yet: the newest trained version that is not the "
                "champion (and any version pinned below) scores every new bar beside it. "
                "**Retrain** trains one.",
                icon=":material/compare_arrows:",
            )
            return
        stamp = data.live_stamp(serving.champion.version)
        board = lab_data.scoreboard(stamp.signal_ts, serving.champion.version, challengers)
        lab_view.scoreboard_view(board)


def evaluation_section() -> None:
    runs = lab_data.evaluations(lab_data.lab_stamp())
    if runs.empty:
        st.info(
            "No validation report yet: `python -m ml.lifecycle.validate_model` (or **Retrain**) "
            "scores the challenger and the champion on the same held-out window."
        )
        return
    labels = {
        int(r.id): f"{lab_view.server_time(r.at)} · challenger {r.challenger} vs "
        f"{r.champion or 'no champion'} · {'promoted' if r.promoted else 'rejected'}"
        for r in runs.itertuples()
    }
    chosen = st.selectbox("Validation run", list(labels), format_func=labels.__getitem__)
    try:
        report = lab_data.evaluation_report(int(chosen))
    except ReportError as exc:
        st.warning(f"This validation report cannot be shown: {exc}.")
        return
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
    signals = lab_view.signal_table(report)
    if not signals.empty:
        st.markdown("**The served signal** (BUY / SELL / HOLD as calls of UP / DOWN / NEUTRAL):")
        st.dataframe(
            signals,
            hide_index=True,
            width="stretch",
            key="signal_table",
            column_config=lab_view.SIGNAL_FORMAT,
        )
    lab_view.side_by_side(report)


def challenger_actions(champion: str | None) -> None:
    """Promote a challenger from its verdict, or pin a version (analysts only)."""
    challengers = [m.version for m in live.serving().challengers]
    with st.expander("Promote a challenger from its verdict, or pin a version"):
        left, right = st.columns(2)
        with left:
            lab_forms.promote_form(
                champion, challengers, key="promote_challenger", label="Promote challenger"
            )
        with right:
            lab_forms.pin_form(champion, lab_data.registry().pinned)


def champion_actions(champion: str | None) -> None:
    """Promote any trained version or roll back (analysts only)."""
    st.header("Promote or roll back")
    left, right = st.columns(2)
    with left:
        st.subheader("Promote")
        lab_forms.promote_form(champion)
    with right:
        st.subheader("Roll back")
        lab_forms.rollback_form(champion)


def page() -> None:
    st.title("Model lab")
    ui.show_flash()
    acts = sign_in.shows_actions("analyst")
    if not acts:
        st.info(
            "You can read everything here; retraining, promoting, rolling back and pinning "
            "need the analyst role (sign in with it in the sidebar).",
            icon=":material/lock:",
        )
    with ui.guard():
        champion = champion_card()
        st.header("Verdict")
        verdict_section()
        if acts:
            challenger_actions(champion)
        st.header("Live scoreboard")
        scoreboard_section()
        st.header("Champion vs challenger on the held-out window")
        evaluation_section()
        st.header("Retrain")
        retrain_panel()
        if acts:
            champion_actions(champion)
        with st.expander("Trained versions"):
            st.dataframe(
                lab_data.versions(),
                hide_index=True,
                width="stretch",
                column_config={
                    "version": "version (named by its server time)",
                    "created_at": "created (server time, UTC)",
                    "train": "train bars (market time, UTC)",
                    "validation": "validation bars (market time, UTC)",
                },
            )


page()
