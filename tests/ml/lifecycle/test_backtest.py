"""The backtest: the execution rule and its P&L by hand, the statistics on synthetic returns of
known value, the out-of-sample refusal, and the as-served replay through the serving path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.settings import get_settings
from ml.lifecycle.backtest import (
    AS_SERVED,
    BARS_PER_YEAR,
    BUY_AND_HOLD,
    TOTAL,
    BacktestRefused,
    BacktestRequest,
    Costs,
    TickerBars,
    performance,
    plan_trades,
    run_backtest,
    trade_signals,
)

from ..conftest import build_version

UP_BIAS, DOWN_BIAS = (0.05, 0.05, 0.9), (0.9, 0.05, 0.05)
TICKERS = ["AAPL", "MSFT"]


def session(day: str, opens: list[float], closes: list[float]) -> pd.DataFrame:
    ts = pd.date_range(f"{day} 14:30", periods=len(opens), freq="min", tz="UTC")
    o, c = np.asarray(opens, float), np.asarray(closes, float)
    return pd.DataFrame(
        {"ts": ts, "open": o, "high": np.maximum(o, c) + 0.5, "low": np.minimum(o, c) - 0.5}
    ).assign(close=c)


# --------------------------------------------------------------------------- the rule by hand
@pytest.mark.no_db
def test_trades_and_pnl_equal_the_hand_computation() -> None:
    """Ticker A, two sessions of 8 bars, horizon 5, 10 bps per side, no slippage:

    - BUY on bar 0: long at bar 1's open (101); the BUY on bar 1 is ignored (same direction);
      the SELL on bar 3 closes it at bar 4's open (103) and opens nothing;
    - SELL on bar 5: short at bar 6's open (103); no BUY follows and the horizon (bar 10) is
      past the session, so it is closed at the session's last close (bar 7: 106);
    - a BUY on the second session's last bar opens nothing (no next bar in its session).
    Ticker B has no signal and stays flat."""
    a = pd.concat(
        [
            session("2026-03-02", [100, 101, 102, 101, 103, 104, 103, 105],
                    [101, 102, 101, 103, 104, 103, 105, 106]),
            session("2026-03-03", [106, 107, 108], [107, 108, 109]),
        ],
        ignore_index=True,
    )  # fmt: skip
    b = session("2026-03-02", [50.0] * 8, [50.0] * 8)
    paths = {"A": TickerBars.of(a), "B": TickerBars.of(b)}
    actions = {"A": np.array([1, 1, 0, -1, 0, -1, 0, 0, 0, 0, 1]), "B": np.zeros(8, int)}
    horizons = {t: np.full(len(p.ts), 5) for t, p in paths.items()}
    result = trade_signals({"v": (actions, horizons)}, paths, Costs(cost_bps=10))

    fee = 0.001
    long_net = (1 - fee) + (103 / 101 - 1) - fee * 103 / 101 - 1
    short_net = (1 - fee) - (106 / 103 - 1) - fee * 106 / 103 - 1
    trades = result.trades[result.trades["strategy"] == "v"].reset_index(drop=True)
    assert list(trades["direction"]) == ["long", "short"]
    assert list(trades["entry_price"]) == [101, 103]
    assert list(trades["exit_price"]) == [103, 106]
    assert list(trades["exit_reason"]) == ["opposite", "close"]
    assert list(trades["entry_ts"]) == [a["ts"][1], a["ts"][6]]
    assert list(trades["exit_ts"]) == [a["ts"][4], a["ts"][7]]
    assert trades["net_return"].to_numpy() == pytest.approx([long_net, short_net], abs=1e-12)

    figures = result.summary.set_index(["strategy", "ticker"])
    ticker_a = figures.loc[("v", "A")]
    assert ticker_a["total_return"] == pytest.approx((1 + long_net) * (1 + short_net) - 1)
    assert ticker_a["trades"] == 2 and ticker_a["hit_rate"] == 0.5
    assert ticker_a["exposure"] == pytest.approx(5 / 11)  # bars 1-3 and 6-7 of 11
    assert ticker_a["turnover"] == pytest.approx((1 + 103 / 101) + (1 + 106 / 103))
    gross = (103 / 101 - 1) - (106 / 103 - 1)
    assert ticker_a["costs"] == pytest.approx(gross - long_net - short_net)
    assert figures.loc[("v", "B"), "total_return"] == 0 and figures.loc[("v", "B"), "trades"] == 0
    # in total: two accounts of equal capital, not rebalanced
    total = figures.loc[("v", TOTAL)]
    assert total["total_return"] == pytest.approx(((1 + long_net) * (1 + short_net) + 1) / 2 - 1)
    assert result.equity["v"].iloc[-1] == pytest.approx(1 + total["total_return"])
    hold = figures.loc[(BUY_AND_HOLD, "A"), "total_return"]
    assert hold == pytest.approx((1 - fee) + (109 / 100 - 1) - fee * 109 / 100 - 1)


@pytest.mark.no_db
def test_fills_move_against_the_trade_by_the_slippage_model() -> None:
    bars = session("2026-03-02", [100, 100, 100, 100], [100, 100, 100, 100])
    bars["high"], bars["low"] = 101.0, 99.0  # a range of 2% of the close
    px = TickerBars.of(bars)
    action, horizon = np.array([1, 0, 0, 0]), np.full(4, 2)
    for costs, slip in ((Costs(0, "fixed", 5), 5e-4), (Costs(0, "range", range_share=0.1), 2e-3)):
        result = trade_signals({"v": ({"A": action}, {"A": horizon})}, {"A": px}, costs)
        trade = result.trades.iloc[0]
        assert trade["entry_price"] == pytest.approx(100 * (1 + slip))  # a long pays more
        assert trade["exit_price"] == pytest.approx(100 * (1 - slip))  # and receives less
        assert trade["exit_reason"] == "horizon" and trade["exit_ts"] == bars["ts"][2]


@pytest.mark.no_db
def test_the_horizon_closes_a_position_and_a_signal_on_the_exit_bar_reopens() -> None:
    last = np.full(12, 11)
    action = np.array([-1, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0])
    trades = plan_trades(action, np.full(12, 3), last).tolist()
    assert trades == [[0, 1, 3, -1, 0], [3, 4, 6, -1, 0]]


# --------------------------------------------------------------------------- the statistics
def exact(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """`values` shifted and scaled to exactly this mean and sample standard deviation."""
    z = (values - values.mean()) / values.std(ddof=1)
    return mean + std * z


@pytest.mark.no_db
def test_sharpe_and_sortino_match_synthetic_returns_of_known_value() -> None:
    rng = np.random.default_rng(7)
    per_bar = 0.01  # mean / std of a one-minute return
    returns = exact(rng.normal(size=20_000), 1e-5, 1e-3)
    figures = performance(returns)
    assert figures["sharpe"] == pytest.approx(per_bar * math.sqrt(252 * 390), rel=1e-9)
    assert figures["sharpe"] == pytest.approx(3.135, abs=1e-3)  # not 0.159 (252 daily bars)
    assert BARS_PER_YEAR == 98_280
    # +3 bp and -1 bp in turn: mean 1 bp, downside deviation sqrt(mean(min(r, 0)^2)) = 1/sqrt(2)
    alternating = np.tile([3e-4, -1e-4], 5_000)
    sortino = performance(alternating)["sortino"]
    assert sortino == pytest.approx(math.sqrt(2) * math.sqrt(BARS_PER_YEAR), rel=1e-9)


@pytest.mark.no_db
def test_drawdown_and_its_duration() -> None:
    returns = np.array([0.1, -0.5, 0.2, 0.5, 0.4, -0.1])  # 1.1 peak, 0.55 trough, back at bar 4
    figures = performance(returns)
    assert figures["max_drawdown"] == pytest.approx(-0.5)
    assert figures["drawdown_bars"] == 4  # peak at bar 0, recovered at bar 4 (1.386 >= 1.1)
    assert figures["total_return"] == pytest.approx(np.prod(1 + returns) - 1)


# --------------------------------------------------------------------------- out of sample
def feature_version(folder: Path, seed: int, bias: tuple[float, float, float]) -> str:
    """A tiny real version on the real features, biased to one class (so its signals are
    known: both models UP at about 0.9 give BUY, DOWN give SELL), trained (it says) on
    October 2026."""
    from ml.features.feature_engineering import FEATURE_COLUMNS, FeatureParams
    from ml.features.labels import LabelParams
    from ml.models.metadata import ScalerParams, read_metadata_file

    features = list(FEATURE_COLUMNS)
    build_version(folder, seed=seed, bias=bias, features=len(features))
    zero, one = [0.0] * len(features), [1.0] * len(features)
    meta = read_metadata_file(folder / "metadata.json").model_copy(
        update={
            "features": features,
            "scaler": ScalerParams(features=features, mean=zero, std=one),
            "feature_params": FeatureParams(),
            "label_params": LabelParams(1.5, 1.5, 15, 30),
            "train_range": ("2026-10-01T13:30:00+00:00", "2026-10-22T20:00:00+00:00"),
            "val_range": ("2026-10-26T13:30:00+00:00", "2026-10-30T19:59:00+00:00"),
        }
    )
    meta.write(folder / "metadata.json")
    return folder.name


@pytest.fixture(scope="session")
def biased_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("biased_versions")
    feature_version(root / "20261031T000000Z", 1, UP_BIAS)
    feature_version(root / "20261031T000001Z", 2, DOWN_BIAS)
    return root


@pytest.fixture
def biased(model_env: Path, biased_cache: Path) -> tuple[str, str]:
    """The UP- and the DOWN-biased version in the test's models folder."""
    import shutil

    shutil.copytree(biased_cache, model_env / "models")
    return "20261031T000000Z", "20261031T000001Z"


