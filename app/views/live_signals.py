"""Live signals: the universe's last prices and the newest dual-model signal, auto-refreshing.

A page of the workbench (`streamlit run app/main.py`).
"""

import time
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import data, live, live_data, quality_view, ui
from app.text import escape_markdown
from config.settings import get_settings

ACTION_BADGE = {"BUY": "▲ BUY", "SELL": "▼ SELL", "HOLD": "· HOLD"}
CONFIDENCE_HELP = (
    "The weaker network's probability of the class the signal stands for (BUY: UP, SELL: "
    "DOWN, HOLD: NEUTRAL when both lean NEUTRAL). The bar starts at chance, 1/3 with three "
    "classes: an empty bar is no better than a guess. Blank for a HOLD where the networks "
    "lean to a move without reaching the trigger, or disagree (see Models and To trigger)."
)
TRIGGER_HELP = (
    "The weaker of the two networks' probabilities of the trigger's class (UP for BUY, DOWN "
    "for SELL) against its threshold. BUY or SELL fires when both networks' most probable "
    "class is that one and the weaker probability reaches the threshold. The trigger shown "
    "is the one of the networks' shared lean, otherwise the nearer one."
)


def columns(spark_range: tuple[float, float] | None) -> dict[str, Any]:
    """The board's column configuration; sparklines share one percentage scale."""
    low, high = spark_range or (None, None)
    return {
        "ticker": st.column_config.TextColumn("Ticker", width="small"),
        "detail": st.column_config.LinkColumn("Chart", display_text="open", width="small"),
        "last": st.column_config.NumberColumn("Last", format="%.2f"),
        "change_pct": st.column_config.NumberColumn(
            "Change since previous close", format="%+.2f%%"
        ),
        "spark": st.column_config.LineChartColumn(
            "Last 90 min (% vs previous close)",
            width="medium",
            y_min=low,
            y_max=high,
            color="auto",
            help="Every line on one scale (% change since the previous session's close); "
            "green when it ends higher than it began, red when lower.",
        ),
        "signal": st.column_config.TextColumn("Signal"),
        "since": st.column_config.TextColumn(
            "Signal since (market time)",
            help="The bar from which this action has held unbroken for the ticker.",
        ),
        "confidence": st.column_config.ProgressColumn(
            "Confidence (bar from chance 0.33)",
            min_value=live_data.CHANCE,
            max_value=1.0,
            format="%.2f",
            color="blue",
            help=CONFIDENCE_HELP,
        ),
        "to_trigger": st.column_config.TextColumn("To trigger", help=TRIGGER_HELP),
        "models": st.column_config.TextColumn(
            "Models",
            width="small",
            help="Each network's lean (its most probable class): both the same, or split.",
        ),
        "reason": st.column_config.TextColumn("Why", width="large"),
        "lstm": st.column_config.TextColumn("LSTM lean · P(down/neutral/up)"),
        "transformer": st.column_config.TextColumn("Transformer lean · P(down/neutral/up)"),
        "bar": st.column_config.TextColumn("Signal for bar (market time)"),
    }


def _probs(frame: pd.DataFrame, model: str) -> pd.Series:
    cols = [f"{model}_p_down", f"{model}_p_neutral", f"{model}_p_up"]
    labels = frame[f"{model}_label"]
    return pd.Series(
        [
            "—" if r.isna().any() else f"{label} · " + " / ".join(f"{v:.2f}" for v in r)
            for label, (_, r) in zip(labels, frame[cols].iterrows(), strict=True)
        ],
        index=frame.index,
    )


def _since(frame: pd.DataFrame) -> pd.Series:
    shown = frame["signal_since"].map(ui.fmt_market)
    return shown.where(~frame["since_before"].astype(bool), "before " + shown)


def spark_range(frame: pd.DataFrame) -> tuple[float, float] | None:
    """The lowest and highest point of every sparkline (their shared scale)."""
    points = [v for line in frame["spark"] for v in line]
    return (min(points), max(points)) if points else None


