"""The model lab: side-by-side report, the verdict card and the live scoreboard."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from app.ui import fmt_ts
from config.settings import get_settings
from db.connections import execute
from db.reads import read_from_db
from ml.models.registry import read_registry
from tests.app.lab_support import CHAMPION, PASSWORD, fill_form, submit
from tests.app.support import alerts, figures, open_page, table_with, texts


def metrics(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    confusion = rng.integers(5, 60, (3, 3)).tolist()
    return {
        "macro_f1": 0.4 + seed / 100,
        "accuracy": 0.45 + seed / 100,
        "log_loss": 1.05 - seed / 100,
        "ece": 0.05,
        "precision": {"DOWN": 0.4, "NEUTRAL": 0.5, "UP": 0.4},
        "recall": {"DOWN": 0.3, "NEUTRAL": 0.6, "UP": 0.35},
        "confusion": confusion,
        "calibration": {"confidence": [0.4, 0.5, 0.6], "accuracy": [0.38, 0.52, 0.57]},
    }


def report(challenger: str, champion: str, decision: str = "promote") -> dict:
    days = pd.date_range("2026-01-05", periods=5, freq="D", tz="UTC")

    def dual(growth: float) -> dict:
        curve = [[d.isoformat(), 1 + growth * i] for i, d in enumerate(days)]
        return {"equity_curve": curve, "total_return": growth * 4, "n_trades": 12}

    return {
        "challenger": challenger,
        "champion": champion,
        "window": {"start": "2026-01-05", "end": "2026-01-09", "n_samples": 7435},
        "models": {
            champion: {"lstm": metrics(1), "transformer": metrics(2), "dual": dual(0.001)},
            challenger: {"lstm": metrics(5), "transformer": metrics(6), "dual": dual(0.004)},
        },
        "baselines": {"majority": metrics(0), "logistic": metrics(1), "gbt": metrics(2)},
        "gate": {
            "decision": decision,
            "reason": "challenger macro-F1 better by 0.04, CI above the margin",
            "delta_f1": 0.04,
            "ci_low": 0.021,
            "ci_high": 0.061,
            "margin": 0.01,
        },
        "created_at": "2026-01-10T00:00:00+00:00",
    }


def signal(buy: tuple[int, int, int], sell: tuple[int, int, int], n: int = 7435) -> dict:
    """A served signal's figures: BUY calls landing on (DOWN, NEUTRAL, UP) bars, SELL calls too."""
    hold = [2200 - sell[0] - buy[0], 3000 - sell[1] - buy[1], 2235 - sell[2] - buy[2]]
    confusion = [[sell[i], hold[i], buy[i]] for i in range(3)]  # outcome x (SELL, HOLD, BUY)
    calls = {"SELL": sum(sell), "HOLD": sum(hold), "BUY": sum(buy)}
    return {
        "macro_f1": 0.33,
        "precision": {"SELL": sell[0] / sum(sell), "HOLD": hold[1] / sum(hold),
                      "BUY": buy[2] / sum(buy)},
        "recall": {"SELL": sell[0] / 2200, "HOLD": hold[1] / 3000, "BUY": buy[2] / 2235},
        "calls": calls,
        "confusion": confusion,
        "hit_rate": {"value": 0.5, "low": 0.45, "high": 0.55, "blocks": 39},
        "pnl": {"equity_curve": [], "total_return": 0.001, "n_trades": sum(buy) + sum(sell)},
        "n": n,
    }  # fmt: skip


def delta(value: float, low: float, high: float) -> dict:
    return {"delta": value, "low": low, "high": high, "p_not_better": 0.5, "blocks": 39, "n": 7435}


