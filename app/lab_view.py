"""Model lab sections that only read: an evaluation report (gate decision, metrics, the served
signal, confusion matrices, calibration and equity side by side) and the live scoreboard; the
verdict cards are `app.verdict_view`, the registry actions `app.lab_forms`.

Two clocks appear here and each time says which: **market time** for anything about bars and
signals (the market clock: the simulated or replay source's accelerated clock, or the wall clock
for live data; New York time named beside it), **server time** for jobs and versions (version
names, validation runs, promotions, drift checks), the machine's wall clock.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from app import charts, lab_data, ui
from core.timeutil import NEW_YORK, utc
from ml.lifecycle.bootstrap import Interval, PairedDelta
from ml.lifecycle.report import ValidationReport
from ml.lifecycle.scoreboard import MIN_BARS, Scoreboard
from ml.lifecycle.verdict import in_order, passes, signal_row, word_for
from ml.models.metadata import MODEL_NAMES, Provenance
from ml.models.metrics import ClassMetrics
from ml.training.baselines import BASELINE_NAMES

METRIC_COLUMNS = ("macro_f1", "accuracy", "log_loss", "ece")


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
    figure = "Δ served-signal macro-F1" if gate.figure == "signal" else "Δ macro-F1"
    cols[0].metric(figure, _num(gate.delta_f1, "+.4f"), help=f"against {gate.against}")
    cols[1].metric("Bootstrap CI low", _num(gate.ci_low, "+.4f"))
    cols[2].metric("Bootstrap CI high", _num(gate.ci_high, "+.4f"))
    cols[3].metric("Margin needed", _num(gate.margin, ".4f"))
    baseline_standing(report)
    window = report.window
    trained = " ".join(
        f"{role} `{v}`: {provenance_text(lab_data.provenance(v))}."
        for role, v in (("Challenger", report.challenger), ("Champion", report.champion))
        if v is not None
    )
    st.caption(
        f"Held-out window {market_time(window.start)} → {market_time(window.end)}, "
        f"{window.n_samples} samples; both versions scored on the same bars. {trained}"
    )


def baseline_standing(report: ValidationReport) -> None:
    """The challenger's served signal against each baseline's, said plainly when one is not
    beaten (a report stored before the served signal was compared lists the networks' losers)."""
    gate = report.gate
    vs = in_order(report.vs_baselines.get(report.challenger, {}))
    if not vs:
        if gate.beaten_by_baselines:
            st.warning("Beaten by the baselines: " + ", ".join(gate.beaten_by_baselines))
        return
    margin = gate.margin or 0.0
    lines = "; ".join(f"{BASELINE_NAMES.get(n, n)} {_said(d)}" for n, d in vs.items())
    failed = [BASELINE_NAMES.get(n, n) for n, d in vs.items() if not passes(d, margin)]
    if failed:
        st.warning(
            f"**Not proven:** the challenger's served signal did not beat {listed(failed)} by "
            f"the margin and the bootstrap. Against each baseline: {lines}.",
            icon=":material/warning:",
        )
    else:
        st.caption(f"Beats every baseline on the served signal: {lines}.")


def _said(delta: PairedDelta) -> str:
    return (
        f"{word_for(delta)} (Δ {delta.delta:+.4f}, interval {delta.low:+.4f} … {delta.high:+.4f})"
    )


def listed(names: list[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


SIGNAL_FORMAT = {
    "signal macro-F1": st.column_config.NumberColumn(format="%.4f"),
    **{
        f"{a} {k}": st.column_config.NumberColumn(format="percent")
        for a in ("BUY", "SELL", "HOLD")
        for k in ("precision", "recall")
    },
    "BUY/SELL hit rate": st.column_config.NumberColumn(format="percent"),
    "P&L after costs": st.column_config.NumberColumn(format="percent"),
}


def signal_table(report: ValidationReport) -> pd.DataFrame:
    """The served signal of each version and of each baseline's signal on the held-out window."""
    roles = {report.challenger: "challenger", report.champion: "champion"}
    rows = [
        signal_row("held-out window", v, roles.get(v, ""), r.signal)
        for v, r in report.models.items()
        if r.signal is not None
    ]
    rows += [
        signal_row("held-out window", f"baseline · {n}", "baseline", s)
        for n, s in in_order(report.baseline_signals).items()
    ]
    return pd.DataFrame(rows).drop(columns="source", errors="ignore")


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


def scoreboard_table(board: Scoreboard) -> pd.DataFrame:
    """One row per version: macro-F1 of both models and the signals' hit rate with their
    intervals, calls, P&L after costs, agreement with the champion."""
    agreement = {c.challenger: c.agreement for c in board.comparisons}
    rows = []
    for version, score in board.versions.items():
        row: dict[str, Any] = {"version": version, "role": score.role}
        for model in MODEL_NAMES:
            row[f"{model} macro-F1"] = _interval(score.macro_f1.get(model))
        row["signal macro-F1"] = "—" if score.signal is None else f"{score.signal.macro_f1:.3f}"
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
    since = f"since {market_time(board.since)}" if board.since else "since scoring began"
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
        signal = c.deltas.get("signal")
        served = "" if signal is None else f"; served signal Δ macro-F1 {_said(signal)}"
        st.markdown(
            f"**{c.challenger}** vs champion: Δ macro-F1 {c.delta_f1:+.4f} (both networks' "
            f"mean; block-bootstrap interval {c.ci_low:+.4f} … {c.ci_high:+.4f}: "
            f"{_words(c.deltas.get('networks'))}){served}; same signal on {c.agreement:.0%} of "
            "the bars."
        )
    curves = {f"{v} ({s.role})": s.pnl.equity_curve for v, s in board.versions.items()}
    st.plotly_chart(
        charts.equity_figure(curves, "Following each version's signals, after costs"),
        key="scoreboard_pnl",
        width="stretch",
    )
    trained = f" (the challengers trained on bars until {market_time(board.since)})"
    st.caption(
        f"{board.n_bars} bars of {board.n_tickers} tickers from {market_time(board.first_bar)} to "
        f"{market_time(board.last_bar)}{trained if board.since else ''}, every version on the "
        "same bars, judged by the triple-barrier outcome realised after each bar; intervals: "
        "block bootstrap over 30-minute blocks. Statistical results, not financial advice."
    )


def _words(delta: PairedDelta | None) -> str:
    return "—" if delta is None else word_for(delta)


# --------------------------------------------------------------------------- clocks
def server_time(value: object) -> str:
    """A time on the server's wall clock (versions, validation runs, promotions, drift checks)."""
    text = ui.fmt_ts(value)
    return text if text == "—" else f"{text} server time"


def market_time(value: object) -> str:
    """A bar or signal time on the market clock, with New York's time beside it."""
    text = ui.fmt_ts(value)
    if text == "—":
        return text
    ts = utc(value)
    local = ts.tz_convert(NEW_YORK)
    shown = f"{local:%H:%M}" if local.date() == ts.date() else f"{local:%Y-%m-%d %H:%M}"
    return f"{text} market time ({shown} New York)"


def provenance_text(p: Provenance | None) -> str:
    """How a version was trained: quick or full, epochs, windows, the bars it saw."""
    if p is None:
        return "not on disk"
    epochs = ", ".join(f"{m} {n}" for m, n in p.epochs.items()) or "not recorded"
    of = f" of {p.max_epochs}" if p.max_epochs else ""
    windows = (
        f"{p.train_windows:,} training + {p.val_windows:,} validation windows"
        if p.train_windows is not None and p.val_windows is not None
        else "windows not recorded"
    )
    span = (
        f"bars {market_time(p.data_from)} → {market_time(p.data_to)}"
        if p.data_from and p.data_to
        else "data range not recorded"
    )
    return f"{p.kind} run, epochs {epochs}{of}, {windows}, {span}"
