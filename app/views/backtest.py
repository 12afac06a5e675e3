"""Backtest: following a version's signals (or the champion's, as served) over out-of-sample
history, after costs, beside buy-and-hold and the baselines (`ml.lifecycle.backtest`)."""

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import charts, data, lab_data, ui
from app.data import cached_data, from_db
from app.text import escape_markdown
from config.settings import get_settings
from ml.lifecycle import backtest as bt
from ml.models.metadata import MetadataError, version_metadata
from ml.models.registry import list_versions

VERSIONS, SERVED = "Chosen versions", "As served (the champion of each bar)"
REQUEST = "_backtest_request"
POINTS = 1500  # per chart line
FIGURES = {
    "total_return": st.column_config.NumberColumn("return", format="percent"),
    "sharpe": st.column_config.NumberColumn("Sharpe", format="%.2f"),
    "sortino": st.column_config.NumberColumn("Sortino", format="%.2f"),
    "max_drawdown": st.column_config.NumberColumn("max drawdown", format="percent"),
    "drawdown_bars": st.column_config.NumberColumn("drawdown bars", format="%d"),
    "turnover": st.column_config.NumberColumn("turnover (x)", format="%.1f"),
    "hit_rate": st.column_config.NumberColumn("hit rate", format="percent"),
    "exposure": st.column_config.NumberColumn("exposure", format="percent"),
    "costs": st.column_config.NumberColumn("costs paid", format="percent"),
    "trades": st.column_config.NumberColumn("trades", format="%d"),
}


@cached_data(ttl=3600, max_entries=8)
def run(request: bt.BacktestRequest, stamp: tuple[object, ...]) -> bt.BacktestResult:
    """The backtest of `request`, run once for every session (keyed on `stamp`: the newest bar
    when the range reaches it, the last corporate action, the registry when as served); a
    progress bar while it runs."""
    del stamp  # the cache key
    bar = st.progress(0.0, text="Backtest: starting")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(fraction, 1.0), text=f"Backtest: {message}")

    result = from_db(bt.run_backtest, request, None, progress)
    bar.empty()
    return result


def cache_stamp(request: bt.BacktestRequest) -> tuple[object, ...]:
    live = data.live_stamp(None)
    reaches_newest = request.end is None or live.bars_ts is None or request.end > live.bars_ts
    registry = lab_data.lab_stamp().registry_mtime_ns if request.as_served else None
    return (live.bars_ts if reaches_newest else None, live.adjusted_at, registry)


