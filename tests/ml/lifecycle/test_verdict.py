"""The verdict card on fixtures with a known answer: a challenger significantly worse than the
champion, one significantly better and one indistinguishable, each held out (through the gate's
own scoring) and live (through the scoreboard's), against an offline computation on the served
signal; and the gate's rule on the served signal against the baselines."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from config.settings import Settings
from ml.features.labels import CLASSES
from ml.lifecycle.bootstrap import PairedDelta, block_index, pick_counts
from ml.lifecycle.report import Gate, ValidationReport, Window
from ml.lifecycle.scoreboard import Scoreboard, _compare, score_version
from ml.lifecycle.verdict import MIN_BLOCKS, card, more_bars, passes, word_for
from ml.serving.generate_recommendation import ACTIONS, dual_actions
from ml.training.dataset import Samples

pytestmark = pytest.mark.no_db

TICKERS = [f"T{i}" for i in range(20)]
STAMPS = pd.date_range("2026-11-02 14:30", periods=390, freq="min", tz="UTC")
SETTINGS = Settings(bootstrap_samples=200)
CHAMPION, CHALLENGER = "20261101T000000Z", "20261102T000000Z"
SKILL = {"worse": 0.15, "better": 0.75, "indistinguishable": 0.45}  # the champion's: 0.45


def market(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes, forward returns that follow them, and bar times of 20 tickers x 390 minutes."""
    rng = np.random.default_rng(seed)
    n = len(TICKERS) * len(STAMPS)
    y = rng.integers(0, 3, n)
    fwd = (y - 1) * 0.001 + rng.normal(0, 0.002, n)
    return y, fwd, STAMPS.repeat(len(TICKERS)).to_numpy("datetime64[ns]")


def network_probs(y: np.ndarray, skill: float, rng: np.random.Generator) -> np.ndarray:
    """A network right with probability `skill`, 0.7 sure of whatever it says."""
    label = np.where(rng.random(len(y)) < skill, y, rng.integers(0, 3, len(y)))
    probs = np.full((len(y), 3), 0.15)
    probs[np.arange(len(y)), label] = 0.7
    return probs


def version_probs(y: np.ndarray, skill: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: network_probs(y, skill, rng) for m in ("lstm", "transformer")}


def actions_of(probs: dict[str, np.ndarray]) -> np.ndarray:
    return dual_actions(probs["lstm"], probs["transformer"], 0.55, 0.55)


def held_out_report(case: str) -> ValidationReport:
    """The gate's report, scored by its own code (`_version_result`, `_vs_champion`) with the
    networks' outputs given."""
    from ml.lifecycle.evaluation import _version_result, _vs_champion

    y, fwd, ts = market(1)
    n = len(y)
    samples = Samples(
        X=np.arange(n, dtype=float).reshape(n, 1, 1),
        y=y,
        ticker=np.tile(TICKERS, len(STAMPS)),
        bar_ts=pd.DatetimeIndex(ts, tz="UTC"),
        fwd_return=fwd,
    )
    results, preds = {}, {}
    for version, skill, seed in ((CHAMPION, 0.45, 10), (CHALLENGER, SKILL[case], 11)):
        probs = version_probs(y, skill, seed)
        models = SimpleNamespace(
            **{m: SimpleNamespace(predict=lambda X, p=p: p[X[:, 0, 0].astype(int)])
               for m, p in probs.items()}
        )  # fmt: skip
        results[version], preds[version] = _version_result(models, samples, np.arange(n), SETTINGS)
    return ValidationReport(
        challenger=CHALLENGER,
        champion=CHAMPION,
        models=results,
        vs_champion=_vs_champion(preds[CHALLENGER], preds[CHAMPION], y, ts, SETTINGS),
        gate=Gate(decision="reject", reason="-", margin=0.01),
        window=Window(start=str(STAMPS[0]), end=str(STAMPS[-1]), n_samples=n),
    )


