"""Score every new bar once per serving version: the champion's signals and the challengers'
shadow predictions, from one incremental feature state.

`Scorer` is one per process: the scoring worker (`ml.serving.scoring_worker`, the one that serves),
the drift job's catch-up and the benchmarks.
`Scorer.score(serving)`:

1. takes the scorers' advisory lock: when another process is scoring, nothing is done (`busy`);
2. brings the feature state (`ml.features.live_features.LiveFeatures`) up to the newest stored
   bars: it is built from the last bars of each ticker at first use, when a corporate action has
   been applied (history's adjusted prices changed) and when a new session begins (so bars
   backfilled after the close count); otherwise only the bars newer than its last one per ticker
   are read and added;
3. for each version (champion and challengers): the bars it has not scored yet (at most
   `max_backlog` per ticker; on first sight only the newest), their windows in that version's
   features, scaler and window length, both TFLite models in one padded batch each, the
   dual-model recommendation; champion rows are the signals analysts see (flagged provisional
   when the champion is), challenger rows are shadow predictions; a ticker the data-quality
   guard holds (`db.quality.held_tickers`) gets HOLD with the guard's reason, from the onset on;
4. writes every row in the lock's transaction, with a `db.notify.SIGNALS` notification delivered
   on its commit; the signals key (ticker, bar, version) makes each bar scored at most once per
   version however many processes ask;
5. stores the realised outcomes of scored bars whose label horizon has passed
   (`ml.serving.outcomes`).

The same path scores a stored range of bars in batches (the backtest, `ml.lifecycle.backtest`):
`ml.serving.range_scoring` advances one feature state through the range and builds the
version's windows of any bars with `version_windows`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from config.settings import Settings, get_settings
from core.timeutil import NEW_YORK, utc, utc_now
from db.alerts import enqueue_signals
from db.bars import adjustment_stamp, read_bars, read_last_bars
from db.connections import connect, reads_on
from db.context import macro_for_features, news_for_features
from db.notify import SIGNALS, notify
from db.signals import last_scored, try_scoring_lock
from db.writes import write_to_db
from ml.features.feature_engineering import (
    HISTORY_MARGIN_BARS,
    MACRO_SERIES,
    FeatureError,
    FeatureParams,
    check_feature_list,
)
from ml.features.live_features import LiveFeatures
from ml.models.model_loader import LoadedModels, Serving
from ml.models.predict import to_prediction
from ml.serving.generate_recommendation import (
    DataHold,
    Recommendation,
    data_holds,
    get_trade_recommendation,
    hold_for_data,
)
from ml.serving.outcomes import update_outcomes

log = logging.getLogger(__name__)
FAR = pd.Timestamp("2262-01-01", tz="UTC")
OUTCOME_LOOKBACK = pd.Timedelta(days=5)  # scored bars whose outcome may still be pending


@dataclass
class ScoreResult:
    """What one scoring pass did."""

    recommendations: list[Recommendation] = field(default_factory=list)  # the champion's
    shadow: int = 0  # rows stored for challengers
    invocations: int = 0  # model calls (each a padded batch)
    scored: dict[str, int] = field(default_factory=dict)  # rows per version
    busy: bool = False  # another scorer held the lock
    outcomes: int = 0  # realised outcomes stored
    model_s: float = 0.0  # seconds spent in the TFLite models
    errors: dict[str, str] = field(default_factory=dict)  # version -> why it was not scored
    newest_bar: pd.Timestamp | None = None  # the newest stored bar the feature state holds
    newest_scored: pd.Timestamp | None = None  # the newest bar stored rows were written for


@dataclass
class _State:
    features: LiveFeatures
    adjusted_at: pd.Timestamp | None
    day: int  # New York date (yyyymmdd) of the newest bar when it was built


class Scorer:
    """The incremental scorer of one process (see the module docstring)."""

    def __init__(self, settings: Settings | None = None, max_backlog: int = 30) -> None:
        self.settings = settings or get_settings()
        self.tickers = list(self.settings.universe)
        self.max_backlog = max_backlog
        self._states: dict[FeatureParams, _State] = {}
        self.rebuilds = 0
        self.model_s = 0.0  # seconds in the TFLite models, all passes

    # ------------------------------------------------------------------ features
    def _history_bars(self, serving: Serving) -> int:
        window = max((m.metadata.window_length for m in serving.versions), default=32)
        return window + HISTORY_MARGIN_BARS + self.max_backlog

    def _context(self, features: LiveFeatures, start: pd.Timestamp, end: pd.Timestamp) -> None:
        feature_context(features, self.tickers, start, end)

    def _build(
        self, params: FeatureParams, serving: Serving, adjusted: pd.Timestamp | None
    ) -> _State:
        n = self._history_bars(serving)
        bars = read_last_bars(self.tickers, n, FAR)
        features = LiveFeatures(self.tickers, params, capacity=n)
        if not bars.empty:
            end = bars["ts"].max() + pd.Timedelta(minutes=1)
            self._context(features, bars["ts"].min(), end)
            features.update(bars)
        self.rebuilds += 1
        return _State(features, adjusted, _ny_day(bars["ts"].max()) if len(bars) else 0)

    def features(
        self, params: FeatureParams, serving: Serving, adjusted: pd.Timestamp | None
    ) -> LiveFeatures:
        """The feature state for `params`, brought up to the newest stored bars (`adjusted`:
        `db.bars.adjustment_stamp()`, which rebuilds it after a corporate action)."""
        state = self._states.get(params)
        if state is None or state.adjusted_at != adjusted:
            state = self._states[params] = self._build(params, serving, adjusted)
            return state.features
        known = [state.features.last_ts(t) for t in self.tickers]
        since = min((t for t in known if t is not None), default=None)
        if since is None:
            state = self._states[params] = self._build(params, serving, adjusted)
            return state.features
        new = read_bars(self.tickers, since + pd.Timedelta(microseconds=1), FAR)
        if new.empty:
            return state.features
        if _ny_day(new["ts"].max()) != state.day:  # a new session: rebuild with its backfills
            state = self._states[params] = self._build(params, serving, adjusted)
            return state.features
        self._context(state.features, new["ts"].min(), new["ts"].max() + pd.Timedelta(minutes=1))
        state.features.update(new)
        return state.features

    # ------------------------------------------------------------------ scoring
    def _targets(
        self, features: LiveFeatures, done: dict[str, pd.Timestamp]
    ) -> dict[str, np.ndarray]:
        """Per ticker, the bar times (UTC ns) not scored yet by the version whose `done` this
        is: on first sight only the newest, else those after its last, at most `max_backlog`."""
        out: dict[str, np.ndarray] = {}
        for ticker in self.tickers:
            rows = features.history[features.position[ticker]]
            if rows.n == 0:
                continue
            stamps = rows.ts_ns[: rows.n]
            last = done.get(ticker)
            if last is None:
                fresh = stamps[-1:]  # first sight: the newest bar only
            else:
                fresh = stamps[stamps > utc(last).value][-self.max_backlog :]
            if len(fresh):
                out[ticker] = fresh
        return out

    def inputs(
        self,
        models: LoadedModels,
        features: LiveFeatures,
        done: dict[str, pd.Timestamp] | None = None,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The version's scaled windows [n, window, F] of the bars it has not scored yet, with
        their (ticker, ts, close); `done`: the version's `last_scored` (read when not given)."""
        if done is None:
            done = last_scored([models.version], self.tickers)[models.version]
        return version_windows(models, features, self._targets(features, done))

    def _version_rows(
        self,
        models: LoadedModels,
        features: LiveFeatures,
        done: dict[str, pd.Timestamp],
        role: str,
        provisional: bool,
        holds: Mapping[str, DataHold] | None = None,
    ) -> tuple[list[Recommendation], pd.DataFrame, int]:
        keys, X = self.inputs(models, features, done)
        if len(keys) == 0:
            return [], pd.DataFrame(), 0
        before = models.invocations
        started = time.perf_counter()
        p_lstm, p_tf = models.lstm.predict(X), models.transformer.predict(X)
        self.model_s += time.perf_counter() - started
        recs = [
            get_trade_recommendation(
                to_prediction(a),
                to_prediction(b),
                ticker=str(t),
                bar_ts=ts,
                model_version=models.version,
                settings=self.settings,
            )
            for a, b, t, ts in zip(p_lstm, p_tf, keys["ticker"], keys["ts"], strict=True)
        ]
        if holds:  # a ticker the data-quality guard holds serves HOLD, with the reason
            recs = [hold_for_data(r, holds[r.ticker]) if r.ticker in holds else r for r in recs]
        rows = pd.DataFrame(
            [r.to_row(close=float(c)) for r, c in zip(recs, keys["close"], strict=True)]
        ).assign(role=role, provisional=provisional)
        return recs, rows, models.invocations - before

    def score(self, serving: Serving) -> ScoreResult:
        """One scoring pass over every serving version (see the module docstring)."""
        if not serving.versions:
            return ScoreResult()
        with connect() as conn, reads_on(conn):  # one connection for the pass's reads
            if not try_scoring_lock(conn):
                return ScoreResult(busy=True)
            adjusted = adjustment_stamp()
            result = ScoreResult()
            model_before = self.model_s
            frames = []
            done = last_scored([m.version for m in serving.versions], self.tickers)
            holds = data_holds()
            state: dict[FeatureParams, LiveFeatures] = {}  # versions sharing parameters share it
            for models in serving.versions:
                params = models.metadata.feature_params
                if params not in state:
                    state[params] = self.features(params, serving, adjusted)
                features = state[params]
                champion = models is serving.champion
                role = "champion" if champion else "shadow"
                provisional = champion and serving.provisional
                try:
                    recs, rows, calls = self._version_rows(
                        models, features, done[models.version], role, provisional, holds
                    )
                except FeatureError as exc:  # one bad version must not stop the others
                    log.error("%s %s not scored: %s", role, models.version, exc)
                    result.errors[models.version] = str(exc)
                    continue
                result.invocations += calls
                result.scored[models.version] = len(rows)
                if champion:
                    result.recommendations = recs
                else:
                    result.shadow += len(rows)
                if len(rows):
                    frames.append(rows)
            if frames:
                rows = pd.concat(frames, ignore_index=True)
                write_to_db(rows, table="signals", on_conflict="nothing", conn=conn)
                enqueue_signals(conn, rows)  # the champion's BUY/SELL alerts, in the outbox
                result.newest_scored = utc(rows["bar_ts"].max())
                notify(conn, SIGNALS, result.newest_scored.isoformat())  # delivered on commit
        result.model_s = self.model_s - model_before
        newest = max((int(st.features.last_ns.max()) for st in self._states.values()), default=None)
        newest = None if newest is None or newest == np.iinfo(np.int64).min else newest
        result.newest_bar = None if newest is None else pd.Timestamp(newest, tz="UTC")
        since = utc_now() if newest is None else pd.Timestamp(newest, tz="UTC")
        result.outcomes = update_outcomes(
            [m.metadata.labels for m in serving.versions],
            [m.version for m in serving.versions],
            since - OUTCOME_LOOKBACK,
        )
        return result