def worse_report(challenger: str, champion: str) -> dict:
    """The challenger's served signal significantly worse than the champion's on the held-out
    window, and gradient-boosted trees' signal better than both."""
    rep = report(challenger, champion, decision="reject")
    rep["models"][champion]["signal"] = signal(buy=(40, 60, 150), sell=(140, 60, 40))
    rep["models"][challenger]["signal"] = signal(buy=(300, 250, 350), sell=(60, 30, 20))
    rep["baseline_signals"] = {n: signal((30, 40, 90), (90, 40, 30)) for n in rep["baselines"]}
    rep["vs_champion"] = {
        "signal": delta(-0.0088, -0.0157, -0.0004),
        "lstm": delta(0.0021, -0.0050, 0.0093),
        "transformer": delta(-0.0040, -0.0120, 0.0031),
        "networks": delta(-0.0010, -0.0070, 0.0050),
    }
    rep["vs_baselines"] = {
        challenger: {"majority": delta(0.12, 0.10, 0.14), "logistic": delta(0.02, 0.012, 0.03),
                     "gbt": delta(-0.03, -0.05, -0.01)},
        champion: {"majority": delta(0.13, 0.11, 0.15), "logistic": delta(0.03, 0.02, 0.04),
                   "gbt": delta(-0.02, -0.04, -0.001)},
    }  # fmt: skip
    rep["gate"] = {
        "decision": "reject",
        "reason": f"worse than champion {champion} (served-signal macro-F1 Δ -0.0088, interval "
        "-0.0157 … -0.0004: wholly below zero)",
        "figure": "signal",
        "against": f"champion {champion}",
        "delta_f1": -0.0088,
        "ci_low": -0.0157,
        "ci_high": -0.0004,
        "margin": 0.01,
        "not_beaten": ["gbt"],
    }
    return rep


def test_the_reports_here_are_valid_gate_reports() -> None:
    from ml.lifecycle.report import parse_report

    parsed = parse_report(report("20260102T000000Z", CHAMPION, decision="provisional"))
    assert parsed.gate.decision == "provisional"
    assert parsed.models[CHAMPION].lstm.macro_f1 == pytest.approx(0.41)
    worse = parse_report(worse_report("20260102T000000Z", CHAMPION))
    assert worse.vs_champion["signal"].high < 0 and worse.gate.not_beaten == ["gbt"]
    assert worse.models[CHAMPION].signal is not None


def store_report(rep: dict, promoted: bool) -> None:
    execute(
        "INSERT INTO model_evaluations (challenger, champion, promoted, report) "
        "VALUES (:c, :p, :pr, CAST(:r AS jsonb))",
        {"c": rep["challenger"], "p": rep["champion"], "pr": promoted, "r": json.dumps(rep)},
    )


def test_champion_and_challenger_side_by_side(app_env):
    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    store_report(report(app_env.version, CHAMPION), promoted=True)
    at = open_page("lab")
    assert not at.exception and not alerts(at, "error")
    assert any("Gate decision: **PROMOTED**" in s for s in alerts(at, "success"))
    assert {m.label: m.value for m in at.metric}["Bootstrap CI low"] == "+0.0210"
    table = table_with(at, "model", "macro_f1")
    assert len(table) == 7  # 2 versions x 2 models + 3 baselines
    assert set(table["role"]) == {"champion", "challenger", "baseline"}
    charts = figures(at)
    assert {"confusion_champion", "confusion_challenger", "calibration", "equity"} <= set(charts)
    assert len(charts["equity"]["data"]) == 2
    at.radio(key="lab_kind").set_value("transformer").run()
    assert "transformer" in figures(at)["calibration"]["layout"]["title"]["text"]


