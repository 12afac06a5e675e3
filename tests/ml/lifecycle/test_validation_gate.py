"""The champion/challenger gate on the simulated market, with real trained models.

The gate judges the served signal (the dual-model action). Quick models trained on the planted
signal do not beat the logistic-regression and gradient-boosted-tree baselines' signals on the
held-out window, so where a test needs a pair that beats every baseline it gives the gate
baselines that know nothing (every class equally likely: their signal is HOLD throughout).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from config.settings import get_settings
from db.reads import read_from_db
from db.writes import write_to_db
from ml.lifecycle.report import parse_report
from ml.models.registry import promote, read_registry
from ml.training.dataset import RawData
from workers.sources.simulated import SimulatedMarket

TICKERS = ["AAPL", "MSFT", "JPM", "KO", "XOM", "DIS"]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("validation_gate")]


# The two versions are trained once per test process: pytest-xdist may tear the module fixture
# down between two tests of its group and set it up again; the bars are written again then.
_TRAINED: dict[str, object] = {}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Planted-signal bars in the database, a model trained on them ("better") and one trained
    on a pure random walk of the same dates ("worse")."""
    from ml.lifecycle.pipeline import training_cutoff
    from ml.training.train_model import train, train_from_raw

    root = _TRAINED.get("root") or tmp_path_factory.mktemp("gate")
    env = {
        "MODELS_DIR": str(root / "models"),
        "MODEL_CONFIG_PATH": str(root / "registry.json"),
        "DATA_DIR": str(root / "var"),
        "UNIVERSE": ",".join(TICKERS),
        "TRAIN_EPOCHS": "3",
        "BOOTSTRAP_SAMPLES": "200",
    }
    # module-wide settings; undone at teardown, and also when the set-up fails half-way
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        from db.connections import execute

        execute("TRUNCATE bars_1m, signals, outcomes, model_evaluations, model_events")
        start, end = pd.Timestamp("2026-10-19", tz="UTC"), pd.Timestamp("2026-11-07", tz="UTC")
        bars = SimulatedMarket(seed=11, planted_signal=1.0).history(TICKERS, start, end)
        write_to_db(bars.assign(source="simulated"), table="bars_1m")
        if not _TRAINED:
            settings = get_settings()
            cutoff = training_cutoff(settings)
            better = train(settings, end=cutoff, quick=True).name
            noise = SimulatedMarket(seed=12, planted_signal=0.0).history(TICKERS, start, cutoff)
            worse = train_from_raw(RawData(noise), settings, quick=True).name
            _TRAINED.update(better=better, worse=worse, cutoff=cutoff, root=root)
        yield dict(_TRAINED)
    get_settings.cache_clear()


def _reset_registry():
    get_settings().model_config_path.unlink(missing_ok=True)


def _know_nothing(meta, tickers, window, X_eval, settings):
    """Baselines saying every class is equally likely: their signal is HOLD on every bar."""
    from ml.training.baselines import BASELINES

    return {name: np.full((len(X_eval), 3), 1 / 3) for name in BASELINES}


@pytest.fixture
def baselines_that_know_nothing(monkeypatch):
    monkeypatch.setattr("ml.lifecycle.evaluation.baseline_predictions", _know_nothing)


def test_a_truly_better_challenger_is_promoted(trained, baselines_that_know_nothing):
    from ml.lifecycle.validate_model import validate

    _reset_registry()
    promote(trained["worse"], by="cli", reason="start from the weak model")
    report = validate(trained["better"])
    gate = report.gate
    assert gate.decision == "promote", gate.reason
    assert gate.figure == "signal" and gate.against == f"champion {trained['worse']}"
    assert gate.delta_f1 is not None and gate.ci_low is not None
    assert gate.delta_f1 >= get_settings().promotion_margin and gate.ci_low > 0
    assert set(report.vs_champion) == {"signal", "lstm", "transformer", "networks"}
    assert report.vs_champion["signal"].delta == pytest.approx(gate.delta_f1)
    better, worse = (report.models[trained[k]].signal for k in ("better", "worse"))
    assert better is not None and worse is not None
    assert gate.delta_f1 == pytest.approx(better.macro_f1 - worse.macro_f1)
    champion = read_registry().champion
    assert champion is not None and champion.version == trained["better"]
    assert not champion.provisional
    assert set(report.baselines) == {"majority", "logistic", "gbt"}
    assert set(report.models) == {trained["better"], trained["worse"]}
    stored = parse_report(
        json.loads((get_settings().models_dir / trained["better"] / "evaluation.json").read_text())
    )
    assert stored == report
    row = read_from_db(
        "SELECT promoted FROM model_evaluations WHERE challenger = :c", {"c": trained["better"]}
    )
    assert row["promoted"].tolist() == [True]


def test_a_worse_challenger_is_rejected(trained):
    from ml.lifecycle.validate_model import validate

    _reset_registry()
    promote(trained["better"], by="cli", reason="the good model serves")
    report = validate(trained["worse"])
    assert report.gate.decision == "reject"
    # the served signal's interval lies wholly below zero: the gate says so
    assert report.gate.ci_high is not None and report.gate.ci_high < 0
    assert report.gate.reason.startswith(f"worse than champion {trained['better']}")
    champion = read_registry().champion
    assert champion is not None and champion.version == trained["better"]
    assert pd.Timestamp(report.window.start) > trained["cutoff"] - pd.Timedelta(days=1)


