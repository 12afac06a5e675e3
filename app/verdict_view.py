"""The model lab's verdict cards: a challenger against the champion, the gate's held-out result
and the live scoreboard side by side, on the served signal and per network."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import lab_data
from app.lab_view import SIGNAL_FORMAT, listed, market_time, provenance_text
from ml.lifecycle.verdict import FIGURES, Card
from ml.training.baselines import BASELINE_NAMES

TONE = {"better": st.success, "worse": st.error, "mixed": st.warning, "open": st.info}


def verdict_table(card: Card) -> pd.DataFrame:
    """One row per figure (served signal, LSTM, Transformer): held out and live, with words."""
    rows = [
        {"figure": FIGURES[figure], **{src: v.text for src, v in by_source.items()}}
        for figure, by_source in card.verdicts.items()
    ]
    return pd.DataFrame(rows, columns=["figure", "held-out window", "live"])


def verdict_card(card: Card) -> None:
    """A challenger against the champion: the gate's held-out result and the live scoreboard
    side by side, on the served signal and per network, and what would change the verdict."""
    with st.container(border=True):
        st.subheader(f"Challenger `{card.challenger}` vs champion `{card.champion}`")
        st.caption(
            " · ".join(
                f"{role} `{v}`: {provenance_text(lab_data.provenance(v))}"
                for role, v in (("challenger", card.challenger), ("champion", card.champion))
            )
        )
        TONE[card.tone](f"**Verdict:** {card.headline}")
        st.dataframe(
            verdict_table(card), hide_index=True, width="stretch", key=f"verdict_{card.challenger}"
        )
        for line in card.tilt:
            st.markdown(line)
        if card.change:
            st.markdown("**What would change the verdict.** " + " ".join(card.change))
        _card_baselines(card)
        if card.rows:
            st.dataframe(
                pd.DataFrame(card.rows),
                hide_index=True,
                width="stretch",
                key=f"verdict_figures_{card.challenger}",
                column_config=SIGNAL_FORMAT,
            )
        st.caption(_card_sources(card))


def _card_baselines(card: Card) -> None:
    if card.not_beaten:
        names = listed([BASELINE_NAMES.get(n, n) for n in card.not_beaten])
        st.warning(
            f"**Not proven:** on the held-out window its served signal did not beat {names} "
            "by the margin and the bootstrap.",
            icon=":material/warning:",
        )
    if card.champion_not_beating and card.held_out_champion:
        names = listed([BASELINE_NAMES.get(n, n) for n in card.champion_not_beating])
        st.warning(
            f"Champion `{card.held_out_champion}`'s served signal did not beat {names} on that "
            "held-out window either.",
            icon=":material/warning:",
        )
    if card.baselines:
        st.caption(
            "Against the baselines (served signal, held out): "
            + "; ".join(f"{v.against} {v.text}" for v in card.baselines.values())
            + "."
        )


def _card_sources(card: Card) -> str:
    held = "no held-out report for this challenger yet"
    if card.held_out_span:
        start, end = card.held_out_span
        against = (
            f"against champion `{card.held_out_champion}`"
            if card.held_out_champion
            else "against the baselines only (no champion then)"
        )
        held = f"held out {market_time(start)} → {market_time(end)}, {against}"
    live = "live: no scored bars with outcomes yet"
    if card.live_span:
        live = f"live {market_time(card.live_span[0])} → {market_time(card.live_span[1])}"
    gate = f" Gate: {card.gate}." if card.gate else ""
    return (
        f"Bars: {held}; {live}. Intervals: paired block bootstrap over 30-minute blocks; "
        f"better / worse when the interval lies wholly above / below zero.{gate}"
    )