def test_the_verdict_card_comes_first_and_follows_the_interval(app_env):
    """The served signal significantly worse on the held-out window (the interval wholly below
    zero): the card says "worse", never "not demonstrably better", shows the challenger's tilt,
    the baselines it did not beat, how both versions were trained, and names each clock."""
    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    challenger = app_env.version  # the newest trained version scores in shadow
    store_report(worse_report(challenger, CHAMPION), promoted=False)
    at = open_page("lab")
    assert not at.exception
    assert [h.value for h in at.header][:2] == ["Verdict", "Live scoreboard"]
    assert at.subheader[0].value == f"Challenger `{challenger}` vs champion `{CHAMPION}`"
    [headline] = [e for e in alerts(at, "error") if e.startswith("**Verdict:**")]
    assert headline == (
        f"**Verdict:** Worse than champion {CHAMPION} on the served signal over the held-out "
        "window; the live bars cannot tell yet (too early)."
    )
    verdicts = table_with(at, "figure", "held-out window", "live").set_index("figure")
    assert verdicts.loc["served signal (BUY/SELL/HOLD)", "held-out window"] == (
        "worse: Δ -0.0088, interval -0.0157 … -0.0004 (7,435 bars)"
    )
    assert verdicts.loc["LSTM", "held-out window"].startswith("not distinguishable: Δ +0.0021")
    assert set(verdicts["live"]) == {"too early"}
    assert not any("demonstrably" in t for t in texts(at))
    figures = table_with(at, "source", "role", "BUY precision", "P&L after costs")
    mine = figures.set_index("role").loc["challenger"]
    assert mine["BUY precision"] == pytest.approx(350 / 900)
    assert (mine["BUY calls"], mine["SELL calls"]) == (900, 110)
    assert any(
        "the challenger calls BUY on 12.1% of the bars (champion 3.4%)" in t
        and "of its BUY calls 33% landed on DOWN bars (champion 16%)" in t
        for t in texts(at)
    )
    assert any("Live: a verdict needs at least 30 scored bars" in t for t in texts(at))
    warnings = alerts(at, "warning")
    assert any("**Not proven:**" in w and "gradient-boosted trees" in w for w in warnings)
    assert any(f"Champion `{CHAMPION}`'s served signal did not beat" in w for w in warnings)
    trained = [t for t in texts(at) if t.startswith("challenger `")]
    assert trained and "quick run, epochs lstm 1, transformer 1 of 1" in trained[0]
    assert "training + " in trained[0] and "market time (" in trained[0]
    sources = [t for t in texts(at) if t.startswith("Bars: held out ")]
    assert sources and " market time (" in sources[0] and " New York) " in sources[0]
    [run] = [box for box in at.selectbox if box.label == "Validation run"]
    assert "server time · challenger" in run.options[0]
    assert any("Δ served-signal macro-F1" in t for t in texts(at))
    [held_out] = [  # the held-out report's served signals: 2 versions + 3 baselines' signals
        f.value for f in at.dataframe if {"version", "HOLD recall"} <= set(f.value.columns)
        and "source" not in f.value.columns
    ]  # fmt: skip
    assert len(held_out) == 5 and "baseline · gbt" in set(held_out["version"])


def test_lab_without_models_or_reports_explains_what_to_do(app_env):
    at = open_page("lab")
    assert not at.exception
    infos = alerts(at, "info")
    assert any("No champion yet" in i for i in infos)
    assert any("No validation report yet" in i for i in infos)


def test_a_validation_stored_right_after_the_first_render_shows_on_the_next_rerun(app_env):
    """The background pipeline may finish within a second of the page's first render: the
    next rerun shows its report (the lab's reads are keyed on a stamp, not a TTL)."""
    from ml.lifecycle.report import parse_report
    from ml.lifecycle.validate_model import store_report as store_validation

    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    at = open_page("lab")
    assert any("No validation report yet" in i for i in alerts(at, "info"))
    store_validation(
        parse_report(report(app_env.version, CHAMPION, decision="reject"))
    )  # as validation does
    at.run()
    assert not at.exception
    assert any("Gate decision: **REJECTED**" in e for e in alerts(at, "error"))
    assert len(table_with(at, "model", "macro_f1")) == 7


def _trained_until(version: str, ts: pd.Timestamp) -> None:
    """Pretend `version` was trained on bars up to `ts` (its validation range ends there)."""
    from ml.models.metadata import read_metadata_file

    path = get_settings().models_dir / version / "metadata.json"
    meta = read_metadata_file(path)
    start = (ts - pd.Timedelta(days=1)).isoformat()
    meta.model_copy(update={"val_range": (start, ts.isoformat())}).write(path)


