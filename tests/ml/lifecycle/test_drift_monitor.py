"""Drift checks on the simulated market: ordinary volatility raises nothing; an injected shift
rolls the champion back within a bounded number of checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from config.market_calendar import sessions_between
from config.settings import get_settings
from db.reads import read_from_db
from db.writes import write_to_db
from ml.models.registry import promote, read_registry
from workers.sources.simulated import SimulatedMarket

from ..conftest import build_feature_version

TICKERS = ["AAPL", "MSFT", "KO"]
pytestmark = pytest.mark.slow


def _reference(version_dir, bars):
    from ml.features.drift import reference_stats
    from ml.features.feature_engineering import FEATURE_COLUMNS, FeatureParams, create_features
    from ml.models.metadata import ReferenceStat, read_metadata_file

    feats = create_features(bars, None, None, params=FeatureParams())
    meta = read_metadata_file(version_dir / "metadata.json")
    stats = reference_stats(feats, list(FEATURE_COLUMNS))
    meta.reference_stats = {k: ReferenceStat.model_validate(v) for k, v in stats.items()}
    meta.train_range = (bars["ts"].min().isoformat(), bars["ts"].max().isoformat())
    meta.write(version_dir / "metadata.json")


def shifted(bars: pd.DataFrame, scale: float = 4.0) -> pd.DataFrame:
    """The same minutes with moves `scale` times larger and ten times the volume."""
    out = []
    for _, g in bars.groupby("ticker"):
        base = g["open"].iloc[0]
        o, c, h, lo = (
            base * np.exp(scale * np.log(g[col] / base)) for col in ("open", "close", "high", "low")
        )
        out.append(
            g.assign(
                open=o,
                close=c,
                high=np.maximum(h, np.maximum(o, c)),
                low=np.minimum(lo, np.minimum(o, c)),
                volume=g["volume"] * 10,
            )
        )
    return pd.concat(out, ignore_index=True)


def feed_and_check(market_bars: pd.DataFrame, chunks: int, checks: list) -> None:
    from ml.lifecycle.drift_monitor import check

    minutes = np.sort(market_bars["ts"].unique())
    for part in np.array_split(minutes, chunks):
        batch = market_bars[market_bars["ts"].isin(part)]
        write_to_db(batch.assign(source="simulated"), table="bars_1m")
        checks.append(check(checked_at=pd.Timestamp.now(tz="UTC")))


def two_versions_on_september(monkeypatch) -> SimulatedMarket:  # type: ignore[no-untyped-def]
    """Two versions trained on September's bars (the second the champion, the first the one to
    roll back to), those bars stored; returns the market for what comes after."""
    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    market = SimulatedMarket(seed=5)
    train_bars = market.history(
        TICKERS, pd.Timestamp("2026-09-01", tz="UTC"), pd.Timestamp("2026-10-01", tz="UTC")
    )
    models_dir = get_settings().models_dir
    for name, seed in (("20261001T000000Z", 1), ("20261002T000000Z", 2)):
        build_feature_version(models_dir / name, train_bars, seed=seed)
        _reference(models_dir / name, train_bars)
        promote(name, by="cli", reason="test")
    write_to_db(train_bars.assign(source="simulated"), table="bars_1m")
    return market


def test_drift_monitor_false_alarms_and_rollback(model_env, clean_tables, monkeypatch):
    market = two_versions_on_september(monkeypatch)

    checks: list = []
    month = sessions_between("2026-10-01", "2026-10-30")
    for day in month:
        feed_and_check(
            market.history(
                TICKERS, day.tz_localize("UTC"), day.tz_localize("UTC") + pd.Timedelta(days=1)
            ),
            3,
            checks,
        )
    false_alarms = sum(any(s.raised for s in c.alarms.values()) for c in checks)
    print(
        f"ordinary month: {len(month)} sessions, {len(checks)} checks, {false_alarms} raised alarms"
    )
    assert len(checks) == 3 * len(month) and false_alarms == 0
    assert read_registry().champion.version == "20261002T000000Z"
    shares = [c.figures.get("drifted_share", 0) for c in checks]
    print(f"drifted share: median {np.median(shares):.2f}, max {max(shares):.2f}")

    shift_checks: list = []
    for day in sessions_between("2026-11-02", "2026-11-04"):
        day_bars = market.history(
            TICKERS, day.tz_localize("UTC"), day.tz_localize("UTC") + pd.Timedelta(days=1)
        )
        feed_and_check(shifted(day_bars), 6, shift_checks)
        if read_registry().champion.version != "20261002T000000Z":
            break
    rolled = [i for i, c in enumerate(shift_checks) if c.rolled_back_to]
    print(f"shift: rollback after {rolled[0] + 1 if rolled else None} checks")
    assert rolled and rolled[0] + 1 <= get_settings().drift_persistence + 3
    assert read_registry().champion.version == "20261001T000000Z"
    last = read_registry().history[-1]
    assert last.event == "rolled_back" and last.by == "drift_monitor" and "drift" in last.reason
    stored = read_from_db("SELECT DISTINCT metric FROM drift_metrics")["metric"].tolist()
    assert {"psi", "ks_pvalue", "drifted_share", "alarm_data"} <= set(stored)


def test_a_planted_100x_bar_raises_no_drift_alarm_through_the_guard(
    model_env, clean_tables, monkeypatch
):
    """One 100x print in a session: the write path quarantines it, so the drift checks over the
    session see ordinary data, raise nothing and roll nothing back. Written around the guard
    (straight into bars_1m), the same print makes several times more features drift: the
    checks would see it."""
    from ml.lifecycle.drift_monitor import check
    from workers.bar_store import write_bars

    market = two_versions_on_september(monkeypatch)
    day = sessions_between("2026-10-01", "2026-10-02")[0].tz_localize("UTC")
    bars = market.history(TICKERS, day, day + pd.Timedelta(days=1))
    planted = bars.index[bars["ticker"] == "AAPL"][200]
    bars.loc[planted, ["open", "high", "low", "close"]] *= 100.0

    def checks_over(write) -> list:  # type: ignore[no-untyped-def]
        out = []
        for part in np.array_split(np.sort(bars["ts"].unique()), 3):
            write(bars[bars["ts"].isin(part)])
            out.append(check(checked_at=pd.Timestamp.now(tz="UTC")))
        return out

    guarded = checks_over(lambda b: write_bars(b, source="simulated"))
    assert not any(s.raised for c in guarded for s in c.alarms.values())
    assert all(c.rolled_back_to is None for c in guarded)
    assert read_registry().champion.version == "20261002T000000Z"
    q = read_from_db("SELECT ticker, reason FROM quarantined_bars")
    assert q.values.tolist() == [["AAPL", "unit_error"]]

    write_to_db(  # the same print around the guard
        bars.loc[[planted]].assign(source="simulated"), table="bars_1m", on_conflict="update"
    )
    around = check(checked_at=pd.Timestamp.now(tz="UTC"))
    share = (guarded[-1].figures["drifted_share"], around.figures["drifted_share"])
    print(
        f"drifted share of the features: through the guard {share[0]:.2f}, around it {share[1]:.2f}"
    )
    assert share[1] > 2 * share[0]  # one print moves the features the drift check compares


def test_a_rollback_whose_measured_champion_was_replaced_leaves_the_new_one(
    tiny_versions, clean_tables
):
    """The check measured v2 and raised an alarm; before its rollback an analyst promoted v3:
    the rollback does nothing to v3, says why, and the refusal is in the history."""
    from ml.lifecycle.drift_monitor import DriftReport, _roll_back

    v1, v2, v3 = tiny_versions()
    promote(v1, by="cli", reason="start")
    promote(v2, by="validation", reason="gate passed")
    measured = DriftReport(v2, figures={"drifted_share": 0.9})
    promote(v3, by="analyst:ana", reason="better live")
    _roll_back(measured, ["data"], get_settings())
    assert measured.rolled_back_to is None
    assert "no rollback" in measured.message and f"expected {v2}, now {v3}" in measured.message
    registry = read_registry()
    assert registry.champion.version == v3
    assert (registry.history[-1].event, registry.history[-1].by) == ("promoted", "analyst:ana")
    events = read_from_db("SELECT event, actor FROM model_events ORDER BY id").values.tolist()
    assert events[-1] == ["refused", "drift_monitor"]
    _roll_back(DriftReport(v3, figures={"drifted_share": 0.9}), ["data"], get_settings())
    assert read_registry().champion.version == v2  # the champion measured is rolled back