@pytest.mark.no_db
def test_a_range_overlapping_training_or_validation_is_refused_naming_both(biased) -> None:
    up, _ = biased
    request = BacktestRequest(
        versions=(up,),
        tickers=("AAPL",),
        start=pd.Timestamp("2026-10-28", tz="UTC"),
        end=pd.Timestamp("2026-11-05", tz="UTC"),
    )
    with pytest.raises(BacktestRefused) as refused:
        run_backtest(request)
    message = str(refused.value)
    assert "2026-10-28 00:00 UTC to 2026-11-05 00:00 UTC" in message  # the backtest's range
    assert "validation data of 20261031T000000Z" in message
    assert "2026-10-26 13:30 UTC to 2026-10-30 19:59 UTC" in message  # the version's range
    assert "not out of sample" in message
    # the label horizon after the validation data is refused too (15 bars after 19:59)
    late = BacktestRequest(
        versions=(up,), start=pd.Timestamp("2026-10-30T20:10", tz="UTC"), end=request.end
    )
    with pytest.raises(BacktestRefused, match="Start at 2026-10-30 20:15 UTC"):
        run_backtest(late)


@pytest.mark.no_db
def test_registry_times_are_put_on_the_market_clock(model_env) -> None:
    """A simulated clock at 60x anchored at Nov 2 14:30 when the wall clock read Dec 1 10:00:
    a promotion one real minute later happened at 15:30 market time, one 7.5 minutes later
    450 session minutes later (the next session's 15:30)."""
    import json

    from ml.lifecycle.backtest import champion_periods
    from ml.models.registry import HistoryEntry, Registry

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    anchor = {
        "kind": "simulated",
        "start": "2026-11-02T14:30:00+00:00",
        "real_start": pd.Timestamp("2026-12-01T10:00Z").timestamp(),
        "speed": 60,
    }
    (settings.data_dir / "market_clock.json").write_text(json.dumps(anchor))
    history = [
        HistoryEntry(at=at, event="promoted", version=v, previous=None, by="cli", reason="t")
        for at, v in (("2026-12-01T10:01:00+00:00", "a"), ("2026-12-01T10:07:30+00:00", "b"))
    ]
    start, end = pd.Timestamp("2026-11-01", tz="UTC"), pd.Timestamp("2026-11-10", tz="UTC")
    periods = champion_periods(Registry(history=history), start, end, settings)
    assert periods.to_dict("list") == {
        "version": ["a", "b"],
        "start": [pd.Timestamp("2026-11-02T15:30Z"), pd.Timestamp("2026-11-03T15:30Z")],
        "end": [pd.Timestamp("2026-11-03T15:30Z"), end],
    }


