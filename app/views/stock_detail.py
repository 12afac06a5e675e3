"""Stock detail: candlesticks and volume at 1m/5m/1h/1d, signals, indicators, news and macro."""

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import chart_data, charts, data, live, live_data, macro_data, quality_view, ui
from app.indicators import OVERLAYS
from app.text import escape_markdown
from config.settings import get_settings
from ml.serving.outcomes import label_key

STEP_S = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
LOOKBACKS: dict[str, dict[str, int | None]] = {
    "1m": {"1 day": 1, "3 days": 3, "5 days": 5},
    "5m": {"5 days": 5, "1 month": 31},
    "1h": {"1 month": 31, "3 months": 92, "1 year": 366},
    "1d": {"3 months": 92, "1 year": 366, "All": None},
}
CUSTOM = "Custom dates"
Custom = tuple[pd.Timestamp, pd.Timestamp] | None
Options = tuple[tuple[str, ...], bool, bool]  # overlays, RSI panel, every version's signals


def choose_ticker(universe: list[str]) -> str:
    """The ticker of the URL's `?ticker=` when it is in the universe; otherwise a warning that
    names the value as typed (escaped: it is the visitor's text) and the first ticker."""
    asked = str(st.query_params.get("ticker", universe[0])).strip()
    wanted = asked.upper()
    if wanted not in universe:
        st.warning(
            f"Ticker '{escape_markdown(asked, max_chars=40)}' is not in the universe "
            f"(settings.universe): showing {universe[0]} instead. "
            f"Known tickers: {', '.join(universe)}."
        )
        wanted = universe[0]
    ticker = st.sidebar.selectbox("Ticker", universe, index=universe.index(wanted))
    st.query_params["ticker"] = ticker
    return str(ticker)


def choose_range(interval: str) -> tuple[str, tuple[pd.Timestamp, pd.Timestamp] | None]:
    """The sidebar's range: a span back from the newest bar, or custom dates (market time, UTC)."""
    options = [*LOOKBACKS[interval], CUSTOM]
    span = st.sidebar.selectbox("Range", options, key=f"range_{interval}")
    if span != CUSTOM:
        return str(span), None
    today = pd.Timestamp.now(tz="UTC").date()
    picked = st.sidebar.date_input(
        "From / to (market dates, UTC)",
        value=(today - pd.Timedelta(days=3), today),
        key="custom_range",
    )
    if not isinstance(picked, tuple) or len(picked) != 2:
        return str(span), None
    start = pd.Timestamp(picked[0], tz="UTC")
    return str(span), (start, pd.Timestamp(picked[1], tz="UTC") + pd.Timedelta(days=1))