def test_the_live_scoreboard_fills_as_bars_arrive_and_offers_the_challenger(app_env):
    """Champion and challenger score every new bar; once outcomes are realised the lab's
    scoreboard shows both on the same bars, and the challenger can be promoted from there."""
    feed = app_env.feed()
    last_seeded = feed.seed(hold_back=45)
    champion = app_env.promote()
    challenger = app_env.copy_version("20991231T000000Z")
    _trained_until(challenger, last_seeded)
    at = open_page("lab")
    assert not at.exception
    early = " ".join(alerts(at, "info"))
    assert "scoreboard shows its figures from 30 on" in early
    worker = app_env.worker
    arrived = 0
    for _ in range(45):
        arrived += feed.next_minute()[1]
        worker.run_pass()
    at.run()
    assert not at.exception and not alerts(at, "error")
    board = table_with(at, "version", "signal hit rate", "P&L after costs")
    assert board["version"].tolist() == [champion, challenger]
    assert board["role"].tolist() == ["champion", "challenger"]
    assert board["agrees with champion"].tolist()[1] == "100%"  # the same model files
    assert any("Δ macro-F1 +0.0000" in t for t in texts(at))
    assert "scoreboard_pnl" in figures(at)
    [caption] = [t for t in texts(at) if "every version on the same bars" in t]
    assert f"trained on bars until {fmt_ts(last_seeded)} market time (" in caption
    span = re.search(
        r"from (\S+ \S+) UTC market time \(\S+ New York\) to (\S+ \S+) UTC market time", caption
    )
    assert span is not None  # the bars compared: all after the challenger's training data
    first, last = (pd.Timestamp(t, tz="UTC") for t in span.groups())
    assert last_seeded < first < last <= last_seeded + pd.Timedelta(minutes=45)
    shadow = read_from_db(
        "SELECT bar_ts FROM signals WHERE model_version = :v AND role = 'shadow'", {"v": challenger}
    )
    after = pd.to_datetime(shadow["bar_ts"], utc=True) > last_seeded
    assert int(after.sum()) == arrived  # every bar that arrived, once
    assert worker.stats.shadow == len(shadow)
    # the verdict card reads the same scoreboard: the copy's signal is the champion's, bar for
    # bar; under 45 minutes of bars span fewer than 4 of the bootstrap's half-hour blocks, too
    # few for a verdict (the interval's resamples can barely differ)
    verdicts = table_with(at, "figure", "held-out window", "live").set_index("figure")
    assert verdicts.loc["served signal (BUY/SELL/HOLD)", "live"].startswith(
        "too early: Δ +0.0000, interval +0.0000 … +0.0000"
    )
    assert set(verdicts["held-out window"]) == {"not compared"}  # never validated
    assert any("Live: a verdict needs at least 30 scored bars" in t for t in texts(at))
    live_rows = table_with(at, "source", "role", "signal macro-F1")
    assert set(live_rows["source"]) == {"live"} and len(live_rows) == 2
    fill_form(at, "promote_challenger", "erin", PASSWORD, "ahead on the live scoreboard")
    submit(at, "Promote challenger")
    registry = read_registry()
    assert registry.champion.version == challenger
    assert registry.history[-1].reason == "ahead on the live scoreboard"


def test_a_challenger_with_undecodable_metadata_is_listed_with_its_reason(app_env):
    """The newest version, which would score in shadow, has a metadata.json that is not UTF-8:
    the verdict section names it with the reason (escaped), the champion serves on and the
    page shows everything else."""
    from app.text import escape_markdown

    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    challenger = app_env.version  # the newest trained version
    meta = app_env.models_dir / challenger / "metadata.json"
    meta.write_bytes(meta.read_bytes().replace(b"{", b"{\xff", 1))
    at = open_page("lab")
    assert not at.exception and not alerts(at, "error")
    [notice] = [w for w in alerts(at, "warning") if w.startswith("Not scoring in shadow")]
    assert f"`{challenger}`: " in notice
    assert escape_markdown(f"{challenger}/metadata.json is not UTF-8 text") in notice
    assert any("No challenger to judge" in i for i in alerts(at, "info"))
    assert any(f"**Champion:** `{CHAMPION}`" in t for t in texts(at))
    versions = table_with(at, "version", "problem").set_index("version")
    assert "is not UTF-8 text" in versions.loc[challenger, "problem"]
