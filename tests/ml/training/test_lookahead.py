"""Causality: features at t are the same computed on data up to t or on the whole history.

The property is checked with hypothesis at many random cut points, through the same code as
`python -m ml.training.check_lookahead`; the checker is shown to catch deliberately leaky features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas_ta_classic as ta
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.features.feature_engineering import FEATURE_COLUMNS, FeatureParams, create_features
from ml.features.labels import LabelParams
from ml.training.check_lookahead import (
    feature_lookahead,
    find_lookahead,
    label_lookahead,
    main,
    random_cuts,
    truncate,
)
from workers.sources.simulated import SimulatedMarket

TICKERS = ["AAPL", "TSLA"]
START, END = pd.Timestamp("2026-03-09", tz="UTC"), pd.Timestamp("2026-03-12", tz="UTC")
PARAMS = FeatureParams(news_half_life_min=30.0, news_lookback_min=180.0)


def _inputs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    market = SimulatedMarket(21, planted_signal=0.5, events_per_session=3.0)
    bars = market.history(TICKERS, START, END)
    days = pd.date_range(START.tz_localize(None), END.tz_localize(None), freq="B")
    news = pd.concat([market.news_events(t, d) for t in TICKERS for d in days], ignore_index=True)
    news["sentiment"] = 0.9 * news["sign"]
    news["available_at"] = news["published_at"]  # known when published
    stamps = pd.date_range(START + pd.Timedelta(hours=15), END, freq="97min")
    macro = pd.DataFrame(
        {
            "series_id": np.where(np.arange(len(stamps)) % 2 == 0, "VIXCLS", "DGS10"),
            "obs_date": [(t - pd.Timedelta(days=1)).date() for t in stamps],
            "realtime_start": stamps,
            "value": np.linspace(15, 25, len(stamps)),
        }
    )
    return bars, news, macro


BARS, NEWS, MACRO = _inputs()
STAMPS = np.sort(BARS["ts"].unique())
FULL = create_features(BARS, NEWS, MACRO, params=PARAMS).set_index(["ticker", "ts"])


def leaky_features(bars: pd.DataFrame, news: object, macro: object) -> pd.DataFrame:
    """Honest features plus two that look ahead: a centered rolling mean and pandas-ta's DPO
    with centered=True (its default), which shifts the series back in time."""
    out = create_features(bars, params=PARAMS)[["ticker", "ts", "ret_1", "rsi_14"]]
    by = bars.sort_values(["ticker", "ts"]).groupby("ticker")["close"]
    out["centered_mean"] = by.transform(lambda c: c.rolling(9, center=True).mean()).to_numpy()
    out["dpo_centered"] = by.transform(lambda c: ta.dpo(c, length=10, centered=True)).to_numpy()
    return out


@pytest.mark.no_db
def test_inputs_exercise_news_and_macro() -> None:
    assert len(NEWS) > 10 and len(MACRO) > 10
    assert (FULL["news_count"] > 0).mean() > 0.3
    assert FULL["macro_vixcls"].notna().mean() > 0.5


@pytest.mark.no_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut_at=st.integers(min_value=1, max_value=len(STAMPS) - 2))
def test_features_at_t_do_not_depend_on_data_after_t(cut_at: int) -> None:
    cut = pd.Timestamp(STAMPS[cut_at])
    part = create_features(*truncate(BARS, NEWS, MACRO, cut), params=PARAMS)
    past = FULL.loc[FULL.index.get_level_values("ts") <= cut]
    part = part.set_index(["ticker", "ts"])
    assert part.index.equals(past.index)
    np.testing.assert_allclose(
        part[list(FEATURE_COLUMNS)].to_numpy(), past[list(FEATURE_COLUMNS)].to_numpy(), rtol=1e-9
    )


@pytest.mark.no_db
def test_the_property_catches_a_leaky_feature() -> None:
    leaky_full = leaky_features(BARS, None, None).set_index(["ticker", "ts"])

    @settings(max_examples=40, deadline=None, database=None)
    @given(cut_at=st.integers(min_value=1, max_value=len(STAMPS) - 2))
    def same_property_on_leaky_features(cut_at: int) -> None:
        cut = pd.Timestamp(STAMPS[cut_at])
        part = leaky_features(*truncate(BARS, None, None, cut)).set_index(["ticker", "ts"])
        past = leaky_full.loc[leaky_full.index.get_level_values("ts") <= cut]
        np.testing.assert_allclose(part.to_numpy(), past.to_numpy(), rtol=1e-9)

    with pytest.raises(AssertionError):
        same_property_on_leaky_features()


@pytest.mark.no_db
def test_checker_finds_no_lookahead_in_the_features() -> None:
    cuts = random_cuts(BARS, 25, seed=3)
    assert feature_lookahead(BARS, cuts, NEWS, MACRO, PARAMS) == {}


@pytest.mark.no_db
def test_checker_names_exactly_the_leaky_columns() -> None:
    found = find_lookahead(leaky_features, BARS, random_cuts(BARS, 10, seed=4))
    assert set(found) == {"centered_mean", "dpo_centered"}
    v = found["dpo_centered"]
    assert v.ts <= v.cut and v.truncated != v.full


@pytest.mark.no_db
def test_checker_catches_news_joined_by_day_instead_of_publication_time() -> None:
    def day_joined(bars: pd.DataFrame, news: pd.DataFrame, macro: object) -> pd.DataFrame:
        out = create_features(bars, params=PARAMS)[["ticker", "ts"]]
        day = out["ts"].dt.floor("D")
        per_day = news.groupby([news["ticker"], news["published_at"].dt.floor("D")]).size()
        out["news_today"] = [
            per_day.get((t, d), 0) for t, d in zip(out["ticker"], day, strict=True)
        ]
        return out

    found = find_lookahead(day_joined, BARS, random_cuts(BARS, 10, seed=5), NEWS)
    assert set(found) == {"news_today"}


@pytest.mark.no_db
def test_labels_look_ahead_by_at_most_the_horizon() -> None:
    params = LabelParams(1.5, 1.5, horizon_bars=15, vol_lookback=30)
    cuts = random_cuts(BARS, 15, seed=6)
    assert label_lookahead(BARS, cuts, params) == {}
    # checked as if they were allowed fewer bars than they use, they are caught
    shorter = find_lookahead(
        lambda b, n, m: label_lookahead_frame(b, params), BARS, cuts, allowed_bars=5
    )
    assert "label" in shorter


def label_lookahead_frame(bars: pd.DataFrame, params: LabelParams) -> pd.DataFrame:
    from ml.features.labels import triple_barrier_labels

    return triple_barrier_labels(bars, params)[["ticker", "ts", "label"]]


def test_command_line_on_database_data(clean_tables: None, capsys: pytest.CaptureFixture) -> None:
    from db.writes import write_to_db

    write_to_db(BARS.assign(source="simulated"), table="bars_1m")
    code = main(
        ["--tickers", ",".join(TICKERS), "--end", "2026-03-12", "--days", "4", "--cuts", "5"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "features: no lookahead at 5 cut points" in out
    assert "labels: no lookahead at 5 cut points" in out


def test_command_line_says_when_there_is_no_data(clean_tables: None, capsys) -> None:
    assert main(["--tickers", "AAPL", "--end", "2020-01-10", "--days", "2"]) == 1
    assert "no bars" in capsys.readouterr().err