def live_frames(case: str) -> dict[str, pd.DataFrame]:
    """Each version's scored bars with outcomes, as `db.signals.scored_with_outcomes` reads them."""
    y, fwd, ts = market(2)
    frames = {}
    for version, skill, seed in ((CHAMPION, 0.45, 20), (CHALLENGER, SKILL[case], 21)):
        probs = version_probs(y, skill, seed)
        frames[version] = pd.DataFrame(
            {
                "ticker": np.tile(TICKERS, len(STAMPS)),
                "bar_ts": pd.DatetimeIndex(ts, tz="UTC"),
                "action": [ACTIONS[a] for a in actions_of(probs)],
                "outcome": y,
                "fwd_return": fwd,
                **{f"{m}_label": np.asarray(CLASSES)[p.argmax(1)] for m, p in probs.items()},
            }
        )
    return frames


def live_board(frames: dict[str, pd.DataFrame]) -> Scoreboard:
    """The scoreboard's figures, computed by its own code."""
    first = frames[CHAMPION]
    board = Scoreboard(
        champion=CHAMPION,
        challengers=[CHALLENGER],
        since=None,
        n_bars=len(first),
        n_tickers=len(TICKERS),
        n_minutes=int(first["bar_ts"].nunique()),
        first_bar=str(first["bar_ts"].min()),
        last_bar=str(first["bar_ts"].max()),
    )
    for version, frame in frames.items():
        role = "champion" if version == CHAMPION else "challenger"
        board.versions[version] = score_version(frame, version, role, "k", SETTINGS)
    board.comparisons.append(_compare(frames[CHAMPION], frames[CHALLENGER], CHALLENGER, SETTINGS))
    return board


SIGN_CLASS = {"BUY": 2, "SELL": 0, "HOLD": 1}


def offline(frame: pd.DataFrame) -> dict[str, float]:
    """The served signal's figures by hand (scikit-learn and numpy)."""
    y = frame["outcome"].to_numpy()
    called = frame["action"].map(SIGN_CLASS).to_numpy()
    prec, rec, _, _ = precision_recall_fscore_support(y, called, labels=[0, 1, 2], zero_division=0)
    out = {"signal macro-F1": f1_score(y, called, labels=[0, 1, 2], average="macro")}
    for i, action in enumerate(("SELL", "HOLD", "BUY")):
        out[f"{action} precision"], out[f"{action} recall"] = prec[i], rec[i]
    out["BUY calls"], out["SELL calls"] = float((called == 2).sum()), float((called == 0).sum())
    calls = called != 1
    out["BUY/SELL hit rate"] = float((called[calls] == y[calls]).mean())
    sign = frame["action"].map({"BUY": 1.0, "SELL": -1.0, "HOLD": 0.0}).to_numpy()
    pnl = sign * frame["fwd_return"].to_numpy() - np.abs(sign) * SETTINGS.cost_bps / 1e4
    per_minute = pd.Series(pnl).groupby(frame["bar_ts"].to_numpy()).sum().to_numpy()
    out["P&L after costs"] = float(np.exp(np.cumsum(per_minute / len(TICKERS)))[-1] - 1)
    return out


def offline_delta(new: pd.DataFrame, old: pd.DataFrame) -> tuple[float, float, float]:
    """Served-signal macro-F1 gain and its interval, resampling whole 30-minute blocks of rows
    with the bootstrap's draws, one scikit-learn call per resample."""
    y = new["outcome"].to_numpy()
    a, b = (f["action"].map(SIGN_CLASS).to_numpy() for f in (new, old))

    def f1(rows: np.ndarray, pred: np.ndarray) -> float:
        return float(
            f1_score(y[rows], pred[rows], labels=[0, 1, 2], average="macro", zero_division=0)
        )

    block, n_blocks = block_index(new["bar_ts"].to_numpy("datetime64[ns]"))
    members = [np.flatnonzero(block == i) for i in range(n_blocks)]
    gains = []
    for counts in pick_counts(n_blocks, SETTINGS.bootstrap_samples, 0):
        rows = np.concatenate([np.tile(members[i], c) for i, c in enumerate(counts) if c])
        gains.append(f1(rows, a) - f1(rows, b))
    alpha, every = SETTINGS.bootstrap_alpha, np.arange(len(y))
    return (
        f1(every, a) - f1(every, b),
        float(np.quantile(gains, alpha)),
        float(np.quantile(gains, 1 - alpha)),
    )