def _ny_day(ts: pd.Timestamp) -> int:
    local = utc(ts).tz_convert(NEW_YORK)
    return int(local.year * 10_000 + local.month * 100 + local.day)


def score_new_bars(
    models: LoadedModels,
    *,
    settings: Settings | None = None,
    max_backlog: int = 30,
) -> ScoreResult:
    """Score the champion's new bars once (a one-off scorer; long-running processes keep a
    `Scorer`, whose feature state carries over between passes)."""
    return Scorer(settings, max_backlog).score(Serving(models))


# --------------------------------------------------------------------------- ranges of bars


def feature_context(
    features: LiveFeatures, tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> None:
    """Give `features` the news and macro releases that bars in [start, end) join."""
    lookback = pd.Timedelta(minutes=features.params.news_lookback_min)
    features.set_context(
        news_for_features(list(tickers), start - lookback, end),
        macro_for_features(MACRO_SERIES, start, end),
    )


def version_windows(
    models: LoadedModels, features: LiveFeatures, targets: Mapping[str, np.ndarray]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The version's scaled windows [n, window, F] ending at `targets` (ticker -> bar times),
    in its features, window length and scaler, with their (ticker, ts, close)."""
    meta = models.metadata
    return features.windows(
        targets, check_feature_list(meta.features), meta.window_length, meta.feature_scaler
    )
