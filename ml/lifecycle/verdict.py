"""What a comparison says, in words: the gate's reasons and the model lab's verdict cards.

A comparison is a `ml.lifecycle.bootstrap.PairedDelta`: the challenger's macro-F1 minus another's
(the champion's, a baseline's) on the same bars, with the (alpha, 1 - alpha) quantiles of its paired
block bootstrap. Its word follows the interval alone:

- **better**: the interval lies wholly above zero;
- **worse**: wholly below zero;
- **not distinguishable**: it contains zero.

Promotion asks more than "better": the gain must also reach `PROMOTION_MARGIN` (`passes`).

What would change a verdict that cannot tell yet: a block bootstrap's interval narrows about as
1/sqrt(n) with the bars compared, so if the observed gain held, the interval would leave zero
after about n * (s / |delta|)^2 bars, s being the distance from the estimate to the bound on
zero's side (`more_bars`). The live card turns that into session minutes at the scoreboard's
current rate of scored bars a minute.

`card` gathers one challenger's verdicts: the gate's held-out report and the live scoreboard side
by side, on the served signal and per network.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from ml.lifecycle.bootstrap import PairedDelta
from ml.lifecycle.report import ValidationReport
from ml.lifecycle.scoreboard import MIN_BARS, Scoreboard
from ml.lifecycle.signal_metrics import SignalMetrics
from ml.training.baselines import BASELINE_NAMES, BASELINES

Word = Literal["better", "worse", "not distinguishable", "no interval", "too early", "not compared"]
Tone = Literal["better", "worse", "mixed", "open"]
Source = Literal["held-out window", "live"]
FIGURES = {
    "signal": "served signal (BUY/SELL/HOLD)",
    "lstm": "LSTM",
    "transformer": "Transformer",
    "networks": "both networks (mean macro-F1)",
}
CARD_FIGURES = ("signal", "lstm", "transformer")
T = TypeVar("T")


def in_order(by_baseline: dict[str, T]) -> dict[str, T]:
    """`by_baseline` in the baselines' order (stored reports come back from jsonb re-ordered)."""
    rank = {name: i for i, name in enumerate(BASELINES)}
    return dict(sorted(by_baseline.items(), key=lambda kv: rank.get(kv[0], len(rank))))


MIN_BLOCKS = 4  # an interval resampled from fewer 30-minute blocks of bars says nothing


def word_for(delta: PairedDelta) -> Word:
    """better / worse / not distinguishable, from the interval alone; too early while the bars
    span fewer than `MIN_BLOCKS` of the bootstrap's time blocks (its resamples can then barely
    differ, and a zero-width interval would read as a verdict)."""
    if delta.blocks < MIN_BLOCKS:
        return "too early"
    if math.isnan(delta.low) or math.isnan(delta.high):
        return "no interval"
    if delta.low > 0:
        return "better"
    if delta.high < 0:
        return "worse"
    return "not distinguishable"


def passes(delta: PairedDelta, margin: float) -> bool:
    """The gate's rule: a gain of at least `margin` and an interval wholly above zero."""
    return delta.blocks >= MIN_BLOCKS and delta.delta >= margin and delta.low > 0


def figures_text(delta: PairedDelta) -> str:
    return f"Δ {delta.delta:+.4f}, interval {delta.low:+.4f} … {delta.high:+.4f}"


def more_bars(delta: PairedDelta) -> int | None:
    """More bars for the interval to leave zero if the observed gain held (0: it already has;
    None: no number would, as no gain was observed or there is no interval)."""
    word = word_for(delta)
    if word in ("better", "worse"):
        return 0
    if word != "not distinguishable" or delta.delta == 0 or delta.n == 0:
        return None
    reach = delta.delta - delta.low if delta.delta > 0 else delta.high - delta.delta
    if reach <= 0:
        return None
    return max(1, math.ceil(delta.n * (reach / abs(delta.delta)) ** 2 - delta.n))


def judgement(delta: PairedDelta, margin: float, against: str, figure: str) -> str:
    """The gate's sentence for a comparison (never "not demonstrably better" for an interval
    wholly below zero)."""
    word, numbers = word_for(delta), f"{FIGURES[figure]} macro-F1 {figures_text(delta)}"
    if passes(delta, margin):
        return f"better than {against} by at least the margin {margin} ({numbers})"
    if word == "better":
        return f"better than {against} but by less than the margin {margin} ({numbers})"
    if word == "worse":
        return f"worse than {against} ({numbers}: wholly below zero)"
    if word == "no interval":
        return f"no interval against {against}: too few time blocks ({numbers})"
    return f"not distinguishable from {against} ({numbers}: includes zero)"


class Verdict(BaseModel):
    """One figure from one source: the challenger against the champion (or a baseline)."""

    figure: str
    source: Source
    against: str | None = None  # None: nothing to compare with
    word: Word
    delta: PairedDelta | None = None
    more_bars: int | None = None

    @property
    def text(self) -> str:
        if self.delta is None:
            return self.word
        return f"{self.word}: {figures_text(self.delta)} ({self.delta.n:,} bars)"