def held_out_frames(case: str) -> dict[str, pd.DataFrame]:
    """The held-out rows as frames (the actions rebuilt from the same seeded networks)."""
    y, fwd, ts = market(1)
    return {
        version: pd.DataFrame(
            {
                "bar_ts": pd.DatetimeIndex(ts, tz="UTC"),
                "action": [ACTIONS[a] for a in actions_of(version_probs(y, skill, seed))],
                "outcome": y,
                "fwd_return": fwd,
            }
        )
        for version, skill, seed in (
            (CHAMPION, 0.45, 10),
            (CHALLENGER, SKILL[case], 11),
        )
    }


EXPECTED = {
    "worse": ("worse", "Worse than the champion on the served signal, held out and live."),
    "better": ("better", "Better than the champion on the served signal, held out and live."),
    "indistinguishable": (
        "not distinguishable",
        "Not distinguishable from the champion on the served signal yet",
    ),
}


@pytest.mark.parametrize("case", list(SKILL))
def test_the_card_equals_an_offline_computation_and_its_words_follow_the_interval(case):
    report = held_out_report(case)
    frames = live_frames(case)
    board = live_board(frames)
    result = card(CHALLENGER, report, board, CHAMPION)

    sources = {"held-out window": held_out_frames(case), "live": frames}
    rows = {(r["source"], r["role"]): r for r in result.rows}
    assert len(rows) == 4  # champion and challenger, held out and live
    for source, by_version in sources.items():
        for version, frame in by_version.items():
            role = "champion" if version == CHAMPION else "challenger"
            shown, expected = rows[(source, role)], offline(frame)
            for column, value in expected.items():
                assert shown[column] == pytest.approx(value), (source, column)
        delta, low, high = offline_delta(by_version[CHALLENGER], by_version[CHAMPION])
        shown_delta = result.verdicts["signal"][source].delta
        assert shown_delta is not None
        assert (shown_delta.delta, shown_delta.low, shown_delta.high) == pytest.approx(
            (delta, low, high)
        )

    word, headline = EXPECTED[case]
    for source in ("held-out window", "live"):
        verdict = result.verdicts["signal"][source]
        assert verdict.word == word and verdict.text.startswith(f"{word}: Δ ")
    assert result.headline.startswith(headline)
    assert "demonstrably" not in result.headline
    tone = {"worse": "worse", "better": "better", "indistinguishable": "open"}[case]
    assert result.tone == tone
    live = result.verdicts["signal"]["live"]
    if case == "indistinguishable":
        assert live.delta is not None and live.delta.low < 0 < live.delta.high
        d = live.delta
        reach = d.delta - d.low if d.delta > 0 else d.high - d.delta
        expected_more = int(np.ceil(d.n * (reach / abs(d.delta)) ** 2 - d.n))
        assert live.more_bars == expected_more
        minutes = expected_more / (board.n_bars / board.n_minutes)
        [line] = [c for c in result.change if c.startswith("Live:")]
        assert f"about {expected_more:,} more scored bars" in line
        assert f"{minutes / 390:,.0f} sessions at the current 20 scored bars a minute" in line
    else:
        assert live.more_bars == 0
    if case == "better":  # the challenger's tilt is named beside the champion's
        assert any("the challenger calls BUY on" in t for t in result.tilt)


