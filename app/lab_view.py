"""Model lab sections: an evaluation report side by side, and the guarded registry actions."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from app import auth, charts, lab_data, ui
from app.data import redact
from ml.metadata import MODEL_NAMES
from ml.metrics import ClassMetrics, Interval
from ml.registry import RegistryError, list_versions, pin, previous_champion, promote, rollback
from ml.report import ValidationReport
from ml.scoreboard import MIN_BARS, Scoreboard

METRIC_COLUMNS = ("macro_f1", "accuracy", "log_loss", "ece")
PREVIOUS = "previous stable champion"


def metrics_table(report: ValidationReport) -> pd.DataFrame:
    """One row per model of each version and per baseline: macro-F1, accuracy, log loss, ECE."""
    rows = []
    roles = {report.challenger: "challenger", report.champion: "champion"}
    for version, result in report.models.items():
        for name in MODEL_NAMES:
            m: ClassMetrics = getattr(result, name)
            role = roles.get(version, "")
            rows.append({"model": f"{version} · {name}", "role": role, **_pick(m)})
    for name, m in report.baselines.items():
        rows.append({"model": f"baseline · {name}", "role": "baseline", **_pick(m)})
    return pd.DataFrame(rows, columns=["model", "role", *METRIC_COLUMNS])


def _pick(metrics: ClassMetrics) -> dict[str, Any]:
    return {k: getattr(metrics, k) for k in METRIC_COLUMNS}


DECISION_TEXT = {
    "promote": "PROMOTED",
    "provisional": "SERVING PROVISIONALLY (unproven)",
    "reject": "REJECTED",
}


def gate_summary(report: ValidationReport) -> None:
    gate = report.gate
    text = f"Gate decision: **{DECISION_TEXT[gate.decision]}** — {gate.reason}"
    show = {"promote": st.success, "provisional": st.warning, "reject": st.error}[gate.decision]
    show(text)
    cols = st.columns(4)
    cols[0].metric("Δ macro-F1", _num(gate.delta_f1, "+.4f"))
    cols[1].metric("Bootstrap CI low", _num(gate.ci_low, "+.4f"))
    cols[2].metric("Bootstrap CI high", _num(gate.ci_high, "+.4f"))
    cols[3].metric("Margin needed", _num(gate.margin, ".4f"))
    if gate.beaten_by_baselines:
        st.caption("Beaten by the baselines: " + ", ".join(gate.beaten_by_baselines))
    window = report.window
    st.caption(
        f"Held-out window {window.start} → {window.end}, {window.n_samples} samples; "
        "both versions scored on the same bars."
    )


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(float(value), fmt)


def side_by_side(report: ValidationReport) -> None:
    """Confusion matrices and calibration of the chosen model, equity curves of both versions."""
    models = report.models
    versions = [v for v in (report.champion, report.challenger) if v is not None and v in models]
    if not versions:
        st.info("This report holds no per-model results.")
        return
    kind = st.radio("Model", list(MODEL_NAMES), horizontal=True, key="lab_kind")
    cols = st.columns(len(versions))
    for col, version in zip(cols, versions, strict=True):
        metrics: ClassMetrics = getattr(models[version], kind)
        role = "challenger" if version == report.challenger else "champion"
        if metrics.confusion:
            col.plotly_chart(
                charts.confusion_figure(metrics.confusion, f"{role} {version} · {kind}"),
                key=f"confusion_{role}",
                width="stretch",
            )
    curves = {f"{v} · {kind}": getattr(models[v], kind).calibration for v in versions}
    left, right = st.columns(2)
    left.plotly_chart(
        charts.calibration_figure(curves, f"Calibration · {kind}"),
        key="calibration",
        width="stretch",
    )
    equity = {v: r.dual.equity_curve for v, r in models.items()}
    right.plotly_chart(
        charts.equity_figure(equity, "Following the dual signals, after costs"),
        key="equity",
        width="stretch",
    )
    right.caption(
        " · ".join(
            f"{v}: return {r.dual.total_return:+.2%}, {r.dual.n_trades} trades"
            for v, r in models.items()
        )
    )


def promote_form(
    champion: str | None,
    candidates: list[str] | None = None,
    key: str = "promote",
    label: str = "Promote",
) -> None:
    """Promote a complete version (password, analyst name and a reason required); `candidates`
    narrows the choice (the scoreboard offers its challengers)."""
    if candidates is None:
        candidates = [v for v in reversed(list_versions()) if v != champion]
    if not candidates:
        st.caption("No other trained version to promote.")
        return
    with st.form(f"{key}_form", clear_on_submit=True):
        version = st.selectbox("Version to promote", candidates, key=f"{key}_version")
        reason = st.text_input(
            "Reason (recorded in the registry history)", max_chars=300, key=f"{key}_reason"
        )
        name, password = ui.credentials(key)
        submitted = st.form_submit_button(label, type="primary")
    if submitted:
        _act(name, password, reason, lambda by: promote(str(version), by=by, reason=reason))


def rollback_form(champion: str | None) -> None:
    """Roll back to the previous stable champion or a chosen version."""
    if champion is None:
        st.caption("There is no champion to roll back.")
        return
    default = previous_champion(lab_data.registry())
    others = [v for v in reversed(list_versions()) if v != champion]
    options = [PREVIOUS, *others] if default else others
    if not options:
        st.caption("No earlier version to roll back to.")
        return
    with st.form("rollback_form", clear_on_submit=True):
        label = f"Roll back to ({PREVIOUS}: {default})" if default else "Roll back to"
        target = st.selectbox(label, options)
        reason = st.text_input("Reason (recorded in the registry history)", max_chars=300)
        name, password = ui.credentials("rollback")
        submitted = st.form_submit_button("Roll back")
    if submitted:
        to = None if target == PREVIOUS else str(target)
        _act(name, password, reason, lambda by: rollback(by=by, reason=reason, to=to))


def _act(name: str, password: str, reason: str, action: Any) -> None:
    try:
        by = auth.authorize(name, password)
    except auth.AccessDenied as exc:
        st.error(str(exc), icon=":material/lock:")
        return
    if not reason.strip():
        st.error("Give a reason: it is recorded in the registry history.")
        return
    try:
        registry = action(by)
    except RegistryError as exc:
        st.error(f"Not changed: {redact(str(exc))}")
        return
    champ = registry.champion
    ui.flash(
        f"Champion is now {champ.version if champ else '—'} ({by}). "
        "Live scoring switches to it within one refresh."
    )
    st.rerun()


def scoreboard_table(board: Scoreboard) -> pd.DataFrame:
    """One row per version: macro-F1 of both models and the signals' hit rate with their
    intervals, calls, P&L after costs, agreement with the champion."""
    agreement = {c.challenger: c.agreement for c in board.comparisons}
    rows = []
    for version, score in board.versions.items():
        row: dict[str, Any] = {"version": version, "role": score.role}
        for model in MODEL_NAMES:
            row[f"{model} macro-F1"] = _interval(score.macro_f1.get(model))
        row["signal hit rate"] = _interval(score.hit_rate)
        row["BUY/SELL calls"] = score.calls
        row["P&L after costs"] = f"{score.pnl.total_return:+.2%}"
        row["agrees with champion"] = (
            "—" if score.role == "champion" else f"{agreement.get(version, float('nan')):.0%}"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _interval(value: Interval | None) -> str:
    if value is None or math.isnan(value.value):  # nothing to judge
        return "—"
    if math.isnan(value.low):
        return f"{value.value:.3f}"
    return f"{value.value:.3f} [{value.low:.3f}, {value.high:.3f}]"


def scoreboard_view(board: Scoreboard) -> None:
    """The scoreboard's table, the P&L curves and the paired comparison."""
    since = f"since {ui.fmt_ts(board.since)}" if board.since else "since scoring began"
    if board.too_early:
        st.info(
            f"{board.n_bars} scored bars have a realised outcome so far ({since}); the scoreboard "
            f"shows its figures from {MIN_BARS} on. It fills by itself as bars arrive and their "
            "label horizon passes.",
            icon=":material/hourglass_top:",
        )
        return
    st.dataframe(scoreboard_table(board), hide_index=True, width="stretch", key="scoreboard")
    for c in board.comparisons:
        verdict = "better" if c.ci_low > 0 else "worse" if c.ci_high < 0 else "not distinguishable"
        st.markdown(
            f"**{c.challenger}** vs champion: Δ macro-F1 {c.delta_f1:+.4f} "
            f"(block-bootstrap interval {c.ci_low:+.4f} … {c.ci_high:+.4f}: {verdict}), "
            f"same signal on {c.agreement:.0%} of the bars."
        )
    curves = {f"{v} ({s.role})": s.pnl.equity_curve for v, s in board.versions.items()}
    st.plotly_chart(
        charts.equity_figure(curves, "Following each version's signals, after costs"),
        key="scoreboard_pnl",
        width="stretch",
    )
    trained = f" (the challengers trained on bars until {ui.fmt_ts(board.since)})"
    st.caption(
        f"{board.n_bars} bars of {board.n_tickers} tickers from {ui.fmt_ts(board.first_bar)} to "
        f"{ui.fmt_ts(board.last_bar)}{trained if board.since else ''}, every version on the "
        "same bars, judged by the triple-barrier outcome realised after each bar; intervals: "
        "block bootstrap over 30-minute blocks. Statistical results, not financial advice."
    )


def pin_form(champion: str | None, pinned: list[str]) -> None:
    """Pin a version so it scores every new bar in shadow (or unpin it)."""
    others = [v for v in reversed(list_versions()) if v != champion]
    if not others:
        return
    with st.form("pin_form", clear_on_submit=True):
        version = st.selectbox("Version", others, key="pin_version")
        action = st.radio("Action", ["pin", "unpin"], horizontal=True, key="pin_action")
        name, password = ui.credentials("pin")
        submitted = st.form_submit_button("Apply")
    if pinned:
        st.caption("Pinned: " + ", ".join(pinned))
    if submitted:
        try:
            by = auth.authorize(name, password)
            pin(str(version), by=by, pinned=action == "pin")
        except auth.AccessDenied as exc:
            st.error(str(exc), icon=":material/lock:")
            return
        except RegistryError as exc:
            st.error(f"Not changed: {redact(str(exc))}")
            return
        ui.flash(f"{version} {'pinned' if action == 'pin' else 'unpinned'} by {by}.")
        st.rerun()