def verdict(delta: PairedDelta | None, figure: str, source: Source, against: str | None) -> Verdict:
    if delta is None:
        return Verdict(figure=figure, source=source, against=against, word="not compared")
    return Verdict(
        figure=figure,
        source=source,
        against=against,
        word=word_for(delta),
        delta=delta,
        more_bars=more_bars(delta),
    )


class Card(BaseModel):
    """One challenger's verdict card."""

    challenger: str
    champion: str
    held_out_champion: str | None = None  # whom the held-out report compared it with
    held_out_span: tuple[str, str] | None = None  # the gate's window (UTC, market time)
    live_span: tuple[str, str] | None = None  # the scoreboard's bars (UTC, market time)
    verdicts: dict[str, dict[str, Verdict]] = Field(default_factory=dict)  # figure -> source
    baselines: dict[str, Verdict] = Field(default_factory=dict)  # held out, served signal
    not_beaten: list[str] = Field(default_factory=list)  # baselines it did not beat, held out
    champion_not_beating: list[str] = Field(default_factory=list)  # baselines, held out
    headline: str
    tone: Tone
    tilt: list[str] = Field(default_factory=list)
    change: list[str] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)  # figures per source and version
    gate: str | None = None


def _held_out(report: ValidationReport | None, figure: str) -> Verdict:
    if report is None:
        return Verdict(figure=figure, source="held-out window", word="not compared")
    against = f"champion {report.champion}" if report.champion else None
    return verdict(report.vs_champion.get(figure), figure, "held-out window", against)


def _live(board: Scoreboard | None, figure: str, challenger: str) -> Verdict:
    if board is None:
        return Verdict(figure=figure, source="live", word="not compared")
    against = f"champion {board.champion}"
    if board.too_early:
        return Verdict(figure=figure, source="live", against=against, word="too early")
    found = [c for c in board.comparisons if c.challenger == challenger]
    return verdict(found[0].deltas.get(figure) if found else None, figure, "live", against)


DECISIVE = ("better", "worse")


def _tone(word: Word) -> Tone:
    return "better" if word == "better" else "worse"


def reconcile(held: Verdict, live: Verdict) -> tuple[str, Tone]:
    """The headline: the served signal's held-out and live verdicts read together."""
    h, lv = held.word, live.word
    if h in DECISIVE and lv in DECISIVE and h != lv:
        return (
            f"The held-out window says {h}, the live bars say {lv}: the two disagree; the live "
            "bars are the newer evidence, the held-out window the larger one.",
            "mixed",
        )
    if h in DECISIVE and h == lv:
        text = f"{h.capitalize()} than the champion on the served signal, held out and live."
        return text, _tone(h)
    if h in DECISIVE:
        return (
            f"{h.capitalize()} than {held.against} on the served signal over the held-out "
            f"window; the live bars cannot tell yet ({lv}).",
            _tone(h),
        )
    if lv in DECISIVE:
        return (
            f"{lv.capitalize()} than the champion on the served signal over the live bars; "
            + (
                "the held-out window could not tell."
                if h == "not distinguishable"
                else f"no held-out comparison with the champion ({h})."
            ),
            _tone(lv),
        )
    if "not distinguishable" in (h, lv):
        return (
            "Not distinguishable from the champion on the served signal yet (held out: "
            f"{h}; live: {lv}).",
            "open",
        )
    return f"No verdict yet (held out: {h}; live: {lv}).", "open"


def _share(value: float) -> str:
    return "no call" if math.isnan(value) else f"{value:.0%}"


def tilt(source: Source, new: SignalMetrics, old: SignalMetrics) -> str:
    """How the challenger's calls lean, beside the champion's."""
    return (
        f"{source.capitalize()}: the challenger calls BUY on {new.call_share('BUY'):.1%} of the "
        f"bars (champion {old.call_share('BUY'):.1%}) and SELL on {new.call_share('SELL'):.1%} "
        f"(champion {old.call_share('SELL'):.1%}); of its BUY calls "
        f"{_share(new.wrong_way('BUY'))} landed on DOWN bars (champion "
        f"{_share(old.wrong_way('BUY'))}), of its SELL calls {_share(new.wrong_way('SELL'))} on "
        f"UP bars (champion {_share(old.wrong_way('SELL'))})."
    )


SESSION_MINUTES = 390  # a regular XNYS session


def _duration(minutes: float) -> str:
    """Session time: minutes, hours, or (regular, 6.5-hour) sessions."""
    if minutes < 120:
        return f"{minutes:,.0f} session minutes"
    if minutes < 2 * SESSION_MINUTES:
        return f"{minutes / 60:,.1f} session hours"
    return f"{minutes / SESSION_MINUTES:,.0f} sessions"