def test_the_gate_says_worse_when_the_interval_lies_below_zero():
    from ml.lifecycle.gate import decide

    def d(delta: float, low: float, high: float) -> PairedDelta:
        return PairedDelta(delta=delta, low=low, high=high, p_not_better=0.5, blocks=40, n=4000)

    every = {
        "majority": d(0.2, 0.1, 0.3),
        "logistic": d(0.1, 0.05, 0.15),
        "gbt": d(0.05, 0.02, 0.1),
    }
    worse = {"signal": d(-0.0088, -0.0157, -0.0004)}
    gate = decide(worse, every, champion="c1", proven=True, margin=0.01)
    assert gate.decision == "reject"
    assert gate.reason.startswith("worse than champion c1") and "demonstrably" not in gate.reason
    level = {"signal": d(0.0100, -0.0075, 0.0257)}
    gate = decide(level, every, champion="c1", proven=True, margin=0.01)
    assert gate.reason.startswith("not distinguishable from champion c1")
    small = {"signal": d(0.005, 0.001, 0.009)}
    assert (
        "by less than the margin"
        in decide(small, every, champion="c1", proven=True, margin=0.01).reason
    )


def test_proven_needs_every_baseline_gradient_boosted_trees_included():
    """The rule on the served signal: a pair that gradient-boosted trees beat is not proven (it
    serves provisionally when nothing serves, and does not replace a proven champion); a pair
    past every baseline is."""
    from ml.lifecycle.gate import decide

    def d(delta: float, low: float, high: float) -> PairedDelta:
        return PairedDelta(delta=delta, low=low, high=high, p_not_better=0.5, blocks=40, n=4000)

    beaten = {
        "majority": d(0.14, 0.11, 0.16),
        "logistic": d(0.03, 0.02, 0.05),
        "gbt": d(-0.05, -0.07, -0.03),
    }
    first = decide(None, beaten, champion=None, proven=False, margin=0.01)
    assert first.decision == "provisional" and first.not_beaten == ["gbt"]
    assert (
        first.against == "the gbt baseline" and "worse than gradient-boosted trees" in first.reason
    )
    over_champion = {"signal": d(0.05, 0.02, 0.08)}
    kept = decide(over_champion, beaten, champion="c1", proven=True, margin=0.01)
    assert kept.decision == "reject" and "the champion keeps serving" in kept.reason
    after_provisional = decide(None, beaten, champion="c0", proven=False, margin=0.01)
    assert after_provisional.decision == "reject"  # a provisional champion keeps serving
    past_all = {**beaten, "gbt": d(0.02, 0.011, 0.03)}
    proven = decide(None, past_all, champion=None, proven=False, margin=0.01)
    assert proven.decision == "promote" and proven.not_beaten == []
    assert proven.reason.startswith("beats all 3 baselines on the served signal")
    assert decide(over_champion, past_all, champion="c1", proven=True, margin=0.01).decision == (
        "promote"
    )


def test_more_bars_follows_the_square_root_rule():
    def d(delta: float, low: float, high: float, n: int = 1000) -> PairedDelta:
        return PairedDelta(delta=delta, low=low, high=high, p_not_better=0.5, blocks=40, n=n)

    assert more_bars(d(0.01, -0.005, 0.03)) == 1250  # (0.015 / 0.01)^2 = 2.25 x the bars
    assert more_bars(d(-0.01, -0.03, 0.01)) == 3000  # below zero: the distance to the high end
    assert more_bars(d(0.02, 0.005, 0.03)) == 0  # already decided
    assert more_bars(d(0.0, -0.01, 0.01)) is None  # no gain observed: no number of bars
    assert word_for(d(0.01, float("nan"), float("nan"))) == "no interval"


@pytest.mark.no_db
def test_an_interval_from_too_few_time_blocks_is_no_verdict() -> None:
    """Two minutes of bars fall in one half-hour block: every resample is the same, the interval
    has no width, and it must not read as 'worse' (nor pass the gate)."""
    few = PairedDelta(delta=-0.0035, low=-0.0035, high=-0.0035, p_not_better=1.0, blocks=1, n=40)
    assert word_for(few) == "too early"
    gain = few.model_copy(
        update={"delta": 0.05, "low": 0.04, "high": 0.06, "blocks": MIN_BLOCKS - 1}
    )
    assert word_for(gain) == "too early" and not passes(gain, margin=0.0)
    assert passes(gain.model_copy(update={"blocks": MIN_BLOCKS}), margin=0.0)