def default_range(version: str | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """From the first day with no bar the version has seen to the newest bar's day (UTC)."""
    newest = data.live_stamp(None).bars_ts
    end = (newest or pd.Timestamp.now(tz="UTC")).normalize()
    try:
        first = bt.first_out_of_sample(version_metadata(version)) if version else end
    except (MetadataError, bt.BacktestRefused):
        first = end
    return min(first.ceil("D"), end), end


def request_form(champion: str | None) -> bt.BacktestRequest | None:
    """The inputs; returns the request when submitted."""
    settings = get_settings()
    versions = list(reversed(list_versions()))
    if not versions:
        st.info("No trained version yet: train one in the model lab (**Retrain**).")
        return None
    default = champion if champion in versions else versions[0]
    start, end = default_range(default)
    with st.form("backtest_form"):
        mode = st.radio("Signals of", [VERSIONS, SERVED], horizontal=True, key="bt_mode")
        chosen = st.multiselect(
            "Versions (one or two)", versions, default=[default], max_selections=2, key="bt_v"
        )
        tickers = st.multiselect(
            "Tickers", settings.universe, default=settings.universe, key="bt_tickers"
        )
        days = st.date_input(
            "From / to (UTC days, both included)", (start.date(), end.date()), key="bt_days"
        )
        left, mid, right, last = st.columns(4)
        cost = left.number_input(
            "Fees per side (bps)", 0.0, 100.0, settings.cost_bps / 2, 0.5, key="bt_cost"
        )
        slippage = mid.selectbox("Slippage", bt.SLIPPAGE_MODELS, key="bt_slippage")
        slip_bps = right.number_input("Fixed slippage (bps)", 0.0, 100.0, 1.0, 0.5, key="bt_sbps")
        share = last.number_input("Share of the bar's range", 0.0, 1.0, 0.1, 0.05, key="bt_share")
        baselines = st.checkbox("Trade the baselines beside them", value=True, key="bt_base")
        submitted = st.form_submit_button("Run backtest", type="primary")
    if not submitted:
        return None
    if not isinstance(days, tuple) or len(days) != 2:
        st.warning("Choose the first and the last day of the range.")
        return None
    return bt.BacktestRequest(
        versions=() if mode == SERVED else tuple(chosen),
        tickers=tuple(tickers),
        start=pd.Timestamp(days[0], tz="UTC"),
        end=pd.Timestamp(days[1], tz="UTC") + pd.Timedelta(days=1),
        costs=bt.Costs(float(cost), str(slippage), float(slip_bps), float(share)),
        as_served=mode == SERVED,
        baselines=baselines,
    )


def curve_points(frame: pd.DataFrame) -> dict[str, list[tuple[str, float]]]:
    """Each column as (time, value) points, thinned to about `POINTS` per line."""
    step = max(1, math.ceil(len(frame) / POINTS))
    thin = frame.iloc[::step]
    stamps = [ts.isoformat() for ts in thin.index]
    return {c: list(zip(stamps, thin[c].astype(float), strict=True)) for c in frame.columns}


def drawdown_figure(frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for i, (name, points) in enumerate(curve_points(frame).items()):
        ts, values = zip(*points, strict=True)
        color = charts.PALETTE[i % len(charts.PALETTE)]
        fig.add_trace(
            go.Scatter(x=pd.to_datetime(list(ts)), y=list(values), name=name, line={"color": color})
        )
    fig.update_layout(title="Drawdown of the total", height=360, **charts.BELOW)
    fig.update_layout(yaxis_title="from the peak", yaxis_tickformat=".1%")
    return fig


def results(result: bt.BacktestResult) -> None:
    notes = "".join(f"{escape_markdown(n)}. " for n in result.notes)
    st.caption(
        f"{ui.fmt_ts(result.first_bar)} to {ui.fmt_ts(result.last_bar)}; each ticker an account "
        f"of equal capital, the total their sum. {notes}"
    )
    if not result.served.empty:
        st.dataframe(result.served, hide_index=True, key="bt_served")
    summary = result.summary
    totals = summary[summary["ticker"] == bt.TOTAL].drop(columns=["ticker", "bars"])
    st.dataframe(totals, hide_index=True, width="stretch", key="bt_totals", column_config=FIGURES)
    left, right = st.columns(2)
    left.plotly_chart(
        charts.equity_figure(curve_points(result.equity), "Equity of the total, after costs"),
        key="bt_equity",
        width="stretch",
    )
    right.plotly_chart(drawdown_figure(result.drawdown), key="bt_drawdown", width="stretch")
    strategy = st.selectbox("Per ticker", list(totals["strategy"]), key="bt_strategy")
    per_ticker = summary[(summary["strategy"] == strategy) & (summary["ticker"] != bt.TOTAL)]
    st.dataframe(
        per_ticker.drop(columns=["strategy"]),
        hide_index=True,
        width="stretch",
        key="bt_per_ticker",
        column_config=FIGURES,
    )
    left, right = st.columns(2)
    left.download_button(
        "Download the figures (CSV)",
        summary.to_csv(index=False),
        file_name="backtest_figures.csv",
        mime="text/csv",
        key="bt_csv",
    )
    right.download_button(
        "Download the trades (CSV)",
        result.trades.to_csv(index=False),
        file_name="backtest_trades.csv",
        mime="text/csv",
        key="bt_trades_csv",
    )


def page() -> None:
    st.title("Backtest")
    st.caption(
        "Following the signals over stored bars no version has seen: enter at the next bar's "
        "open, exit on the opposite signal or at the label horizon, never overnight, one "
        "position per ticker; fees and slippage on every fill. Ranges overlapping a version's "
        "training or validation data are refused."
    )
    with ui.guard():
        champion = lab_data.registry().champion
        submitted = request_form(champion.version if champion else None)
        if submitted is not None:
            st.session_state[REQUEST] = submitted
        request = st.session_state.get(REQUEST)
        if request is None:
            return
        try:
            result = run(request, cache_stamp(request))
        except bt.BacktestRefused as exc:
            st.error(f"Backtest refused: {escape_markdown(exc)}", icon=":material/block:")
            return
        results(result)
    ui.disclaimer()


page()