# --------------------------------------------------------------------------- through serving
def store_bars() -> pd.DataFrame:
    from db.writes import write_to_db
    from workers.sources.simulated import SimulatedMarket

    bars = SimulatedMarket(seed=3).history(
        TICKERS, pd.Timestamp("2026-11-02", tz="UTC"), pd.Timestamp("2026-11-05", tz="UTC")
    )
    write_to_db(bars.assign(source="test"), table="bars_1m")
    return bars


def test_the_as_served_replay_uses_the_champion_of_each_bar(biased, clean_tables, monkeypatch):
    """The UP version serves from Nov 3 15:00, the DOWN version from Nov 4 15:00 (registry
    history): bars before the first promotion are not traded, longs open on the UP version's
    bars only, shorts on the DOWN version's."""
    from ml.models.registry import HistoryEntry, Registry, write_registry

    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    up, down = biased
    bars = store_bars()
    first, second = pd.Timestamp("2026-11-03T15:00Z"), pd.Timestamp("2026-11-04T15:00Z")
    history = [
        HistoryEntry(at=first.isoformat(), event="promoted", version=up, previous=None,
                     by="cli", reason="test"),
        HistoryEntry(at=second.isoformat(), event="promoted", version=down, previous=up,
                     by="cli", reason="test"),
    ]  # fmt: skip
    write_registry(Registry(history=history))
    seen = []
    result = run_backtest(BacktestRequest(as_served=True), progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert list(result.served["version"]) == [up, down]
    assert result.first_bar == first  # from the first promotion on
    assert result.last_bar == bars["ts"].max()
    trades = result.trades[result.trades["strategy"] == AS_SERVED]
    closed_at = trades["signal_ts"] + pd.Timedelta(minutes=1)
    longs = trades["direction"] == "long"
    assert longs.any() and (~longs).any()
    assert (closed_at[longs] < second).all() and (closed_at[~longs] >= second).all()
    # every bar the UP version served signalled BUY: a long opens as soon as it is flat
    by_ticker = trades[longs & (trades["ticker"] == "AAPL")]
    assert by_ticker["signal_ts"].iloc[0] == first
    assert set(result.summary["strategy"]) == {AS_SERVED, BUY_AND_HOLD}


def test_two_versions_beside_buy_and_hold_and_the_baselines_from_the_command_line(
    biased, clean_tables, monkeypatch, tmp_path, capsys
):
    from ml.lifecycle.backtest import main

    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    up, down = biased
    bars = store_bars()
    figures_csv, trades_csv = tmp_path / "figures.csv", tmp_path / "trades.csv"
    args = ["--version", up, "--version", down, "--start", "2026-11-04", "--cost-bps", "1"]
    args += ["--slippage", "fixed", "--slippage-bps", "0.5"]
    assert main([*args, "--csv", str(figures_csv), "--trades-csv", str(trades_csv)]) == 0
    out = capsys.readouterr().out
    assert "2026-11-04 14:30 UTC to 2026-11-04 20:59 UTC" in out and "Baselines fitted" in out
    summary, trades = pd.read_csv(figures_csv), pd.read_csv(trades_csv)
    strategies = list(dict.fromkeys(summary["strategy"]))
    assert strategies == [
        up, down, "baseline: majority", "baseline: logistic", "baseline: gbt", BUY_AND_HOLD
    ]  # fmt: skip
    assert set(summary["ticker"]) == {*TICKERS, TOTAL}
    directions = trades.groupby("strategy")["direction"].agg(set)
    assert directions[up] == {"long"} and directions[down] == {"short"}
    totals = summary[summary["ticker"] == TOTAL].set_index("strategy")
    # always in the market but for the bar before each entry and the session's first bar
    assert totals.loc[up, "exposure"] > 0.8
    assert totals.loc[BUY_AND_HOLD, "exposure"] == 1.0
    # 0.5 bp of slippage on each fill, against the trade: a long pays more than the open
    first = trades[trades["strategy"] == up].iloc[0]
    opened = bars[
        (bars["ticker"] == first["ticker"]) & (bars["ts"] == pd.Timestamp(first["entry_ts"]))
    ]
    assert first["entry_price"] == pytest.approx(opened["open"].iloc[0] * (1 + 0.5e-4))


@pytest.mark.no_db
def test_the_command_line_refuses_an_overlapping_range(biased, capsys) -> None:
    from ml.lifecycle.backtest import main

    up, _ = biased
    assert main(["--version", up, "--start", "2026-10-20", "--end", "2026-11-04"]) == 4
    assert "not out of sample" in capsys.readouterr().err


def test_the_backtest_trades_the_signals_the_scorer_gives_each_bar(
    model_env, clean_tables, monkeypatch
):
    """The version's trades and figures in `run_backtest` (features a session at a time,
    windows and both models in padded batches, the vectorised rule) are those of the signals
    the scorer's step gives each bar alone after a minute-by-minute feature update."""
    from db.bars import read_bars, read_last_bars
    from ml.features.feature_engineering import required_history_bars
    from ml.models.metadata import read_metadata_file
    from ml.models.model_loader import load_version
    from tests.ml.serving.test_live_scoring import per_bar_signals

    from ..conftest import build_feature_version

    for name in ("BUY_THRESHOLD", "SELL_THRESHOLD"):
        monkeypatch.setenv(name, "0.34")  # so the small random models trade
    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    settings = get_settings()
    bars = store_bars()
    folder = build_feature_version(settings.models_dir / "20261101T000000Z", bars, seed=5)
    meta = read_metadata_file(folder / "metadata.json")
    october = {
        "train_range": ("2026-10-01T13:30:00+00:00", "2026-10-22T20:00:00+00:00"),
        "val_range": ("2026-10-26T13:30:00+00:00", "2026-10-30T19:59:00+00:00"),
    }
    meta.model_copy(update=october).write(folder / "metadata.json")
    start, end = pd.Timestamp("2026-11-04", tz="UTC"), pd.Timestamp("2026-11-05", tz="UTC")
    request = BacktestRequest(versions=(folder.name,), start=start, end=end, baselines=False)
    result = run_backtest(request)

    models = load_version(folder.name, settings)
    in_range = read_bars(TICKERS, start, end)
    warmup = read_last_bars(TICKERS, required_history_bars(models.metadata.window_length), start)
    scored = per_bar_signals(models, pd.concat([warmup, in_range]), start, settings)
    paths = {str(t): TickerBars.of(g) for t, g in in_range.groupby("ticker")}
    actions = {t: np.array([scored[(t, ts)][0] for ts in px.ts]) for t, px in paths.items()}
    horizon = models.metadata.labels.horizon_bars
    horizons = {t: np.full(len(px.ts), horizon) for t, px in paths.items()}
    expected = trade_signals({folder.name: (actions, horizons)}, paths, request.costs)
    assert {-1, 1} <= {int(v) for a in actions.values() for v in a}  # longs and shorts
    assert (result.trades["strategy"] == folder.name).sum() > 0
    pd.testing.assert_frame_equal(result.trades, expected.trades)
    pd.testing.assert_frame_equal(result.summary, expected.summary)