def test_a_pair_that_gradient_boosted_trees_beat_is_not_proven(trained):
    """No champion yet, and the baselines' signals from the real fitted baselines: the quick
    planted-signal pair beats the majority class, but gradient-boosted trees beat it on the
    served signal, so it serves provisionally and every page says which baselines it did not
    beat."""
    from ml.lifecycle.validate_model import validate

    _reset_registry()
    report = validate(trained["better"])
    gate = report.gate
    assert gate.decision == "provisional", gate.reason
    vs = report.vs_baselines[trained["better"]]
    assert vs["gbt"].high < 0  # gradient-boosted trees' signal is better
    assert vs["majority"].low > 0
    assert "gbt" in gate.not_beaten and "majority" not in gate.not_beaten
    assert "worse than gradient-boosted trees" in gate.reason
    assert set(report.baseline_signals) == {"majority", "logistic", "gbt"}
    champion = read_registry().champion
    assert champion is not None and champion.provisional
    assert "gradient-boosted trees" in (champion.provisional_reason or "")


def test_first_model_without_an_edge_serves_provisionally_until_one_proves_itself(
    trained, monkeypatch
):
    """No champion yet: a challenger that does not beat the baselines still serves (the
    workbench is not left empty), marked provisional with the reason every page shows; the
    first challenger that beats every baseline replaces it as a proven champion."""
    from ml.lifecycle.validate_model import validate

    _reset_registry()
    first = validate(trained["worse"])
    assert first.gate.decision == "provisional", first.gate.reason
    champion = read_registry().champion
    assert champion is not None and champion.version == trained["worse"]
    assert champion.provisional and champion.provisional_reason
    reason = champion.provisional_reason
    assert reason.startswith("unproven: did not beat ") and "see the model lab" in reason
    assert any(n in reason for n in ("majority", "logistic", "gradient")), reason
    row = read_from_db(
        "SELECT promoted FROM model_evaluations WHERE challenger = :c ORDER BY at DESC LIMIT 1",
        {"c": trained["worse"]},
    )
    assert row["promoted"].tolist() == [False]  # served, not promoted on evidence
    monkeypatch.setattr("ml.lifecycle.evaluation.baseline_predictions", _know_nothing)
    second = validate(trained["better"])
    assert second.gate.decision == "promote", second.gate.reason
    assert "baselines" in second.gate.reason  # judged against the baselines, not the unproven
    champion = read_registry().champion
    assert champion is not None and champion.version == trained["better"]
    assert not champion.provisional


def test_a_promotion_made_while_validation_ran_is_not_overwritten(trained, monkeypatch):
    """Validation evaluates the challenger against champion A for minutes; meanwhile an analyst
    promotes B. The gate passes the challenger, but its promotion is refused: B stays champion,
    the history shows the analyst's promotion and the refusal, the stored report says why, and
    the run ends normally."""
    import shutil

    from ml.lifecycle.validate_model import validate
    from ml.models.metadata import read_metadata_file

    _reset_registry()
    a, c, b = trained["worse"], trained["better"], "20000101T000000Z"
    models = get_settings().models_dir
    shutil.copytree(models / a, models / b)  # another version, the analyst's choice
    read_metadata_file(models / b / "metadata.json").model_copy(update={"version": b}).write(
        models / b / "metadata.json"
    )

    def analyst_promotes_meanwhile(*args):  # type: ignore[no-untyped-def]
        promote(b, by="analyst:ana", reason="promoted while validation ran")
        return _know_nothing(*args)

    monkeypatch.setattr("ml.lifecycle.evaluation.baseline_predictions", analyst_promotes_meanwhile)
    try:
        promote(a, by="cli", reason="start from the weak model")
        report = validate(c)
    finally:
        shutil.rmtree(models / b)
    gate = report.gate
    assert report.champion == a and gate.decision == "reject"
    assert gate.reason.startswith(
        f"not promoted: promotion of {c} refused: the champion changed since it was read "
        f"(expected {a}, now {b})"
    )
    assert f"the gate had said promote: better than champion {a}" in gate.reason
    registry = read_registry()
    assert registry.champion is not None and registry.champion.version == b
    last = registry.history[-1]
    assert (last.event, last.version, last.by) == ("promoted", b, "analyst:ana")
    events = read_from_db(
        "SELECT event, version, actor FROM model_events ORDER BY id DESC LIMIT 2"
    ).values.tolist()
    assert events == [["refused", c, "validation"], ["promoted", b, "analyst:ana"]]
    row = read_from_db(
        "SELECT promoted, report FROM model_evaluations WHERE challenger = :c "
        "ORDER BY id DESC LIMIT 1",
        {"c": c},
    ).iloc[0]
    assert not row["promoted"] and parse_report(row["report"]).gate == gate


def test_overlapping_window_is_refused(trained):
    from ml.lifecycle.evaluation import ValidationRefused, check_no_overlap, evaluate
    from ml.models.model_loader import load_version

    _reset_registry()
    meta = load_version(trained["better"]).metadata
    _, train_end = meta.ranges()[0]
    inside = (train_end - pd.Timedelta(hours=1), train_end + pd.Timedelta(days=3))
    with pytest.raises(ValidationRefused, match="overlaps the training data"):
        check_no_overlap(inside, meta)
    with pytest.raises(ValidationRefused, match="overlaps"):
        evaluate(trained["better"], window=inside)
