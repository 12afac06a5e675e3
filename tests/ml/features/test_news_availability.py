"""Point in time as serving sees it: an article that arrives 20 minutes after its publication.

Serving can only join an article once it is stored; training and validation join news on
`available_at` (the later of publication and arrival), so a training row between publication
and arrival does not contain the article, and equals what live scoring computed at that bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.settings import get_settings
from db.writes import write_to_db
from ml.features.feature_engineering import FEATURE_COLUMNS, NEWS_FEATURES, create_features
from ml.models.registry import promote
from workers.sources.simulated import SimulatedMarket

from ..conftest import build_feature_version

TICKERS = ["AAPL", "MSFT"]
PUBLISHED = pd.Timestamp("2026-11-04 17:00", tz="UTC")
ARRIVED = PUBLISHED + pd.Timedelta(minutes=20)
BETWEEN, AFTER = PUBLISHED + pd.Timedelta(minutes=10), ARRIVED + pd.Timedelta(minutes=5)


def article() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "article_key": ["late-1"],
            "ticker": ["AAPL"],
            "published_at": [PUBLISHED],
            "source": ["newsapi"],
            "title": ["Apple beats estimates with record profit and strong growth"],
            "url": ["https://news.example/late-1"],
            "summary": [None],
        }
    )


def live_row(features, ticker: str, ts: pd.Timestamp) -> np.ndarray:
    rows = features.history[features.position[ticker]]
    at = np.flatnonzero(rows.ts_ns[: rows.n] == ts.value)
    assert len(at) == 1, f"no live row for {ticker} at {ts}"
    return rows.values[at[0]].copy()


def promoted_feature_version(bars: pd.DataFrame) -> tuple[Any, Any]:
    """A feature version built on `bars`, promoted champion: what serving loads of it, and its
    feature parameters."""
    from ml.models.model_loader import ModelManager

    version = "20261102T000000Z"
    build_feature_version(get_settings().models_dir / version, bars)
    promote(version, by="cli", reason="test")
    serving = ModelManager().serving()
    return serving, serving.champion.metadata.feature_params


def features_by_row(raw: Any, news: pd.DataFrame | None, params: Any) -> pd.DataFrame:
    """The training path's features of `raw`'s bars with `news`, indexed by (ticker, ts)."""
    return create_features(raw.bars, news, raw.macro, params=params).set_index(["ticker", "ts"])


def test_news_that_arrives_late_is_joined_when_it_arrived_in_training_as_in_serving(
    model_env, clean_tables, monkeypatch
):
    from db.bars import adjustment_stamp
    from ml.serving.live_scoring import Scorer
    from ml.training.dataset import load_raw
    from workers.news_ingestor import store_articles
    from workers.sentiment import VaderSentiment

    monkeypatch.setenv("UNIVERSE", ",".join(TICKERS))
    get_settings.cache_clear()
    bars = SimulatedMarket(seed=8, missing_rate=0.0).history(
        TICKERS, pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-05", tz="UTC")
    )
    serving, params = promoted_feature_version(bars)
    scorer = Scorer()

    # live, at BETWEEN: the article is published but has not arrived
    write_to_db(bars[bars["ts"] <= BETWEEN].assign(source="test"), table="bars_1m")
    live_between = live_row(scorer.features(params, serving, adjustment_stamp()), "AAPL", BETWEEN)
    # it arrives 20 minutes after publication; the bars go on
    assert store_articles(article(), VaderSentiment(batch_size=8), arrived_at=ARRIVED) == 1
    write_to_db(bars[bars["ts"] > BETWEEN].assign(source="test"), table="bars_1m")
    live_after = live_row(scorer.features(params, serving, adjustment_stamp()), "AAPL", AFTER)

    # training: the same bars and news through the dataset path
    raw = load_raw(
        TICKERS, bars["ts"].min(), bars["ts"].max() + pd.Timedelta(minutes=1), params=params
    )
    assert raw.news is not None and len(raw.news) == 1
    assert raw.news["available_at"].iloc[0] == ARRIVED
    trained = features_by_row(raw, raw.news, params)[list(FEATURE_COLUMNS)]
    without = features_by_row(raw, None, params)[list(FEATURE_COLUMNS)]
    news = [FEATURE_COLUMNS.index(f) for f in NEWS_FEATURES]

    between = trained.loc[("AAPL", BETWEEN)].to_numpy()
    np.testing.assert_allclose(between, live_between, rtol=1e-9, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(between[news], without.loc[("AAPL", BETWEEN)].to_numpy()[news])
    after = trained.loc[("AAPL", AFTER)].to_numpy()
    np.testing.assert_allclose(after, live_after, rtol=1e-9, atol=1e-9, equal_nan=True)
    assert after[FEATURE_COLUMNS.index("news_count")] > 0  # known from its arrival on
    assert not np.array_equal(after[news], without.loc[("AAPL", AFTER)].to_numpy()[news])

    # the check can fail: joined at publication, the row between would contain the article
    assert list(raw.news["available_at"]) == [ARRIVED]  # the one article, known on arrival
    leaky = raw.news.assign(available_at=PUBLISHED)
    early = features_by_row(raw, leaky, params)
    assert early.loc[("AAPL", BETWEEN), "news_count"] > 0
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(
            early.loc[("AAPL", BETWEEN), list(FEATURE_COLUMNS)].to_numpy(), live_between,
            rtol=1e-9, atol=1e-9,
        )  # fmt: skip
