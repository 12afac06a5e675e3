"""Every plotly figure of the workbench, built from plain frames and dicts.

Builders are cached (`st.cache_data`, bounded) so reruns with the same inputs reuse the figure
instead of building a new one; pages draw them with stable keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app.indicators import overlay_lines, rsi
from app.text import escape_html
from core.timeutil import NEW_YORK
from ml.features.labels import CLASSES
from ml.models.metrics import Calibration

ACTION_SYMBOL = {"BUY": "triangle-up", "SELL": "triangle-down"}
# a signal marker's fill by how the signal turned out (`app.chart_data.marker_verdicts`)
VERDICT_STYLE = {
    "right": ("#16a34a", "right"),
    "wrong": ("#dc2626", "wrong"),
    "pending": ("#94a3b8", "pending"),
    "no outcome": ("#e2e8f0", "no outcome"),
}
OUTCOME_NAMES = {0: "DOWN", 1: "NEUTRAL", 2: "UP"}
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#14b8a6", "#64748b")
LAYOUT: dict[str, Any] = {
    "margin": {"l": 10, "r": 10, "t": 60, "b": 10},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 1, "xanchor": "right"},
    "hovermode": "x unified",
}
# small figures with long titles: the legend goes under the plot
BELOW = {
    "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
    "hovermode": "x unified",
}
MAX_BREAKS = 400


def _naive_utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.tz_convert(None)


def closed_hours(ts: pd.Series, step: pd.Timedelta) -> list[dict[str, Any]]:
    """Plotly rangebreaks hiding nights, weekends and holidays (gaps longer than 3 bars)."""
    stamps = pd.DatetimeIndex(ts.sort_values())
    if len(stamps) < 2:
        return []
    gap = stamps[1:] - stamps[:-1]
    at = (gap > 3 * step).nonzero()[0][-MAX_BREAKS:]
    return [{"bounds": [(stamps[i] + step).isoformat(), stamps[i + 1].isoformat()]} for i in at]


def _news_y(bars: pd.DataFrame, when: pd.Series) -> pd.Series:
    """Place headlines just above the highest high of the bar they fall in."""
    top = bars.set_index("ts")["high"].sort_index()
    idx = top.index.searchsorted(pd.DatetimeIndex(when), side="right") - 1
    idx = idx.clip(0, len(top) - 1)
    return pd.Series(top.to_numpy()[idx] * 1.004, index=when.index)


@st.cache_data(ttl=300, max_entries=16, show_spinner=False)
def price_figure(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    news: pd.DataFrame,
    overlays: tuple[str, ...],
    show_rsi: bool,
    title: str,
    step_s: int = 60,
) -> go.Figure:
    """Candlesticks, volume, chosen overlays, markers where BUY/SELL runs start (filled by
    their realised outcome: `signals` from `app.chart_data.signal_markers`) and news on one
    timeline.

    Times are drawn as naive UTC market time: plotly.js ignores offsets, and rangebreaks need
    one clock. A marker sits on the candle of its bar (`step_s`: the candle's length).
    """
    bars = bars.assign(ts=_naive_utc(bars["ts"]))
    signals = signals.assign(bar_ts=_naive_utc(signals["bar_ts"]))
    news = news.assign(published_at=_naive_utc(news["published_at"]))
    rows = 3 if show_rsi else 2
    heights = [0.62, 0.18, 0.2] if show_rsi else [0.75, 0.25]
    fig = make_subplots(
        rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=heights
    )
    _add_prices(fig, bars, overlays)
    step = pd.Timedelta(seconds=step_s)
    _add_signals(fig, signals, step)
    _add_news(fig, bars, news)
    fig.add_trace(
        go.Bar(x=bars["ts"], y=bars["volume"], name="volume", marker_color="#94a3b8"),
        row=2,
        col=1,
    )
    if show_rsi:
        _add_rsi(fig, bars)
    fig.update_layout(title=title, height=640 if show_rsi else 560, **LAYOUT)
    fig.update_layout(xaxis_rangeslider_visible=False)
    fig.update_xaxes(title_text="market time, UTC", row=rows, col=1)
    fig.update_xaxes(
        rangebreaks=closed_hours(bars["ts"], step),
        range=[bars["ts"].min() - step / 2, bars["ts"].max() + step],
    )
    return fig


def _add_prices(fig: go.Figure, bars: pd.DataFrame, overlays: tuple[str, ...]) -> None:
    """The candlesticks and the chosen overlay lines (`app.indicators.overlay_lines`)."""
    fig.add_trace(
        go.Candlestick(
            x=bars["ts"],
            open=bars["open"],
            high=bars["high"],
            low=bars["low"],
            close=bars["close"],
            name="price",
        ),
        row=1,
        col=1,
    )
    for i, (name, line) in enumerate(overlay_lines(bars, list(overlays)).items()):
        fig.add_trace(
            go.Scatter(
                x=bars["ts"],
                y=line,
                name=name,
                mode="lines",
                line={"width": 1.2, "color": PALETTE[i % len(PALETTE)]},
            ),
            row=1,
            col=1,
        )


def _add_rsi(fig: go.Figure, bars: pd.DataFrame) -> None:
    """The RSI panel (third row), with the 30 and 70 levels dotted."""
    fig.add_trace(go.Scatter(x=bars["ts"], y=rsi(bars["close"]), name="RSI 14"), row=3, col=1)
    for level in (30, 70):
        fig.add_hline(y=level, line_dash="dot", line_color="#94a3b8", row=3, col=1)


def _marker_hover(rows: pd.DataFrame) -> list[str]:
    """Per marker: when (market time, UTC and New York), how long the run held, how the
    signal turned out, the model and its reason."""
    out = []
    for row in rows.itertuples(index=False):
        when = pd.Timestamp(row.bar_ts).tz_localize("UTC")
        outcome = "pending (its horizon has not passed)"
        if row.verdict == "no outcome":
            outcome = "no outcome (its horizon crossed the close)"
        elif row.verdict in ("right", "wrong"):
            moved = OUTCOME_NAMES.get(int(row.outcome), "?")
            change = "" if pd.isna(row.fwd_return) else f" ({row.fwd_return * 100:+.2f} %)"
            outcome = f"{row.verdict}: went {moved}{change}"
        out.append(
            f"<b>{row.action}</b> at {row.close:.2f} · {when:%m-%d %H:%M} UTC · "
            f"{when.tz_convert(NEW_YORK):%H:%M} New York<br>"
            f"held {row.run_bars} bar(s) · confidence {row.confidence:.2f}<br>"
            f"outcome {outcome}<br>model {escape_html(row.model_version)}: "
            f"{escape_html(row.reason)}"
        )
    return out


def _add_signals(fig: go.Figure, signals: pd.DataFrame, step: pd.Timedelta) -> None:
    """A marker where each BUY or SELL run starts, on the candle of its bar, filled by how it
    turned out (legend: action and verdict)."""
    for action, symbol in ACTION_SYMBOL.items():
        for verdict, (color, word) in VERDICT_STYLE.items():
            rows = signals[(signals["action"] == action) & (signals["verdict"] == verdict)]
            if rows.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=rows["bar_ts"].dt.floor(step),
                    y=rows["close"],
                    mode="markers",
                    name=f"{action} {word}",
                    legendgroup=action,
                    marker={
                        "symbol": symbol,
                        "size": 12,
                        "color": color,
                        "line": {"width": 1, "color": "#1e293b"},
                    },
                    hovertext=_marker_hover(rows),
                    hoverinfo="text",
                ),
                row=1,
                col=1,
            )


def _add_news(fig: go.Figure, bars: pd.DataFrame, news: pd.DataFrame) -> None:
    if news.empty or bars.empty:
        return
    sentiment = pd.to_numeric(news["sentiment"], errors="coerce").fillna(0.0)
    fig.add_trace(
        go.Scatter(
            x=news["published_at"],
            y=_news_y(bars, news["published_at"]),
            mode="markers",
            name="news",
            marker={
                "symbol": "circle",
                "size": 9,
                "color": sentiment,
                "colorscale": "RdYlGn",
                "cmin": -1,
                "cmax": 1,
                "line": {"width": 1, "color": "#334155"},
            },
            text=news["title"].map(escape_html),
            customdata=sentiment,
            hovertemplate="%{text}<br>sentiment %{customdata:.2f}<extra></extra>",
        ),
        row=1,
        col=1,
    )


@st.cache_data(ttl=600, max_entries=32, show_spinner=False)
def confusion_figure(matrix: Sequence[Sequence[float]], title: str) -> go.Figure:
    """A 3x3 confusion matrix (rows: true class, columns: predicted)."""
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=[f"pred {c}" for c in CLASSES],
            y=[f"true {c}" for c in CLASSES],
            colorscale="Blues",
            text=matrix,
            texttemplate="%{text}",
            showscale=False,
        )
    )
    fig.update_layout(title=title, height=300, margin=LAYOUT["margin"])
    fig.update_yaxes(autorange="reversed")
    return fig


@st.cache_data(ttl=600, max_entries=16, show_spinner=False)
def calibration_figure(curves: Mapping[str, Calibration], title: str) -> go.Figure:
    """Reliability diagram: accuracy against confidence per curve, with the diagonal."""
    fig = go.Figure(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "#999"}
        )
    )
    for i, (name, calib) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(
                x=calib.confidence,
                y=calib.accuracy,
                mode="lines+markers",
                name=name,
                line={"color": PALETTE[i % len(PALETTE)]},
                customdata=calib.count,
                hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>n %{customdata}",
            )
        )
    fig.update_layout(title=title, height=400, xaxis_title="confidence", **BELOW)
    fig.update_layout(yaxis_title="accuracy", hovermode="closest")
    return fig


@st.cache_data(ttl=600, max_entries=16, show_spinner=False)
def equity_figure(curves: Mapping[str, Sequence[tuple[str, float]]], title: str) -> go.Figure:
    """Cost-adjusted equity of following each model's dual signals."""
    fig = go.Figure()
    for i, (name, points) in enumerate(curves.items()):
        if not points:
            continue
        ts, equity = zip(*points, strict=True)
        fig.add_trace(
            go.Scatter(
                x=pd.to_datetime(list(ts), utc=True),
                y=list(equity),
                mode="lines",
                name=name,
                line={"color": PALETTE[i % len(PALETTE)]},
            )
        )
    fig.add_hline(y=1.0, line_dash="dot", line_color="#94a3b8")
    fig.update_layout(title=title, height=400, yaxis_title="equity (start = 1)", **BELOW)
    return fig


@st.cache_data(ttl=120, max_entries=16, show_spinner=False)
def drift_figure(
    frame: pd.DataFrame,
    metrics: tuple[str, ...],
    title: str,
    top: int = 6,
    low_is_bad: bool = False,
) -> go.Figure:
    """Drift figures over time: a line per metric and feature (the worst `top`), the
    threshold dashed, the values the check flagged marked (a feature is flagged as drifted when
    its PSI or its KS test crosses the threshold, so a marker may sit below this chart's line)."""
    rows = frame[frame["metric"].isin(metrics)].copy()
    rows["series"] = rows["metric"].where(rows["feature"] == "", rows["feature"])
    by_series = rows.groupby("series")["value"]
    extreme = by_series.min() if low_is_bad else by_series.max()
    worst = extreme.sort_values(ascending=low_is_bad).index[:top]
    fig = go.Figure()
    for i, series in enumerate(worst):
        part = rows[rows["series"] == series]
        fig.add_trace(
            go.Scatter(
                x=part["checked_at"],
                y=part["value"],
                mode="lines+markers",
                name=escape_html(series),
                line={"color": PALETTE[i % len(PALETTE)]},
            )
        )
    alarms = rows[rows["alarm"].astype(bool) & rows["series"].isin(worst)]
    if not alarms.empty:
        fig.add_trace(
            go.Scatter(
                x=alarms["checked_at"],
                y=alarms["value"],
                mode="markers",
                name="flagged",
                marker={"color": "#dc2626", "size": 10, "symbol": "x"},
            )
        )
    threshold = rows["threshold"].dropna()
    if not threshold.empty:
        level = float(threshold.iloc[-1])
        fig.add_hline(
            y=level,
            line_dash="dash",
            line_color="#dc2626",
            annotation_text=f"threshold {level:.3g}",
        )
    fig.update_layout(title=title, height=380, **BELOW)
    return fig


@st.cache_data(ttl=120, max_entries=8, show_spinner=False)
def confidence_figure(frame: pd.DataFrame, checks: pd.DataFrame, title: str) -> go.Figure:
    """Live mean confidence of both models (from signals), and the drift job's confidence and
    realised accuracy per model over time."""
    fig = go.Figure()
    for i, col in enumerate(("lstm", "transformer", "agreement")):
        if col in frame:
            fig.add_trace(
                go.Scatter(
                    x=frame["ts"],
                    y=frame[col],
                    mode="lines",
                    name=f"{col} confidence" if col != "agreement" else "models agree",
                    line={"color": PALETTE[i]},
                )
            )
    for i, (metric, part) in enumerate(checks.groupby("metric", sort=True)):
        fig.add_trace(
            go.Scatter(
                x=part["checked_at"],
                y=part["value"],
                mode="lines+markers",
                name=metric.replace("_", " "),
                line={"color": PALETTE[(3 + i) % len(PALETTE)], "dash": "dash"},
            )
        )
    fig.update_layout(title=title, height=400, yaxis_range=[0, 1], **BELOW)
    return fig