def change(held: Verdict, live: Verdict, board: Scoreboard | None) -> list[str]:
    """What would change the served signal's verdicts."""
    out = []
    if live.word == "too early" and board is not None:
        out.append(
            f"Live: a verdict needs at least {MIN_BARS} scored bars with outcomes spanning "
            f"{MIN_BLOCKS} half-hours of the market ({board.n_bars} bars over "
            f"{board.n_minutes} minutes so far)."
        )
    elif live.word == "not distinguishable" and live.delta is not None:
        if live.more_bars is None:
            out.append(
                "Live: no gain either way so far (Δ 0); more bars settle it only once one "
                "version's calls come true more often than the other's."
            )
        else:
            rate = board.n_bars / board.n_minutes if board and board.n_minutes else 0.0
            when = (
                f": {_duration(live.more_bars / rate)} at the current {rate:,.0f} scored bars "
                "a minute"
                if rate > 0
                else ""
            )
            out.append(
                f"Live: about {live.more_bars:,} more scored bars would settle it if the gap "
                f"held{when} (the interval narrows about as 1/√bars)."
            )
    elif live.word in DECISIVE and live.delta is not None:
        side = "above" if live.word == "better" else "below"
        out.append(
            f"Live: the interval lies wholly {side} zero after {live.delta.n:,} bars; it is "
            "read again as every bar's outcome arrives."
        )
    if held.word == "not distinguishable" and held.delta is not None and held.more_bars:
        factor = (held.delta.n + held.more_bars) / held.delta.n
        out.append(
            f"Held out: a window about {factor:.1f}× as long ({held.more_bars:,} more bars) "
            "would be needed to tell them apart there."
        )
    return out


def signal_row(source: str, version: str, role: str, s: SignalMetrics) -> dict[str, Any]:
    """The served signal's figures as one table row."""
    return {
        "source": source,
        "version": version,
        "role": role,
        "signal macro-F1": s.macro_f1,
        **{f"{a} precision": s.precision.get(a) for a in ("BUY", "SELL", "HOLD")},
        **{f"{a} recall": s.recall.get(a) for a in ("BUY", "SELL", "HOLD")},
        "BUY/SELL hit rate": None if s.hit_rate is None else s.hit_rate.value,
        "BUY calls": s.calls.get("BUY", 0),
        "SELL calls": s.calls.get("SELL", 0),
        "P&L after costs": s.pnl.total_return,
        "bars": s.n,
    }


def _signals(
    report: ValidationReport | None, board: Scoreboard | None, challenger: str
) -> list[tuple[Source, str, str, SignalMetrics]]:
    """(source, version, role, signal figures) of champion and challenger, where known."""
    out: list[tuple[Source, str, str, SignalMetrics]] = []
    if report is not None:
        for version in (report.champion, challenger):
            result = report.models.get(version) if version else None
            if result is not None and result.signal is not None:
                role = "challenger" if version == challenger else "champion"
                out.append(("held-out window", str(version), role, result.signal))
    if board is not None and not board.too_early:
        for version in (board.champion, challenger):
            score = board.versions.get(version)
            if score is not None and score.signal is not None:
                out.append(("live", version, score.role, score.signal))
    return out


def _tilts(signals: list[tuple[Source, str, str, SignalMetrics]]) -> list[str]:
    by = {(src, role): s for src, _, role, s in signals}
    sources: tuple[Source, ...] = ("held-out window", "live")
    return [
        tilt(src, by[(src, "challenger")], by[(src, "champion")])
        for src in sources
        if (src, "challenger") in by and (src, "champion") in by
    ]


def card(
    challenger: str, report: ValidationReport | None, board: Scoreboard | None, champion: str
) -> Card:
    """The verdict card of `challenger` against the serving `champion`.

    Parameters
    ----------
    challenger, champion : the versions.
    report : the gate's newest held-out report of `challenger` (None: never validated).
    board : the live scoreboard of the champion and its challengers (None: not available).
    """
    verdicts = {
        f: {
            "held-out window": _held_out(report, f),
            "live": _live(board, f, challenger),
        }
        for f in CARD_FIGURES
    }
    held, live = verdicts["signal"]["held-out window"], verdicts["signal"]["live"]
    headline, tone = reconcile(held, live)
    signals = _signals(report, board, challenger)
    baselines: dict[str, Verdict] = {}
    not_beating: list[str] = []
    if report is not None:
        for name, delta in in_order(report.vs_baselines.get(challenger, {})).items():
            label = BASELINE_NAMES.get(name, name)
            baselines[name] = verdict(delta, "signal", "held-out window", label)
        margin = report.gate.margin or 0.0
        if report.champion:
            not_beating = [
                n
                for n, d in in_order(report.vs_baselines.get(report.champion, {})).items()
                if not passes(d, margin)
            ]
    return Card(
        challenger=challenger,
        champion=champion,
        held_out_champion=report.champion if report else None,
        held_out_span=(report.window.start, report.window.end) if report else None,
        live_span=(
            (board.first_bar, board.last_bar)
            if board is not None and board.first_bar and board.last_bar
            else None
        ),
        verdicts=verdicts,
        baselines=baselines,
        not_beaten=list(report.gate.not_beaten) if report else [],
        champion_not_beating=not_beating,
        headline=headline,
        tone=tone,
        tilt=_tilts(signals),
        change=change(held, live, board),
        rows=[signal_row(src, v, role, s) for src, v, role, s in signals],
        gate=None if report is None else f"{report.gate.decision}: {report.gate.reason}",
    )
