"""Model lab sections: an evaluation report side by side, and the guarded registry actions."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app import auth, charts, lab_data, ui
from app.data import redact
from ml.registry import RegistryError, list_versions, previous_champion, promote, rollback

METRIC_COLUMNS = ("macro_f1", "accuracy", "log_loss", "ece")
PREVIOUS = "previous stable champion"


def metrics_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per model of each version and per baseline: macro-F1, accuracy, log loss, ECE."""
    rows = []
    roles = {report.get("challenger"): "challenger", report.get("champion"): "champion"}
    for version, models in (report.get("models") or {}).items():
        for name in ("lstm", "transformer"):
            m = (models or {}).get(name) or {}
            role = roles.get(version, "")
            rows.append({"model": f"{version} · {name}", "role": role, **_pick(m)})
    for name, m in (report.get("baselines") or {}).items():
        rows.append({"model": f"baseline · {name}", "role": "baseline", **_pick(m or {})})
    return pd.DataFrame(rows, columns=["model", "role", *METRIC_COLUMNS])


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in METRIC_COLUMNS}


def gate_summary(report: dict[str, Any]) -> None:
    gate = report.get("gate") or {}
    decision = str(gate.get("decision", "unknown"))
    text = f"Gate decision: **{decision.upper()}** — {gate.get('reason', 'no reason recorded')}"
    (st.success if decision == "promote" else st.error)(text)
    cols = st.columns(4)
    cols[0].metric("Δ macro-F1", _num(gate.get("delta_f1"), "+.4f"))
    cols[1].metric("Bootstrap CI low", _num(gate.get("ci_low"), "+.4f"))
    cols[2].metric("Bootstrap CI high", _num(gate.get("ci_high"), "+.4f"))
    cols[3].metric("Margin needed", _num(gate.get("margin"), ".4f"))
    window = report.get("window") or {}
    st.caption(
        f"Held-out window {window.get('start', '?')} → {window.get('end', '?')}, "
        f"{window.get('n_samples', '?')} samples; both versions scored on the same bars."
    )


def _num(value: Any, fmt: str) -> str:
    return "—" if value is None else format(float(value), fmt)


def side_by_side(report: dict[str, Any]) -> None:
    """Confusion matrices and calibration of the chosen model, equity curves of both versions."""
    models = report.get("models") or {}
    versions = [v for v in (report.get("champion"), report.get("challenger")) if v in models]
    if not versions:
        st.info("This report holds no per-model results.")
        return
    kind = st.radio("Model", ["lstm", "transformer"], horizontal=True, key="lab_kind")
    cols = st.columns(len(versions))
    for col, version in zip(cols, versions, strict=True):
        matrix = ((models.get(version) or {}).get(kind) or {}).get("confusion")
        role = "challenger" if version == report.get("challenger") else "champion"
        if matrix:
            col.plotly_chart(
                charts.confusion_figure(matrix, f"{role} {version} · {kind}"),
                key=f"confusion_{role}",
                width="stretch",
            )
    curves = {
        f"{v} · {kind}": ((models.get(v) or {}).get(kind) or {}).get("calibration") or {}
        for v in versions
    }
    left, right = st.columns(2)
    left.plotly_chart(
        charts.calibration_figure(curves, f"Calibration · {kind}"),
        key="calibration",
        width="stretch",
    )
    equity = {
        v: ((models.get(v) or {}).get("dual") or {}).get("equity_curve") or [] for v in models
    }
    right.plotly_chart(
        charts.equity_figure(equity, "Following the dual signals, after costs"),
        key="equity",
        width="stretch",
    )
    stats = {v: ((models.get(v) or {}).get("dual") or {}) for v in models if (models.get(v) or {})}
    right.caption(
        " · ".join(
            f"{v}: return {_num(d.get('total_return'), '+.2%')}, {d.get('n_trades', '?')} trades"
            for v, d in stats.items()
        )
    )


def promote_form(champion: str | None) -> None:
    """Promote any complete version (password, analyst name and a reason required)."""
    candidates = [v for v in reversed(list_versions()) if v != champion]
    if not candidates:
        st.caption("No other trained version to promote.")
        return
    with st.form("promote_form", clear_on_submit=True):
        version = st.selectbox("Version to promote", candidates)
        reason = st.text_input("Reason (recorded in the registry history)", max_chars=300)
        name, password = ui.credentials("promote")
        submitted = st.form_submit_button("Promote", type="primary")
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