def board_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The live table as shown: one row per ticker."""
    return pd.DataFrame(
        {
            "ticker": frame["ticker"],
            "detail": "/stock_detail?ticker=" + frame["ticker"],
            "last": frame["last"],
            "change_pct": frame["change_pct"],
            "spark": frame["spark"],
            "signal": frame["action"].map(ACTION_BADGE).fillna("—"),
            "since": _since(frame),
            "confidence": frame["class_confidence"],
            "to_trigger": frame["trigger_text"],
            "models": frame["lean"].fillna("—"),
            "reason": frame["reason"].fillna("—"),
            "lstm": _probs(frame, "lstm"),
            "transformer": _probs(frame, "transformer"),
            "bar": frame["signal_ts"].map(ui.fmt_market),
        }
    )


FEED_COLUMNS = {
    "when": st.column_config.TextColumn("Changed at (market time)"),
    "ticker": st.column_config.TextColumn("Ticker", width="small"),
    "change": st.column_config.TextColumn("Change"),
    "confidence": st.column_config.NumberColumn(
        "Confidence (chance 0.33)", format="%.2f", help=CONFIDENCE_HELP
    ),
    "reason": st.column_config.TextColumn("Why", width="large"),
}


def feed_view(feed: pd.DataFrame) -> pd.DataFrame:
    """The feed of signal changes as shown: newest first."""
    return pd.DataFrame(
        {
            "when": feed["bar_ts"].map(ui.fmt_market),
            "ticker": feed["ticker"],
            "change": feed["previous"].astype(str) + " → " + feed["action"].astype(str),
            "confidence": live_data.explain(feed)["class_confidence"],
            "reason": feed["reason"],
        }
    )


def signal_feed(stamp: data.LiveStamp, version: str | None, tickers: tuple[str, ...]) -> None:
    st.subheader("Signal changes")
    feed = live_data.signal_feed(live_data.signal_changes(stamp, version, tickers))
    if feed.empty:
        st.caption(
            f"No change of signal in the last {live_data.SIGNAL_LOOKBACK.days} days of market time."
        )
        return
    st.caption(
        f"The latest {len(feed)} changes of the serving model's signal across the universe, "
        "newest first (market time)."
    )
    st.dataframe(
        feed_view(feed),
        column_config=FEED_COLUMNS,
        hide_index=True,
        width="stretch",
        key="signal_changes",
    )


def model_notice(version: str | None) -> None:
    problem = escape_markdown(live.model_problem() or "", max_chars=300)
    if version is None and problem:
        st.warning(f"No model is serving: {problem}. Fix or roll back the registry (Model lab).")
    elif version is None:
        st.info(
            "No model is trained yet, so there are no signals: prices below still update live. "
            "Train one with **Retrain** in the Model lab (or `python -m ml.lifecycle.pipeline`); "
            "signals appear here by themselves once a model is promoted.",
            icon=":material/model_training:",
        )
    elif problem:
        st.warning(f"The newest registry entry could not be loaded: {problem}")


def summary(frame: pd.DataFrame, stamp: data.LiveStamp, version: str | None) -> None:
    actions = frame["action"].value_counts()
    cols = st.columns(5)
    stamp_metric(cols[0], "Newest bar", stamp.bars_ts)
    stamp_metric(cols[1], "Newest signal", stamp.signal_ts)
    cols[2].metric("BUY", int(actions.get("BUY", 0)))
    cols[3].metric("SELL", int(actions.get("SELL", 0)))
    cols[4].metric("HOLD", int(actions.get("HOLD", 0)))
    settings = get_settings()
    st.caption(
        f"Serving model **{escape_markdown(version or 'none')}** (versions are named by their "
        f"training's server time) · {ui.market_clock_note()} · triggers: BUY at both P(UP) ≥ "
        f"{settings.buy_threshold:.2f}, SELL at both P(DOWN) ≥ {settings.sell_threshold:.2f}"
    )


def scorer_notice(scorer: live.ScorerState) -> None:
    """Say plainly when the signals shown are not current."""
    newest = ui.fmt_market(scorer.newest_scored) if scorer.newest_scored else "none"
    if scorer.state == "never":
        st.warning(
            "The scoring worker has not reported yet, so new bars are not being scored: start "
            "it with `python -m ml.serving.scoring_worker` (supervisord's `scoring_worker` "
            "program). "
            f"Newest signal: {newest}."
        )
    elif scorer.state in ("down", "stopped"):
        age = ui.fmt_age(scorer.beat_age_s or 0.0)
        what = "stopped" if scorer.state == "stopped" else f"silent for {age}"
        st.error(
            f"The scoring worker is {what}: the signals below are from bar {newest} and "
            "are not current. supervisord restarts it; see its log (`scoring_worker.log`)."
        )
    elif scorer.state == "behind":
        minutes = int((scorer.behind or pd.Timedelta(0)).total_seconds() // 60)
        st.warning(
            f"The scoring worker is behind: the newest signal is for bar {newest}, "
            f"{minutes} bar-minute(s) before the newest stored bar. It catches up by itself."
        )
    if scorer.error:
        st.warning(f"Scoring problem reported by the worker: {escape_markdown(scorer.error)}")


def scorer_line(scorer: live.ScorerState | None) -> str:
    """The worker's state in one caption phrase."""
    if scorer is None:
        return "no model serving"
    if scorer.newest_scored is None:
        return f"scoring worker: {scorer.state}, no signal yet"
    line = (
        f"scoring worker: {scorer.state}, newest bar scored "
        f"{ui.fmt_market(scorer.newest_scored, '%H:%M')}"
    )
    if scorer.behind is not None:
        line += f", {int(scorer.behind.total_seconds() // 60)} min behind the newest bar"
    if scorer.pass_ms is not None:
        line += f", last pass {scorer.pass_ms:.0f} ms"
    return line