def resolve_range(
    ticker: str,
    interval: str,
    span: str,
    custom: tuple[pd.Timestamp, pd.Timestamp] | None,
    stamp: data.LiveStamp,
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The range to draw: a relative span ends at the newest bar, so it moves as bars arrive."""
    first, last = chart_data.bar_extent(ticker, stamp.bars_ts)
    if last is None or first is None:
        st.info(f"No bars stored for {ticker} yet: the price ingestor has not delivered any.")
        return None
    if span == CUSTOM:
        if custom is None:
            st.info("Pick both a start and an end date.")
        return custom
    end = last + pd.Timedelta(minutes=1)
    days = LOOKBACKS[interval][span]
    return (first if days is None else end - pd.Timedelta(days=days)), end


def cap_notice(window: chart_data.ChartRange) -> None:
    """Say plainly that a 1-minute range is too long to draw whole, and what to do."""
    cap = chart_data.MAX_MINUTE_BARS
    st.warning(
        f"This range holds {window.minute_bars:,} 1-minute bars, more than the "
        f"{cap:,} one chart reads: showing the last {cap:,}, "
        f"from {ui.fmt_ts(window.start)}. Choose a coarser interval (5m, 1h or 1d) or a "
        "shorter range to see all of it.",
        icon=":material/timer:",
    )


def signal_card(ticker: str, version: str | None, stamp: data.LiveStamp) -> None:
    signal = live_data.explained_signal(ticker, version, stamp)
    if signal is None:
        st.caption("No signal for this ticker yet.")
        return
    confidence = signal["class_confidence"]
    shown = (
        "none: no class probability stands for this HOLD"
        if pd.isna(confidence)
        else f"{confidence:.2f}"
    )
    before = "before " if signal["since_before"] else ""
    st.metric("Latest signal", signal["action"])
    lines = [
        f"Since {before}{ui.fmt_market(signal['signal_since'])} (market time)",
        f"Bar {ui.fmt_market(signal['bar_ts'])}",
        f"Models {signal['lean']}: {signal['trigger_text']}",
        f"Confidence {shown} (chance 0.33)",
        f"Why: {escape_markdown(signal['reason'], max_chars=300)}",
        f"Model {escape_markdown(version)}",
    ]
    st.caption("  \n".join(lines))
    ui.disclaimer()


def macro_panel(right: DeltaGenerator, end: pd.Timestamp) -> None:
    """The latest macro figures released before `end`, two to a row, each with its release."""
    right.subheader("Macro context")
    figures = macro_data.macro_figures(macro_data.macro_context(end.floor("h")))
    if not figures:
        right.caption("No macro observations released before this range ends.")
        return
    for i in range(0, len(figures), 2):
        for col, fig in zip(right.columns(2), figures[i : i + 2], strict=False):
            col.metric(fig.label, fig.value, fig.delta, delta_color=fig.delta_color)
            released = ui.fmt_market(fig.released, "%Y-%m-%d %H:%M")
            note = f" · {fig.note}" if fig.note else ""
            col.caption(f"Observation {fig.obs_date}, released {released}{note}")
    right.caption(
        "Deltas against the previous observation: red where a rise is bad news (VIX, "
        "unemployment, inflation), grey where it is neither (rates, spreads)."
    )


def news_and_macro(ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> None:
    left, right = st.columns([3, 2])
    headlines = chart_data.news(ticker, start, end)
    left.subheader("News")
    if headlines.empty:
        left.caption("No headlines in this range.")
    else:
        left.dataframe(
            headlines.iloc[::-1][["published_at", "title", "sentiment", "source"]],
            hide_index=True,
            width="stretch",
            column_config={
                "published_at": st.column_config.DatetimeColumn(
                    "Published (market time, UTC)", format="YYYY-MM-DD HH:mm"
                ),
                "sentiment": st.column_config.NumberColumn("Sentiment", format="%+.2f"),
            },
            key="news_table",
        )
    macro_panel(right, end)


def marker_legend(horizon_bars: int | None) -> str:
    """What the chart's signal markers mean and which clock its axis is on."""
    horizon = f"the next {horizon_bars} bars" if horizon_bars else "its horizon"
    return (
        "Markers where a BUY ▲ or SELL ▼ run starts, coloured by how that signal turned out: "
        f"green right (BUY then UP, SELL then DOWN: the triple-barrier outcome over {horizon}), "
        "red wrong (the other way, or no clear move), grey pending (its horizon has not passed "
        "yet), pale no outcome (the horizon crossed the session's close). Chart times: "
        f"{ui.market_clock_note()}; the axis is UTC, hover a marker for New York time."
    )


@st.fragment(run_every=get_settings().app_refresh_s)
def detail(ticker: str, interval: str, span: str, custom: Custom, opts: Options) -> None:
    """Chart, signal card, news and macro: redrawn every refresh period (new candles and
    markers) without reloading the page; cached reads keyed on the newest bar and signal."""
    overlays, show_rsi, all_versions = opts
    with ui.guard(retry=False):
        serving = live.serving()
        version = serving.champion.version if serving.champion else None
        ui.model_notices(serving)
        quality_view.held_notice([ticker])
        stamp = data.live_stamp(version)
        picked = resolve_range(ticker, interval, span, custom, stamp)
        if picked is None:
            return
        start, end = picked
        window = chart_data.chart_range(interval, start, end, stamp.bars_ts)
        if window.capped:
            cap_notice(window)
            start = window.start
        bars = chart_data.bars(ticker, interval, start, end, stamp)
        if bars.empty:
            st.info(
                f"No {interval} bars for {ticker} between {ui.fmt_ts(start)} and "
                f"{ui.fmt_ts(end)}: pick another range."
            )
            return
        labels = serving.champion.metadata.labels if serving.champion else None
        key = "" if labels is None else label_key(labels)
        markers = None if all_versions else version
        signals = chart_data.signal_markers(ticker, start, end, markers, key, stamp)
        headlines = chart_data.news(ticker, start, end)
        fig = charts.price_figure(
            bars, signals, headlines, overlays, show_rsi, f"{ticker} · {interval}", STEP_S[interval]
        )
        chart, card = st.columns([4, 1])
        chart.plotly_chart(fig, key="price_chart", width="stretch")
        with card:
            signal_card(ticker, version, stamp)
            st.caption(
                f"{len(bars)} bars, {len(signals)} signal starts, {len(headlines)} headlines · "
                f"newest bar {ui.fmt_market(stamp.bars_ts, '%Y-%m-%d %H:%M')} · refreshes every "
                f"{get_settings().app_refresh_s:g} s"
            )
        chart.caption(marker_legend(labels.horizon_bars if labels else None))
        news_and_macro(ticker, start, end)


def page() -> None:
    settings = get_settings()
    st.title("Stock detail")
    ticker = choose_ticker(list(settings.universe))
    interval = str(st.sidebar.radio("Interval", list(LOOKBACKS), index=1, horizontal=True))
    span, custom = choose_range(interval)
    overlays = st.sidebar.multiselect("Overlays", OVERLAYS, default=["SMA 20"])
    show_rsi = st.sidebar.checkbox("RSI panel")
    all_versions = st.sidebar.checkbox("Signals of every model version")
    detail(ticker, interval, span, custom, (tuple(overlays), show_rsi, all_versions))


page()