def stamp_metric(col: DeltaGenerator, label: str, ts: pd.Timestamp | None) -> None:
    """A bar time as a metric: the minute (market time, UTC) as the value, the zone and the
    day in the label, New York time in the help."""
    day = "" if ts is None else f" · {ts:%a %m-%d}"
    col.metric(
        f"{label} (UTC){day}",
        "—" if ts is None else f"{ts:%H:%M}",
        help=None if ts is None else f"Market time; {ui.fmt_new_york(ts, '%a %m-%d %H:%M')}.",
    )


@st.fragment(run_every=get_settings().app_refresh_s)
def live_board() -> None:
    """Redrawn every refresh period without reloading the page or the models."""
    started = time.perf_counter()
    settings = get_settings()
    with ui.guard(retry=False):
        serving = live.serving()
        version = serving.champion.version if serving.champion else None
        model_notice(version)
        ui.model_notices(serving)
        quality_view.held_notice()
        stamp = data.live_stamp(version)
        scorer = live.scorer_state(stamp.bars_ts, stamp.signal_ts) if version else None
        if scorer is not None:
            scorer_notice(scorer)
        frame = live_data.live_table(stamp, version, tuple(settings.universe))
        if frame["bar_ts"].isna().all():
            st.info(
                "No bars in the database yet: start the price ingestor "
                "(`python -m workers.price_ingestor`). This page updates by itself."
            )
            return
        summary(frame, stamp, version)
        st.dataframe(
            board_view(frame),
            column_config=columns(spark_range(frame)),
            hide_index=True,
            width="stretch",
            height=36 * (len(frame) + 1) + 4,
            key="live_table",
        )
        if version is not None:
            signal_feed(stamp, version, tuple(settings.universe))
        render_ms = (time.perf_counter() - started) * 1000
        st.caption(
            f"Refreshed {ui.fmt_server(pd.Timestamp.now(tz='UTC'))} in {render_ms:.0f} ms, "
            f"every {settings.app_refresh_s:g} s · {scorer_line(scorer)} · each signal: "
            f"{ui.DISCLAIMER_SHORT}"
        )


st.title("Live signals")
ui.disclaimer()
live_board()
