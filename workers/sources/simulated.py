"""A deterministic simulated market: the demo's and the tests' source of bars, news and actions.

Everything is a pure function of (seed, ticker, session), so any range can be asked for in any
order and the same bars come back. What it models:

- session minutes from the XNYS calendar (holidays, early closes);
- a slowly mean-reverting daily level per ticker that sets each session's open (the overnight
  gap is the open against the previous session's last close), and a free intraday random walk
  from that open whose volatility is U-shaped over the session (no bridge to a pre-drawn close:
  that would make the day's drift predictable from its first minutes);
- volume following the same U-shape, with persistent high- and low-activity regimes (a Markov
  switch, about 30 minutes each); minutes without trades (no bar) at `missing_rate`;
- news events (a few per ticker per week): a headline with a sign, and a price jump in that
  direction at the event minute;
- splits (NVDA, TSLA) and quarterly dividends (the payers), raw prices reflecting them; its
  daily bars (`MarketDataSource.daily_bars`) are its minutes resampled, raw like them;
- the **planted signal** (`planted_signal` in [0, 1]): 1-minute log returns follow
  x_t = e_t + 0.15 * s * r_t * (x_{t-1} + ... + x_{t-5}), where r_t = +1 in a high-activity
  regime (momentum) and -1 in a low-activity one (mean reversion). The regime shows in the
  volume, so a model that reads recent returns *together with* relative volume can learn it,
  while a linear model of the newest bar's features cannot (the sign flips with the regime).
  s = 0 is a pure random walk: no feature predicts the future, so honest models must score at
  chance on it.
"""

from __future__ import annotations

import functools
import zlib
from datetime import date

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from config.market_calendar import session_minutes, sessions_between
from config.market_clock import SessionClock
from db.bar_rule import BAR_COLUMNS
from workers.sources.base import (
    ACTION_COLUMNS,
    MarketDataSource,
    SourceLimits,
    current_session,
    empty_bars,
)

EPOCH = "2018-01-02"
HORIZON = "2030-12-31"  # fixed, so prices never depend on the day they are asked for
DIVIDEND_PAYERS = {
    "AAPL",
    "MSFT",
    "JPM",
    "V",
    "JNJ",
    "WMT",
    "PG",
    "XOM",
    "UNH",
    "HD",
    "MA",
    "BAC",
    "KO",
    "PEP",
    "DIS",
}
SPLIT_RATIOS = {"NVDA": 4.0, "TSLA": 3.0}
MOMENTUM_LAGS = 5
MOMENTUM_COEF = 0.15
POSITIVE = [
    "{t} beats earnings expectations",
    "{t} raises full-year guidance",
    "Analysts upgrade {t} on strong demand",
    "{t} announces record buyback",
    "{t} wins major contract",
]
NEGATIVE = [
    "{t} misses revenue estimates",
    "{t} cuts outlook amid weak demand",
    "Regulators open probe into {t}",
    "{t} shares hit by downgrade",
    "{t} recalls flagship product",
]


def _tick_hash(ticker: str) -> int:
    return zlib.crc32(ticker.encode())


def _planted(e: np.ndarray, regime: np.ndarray, coef: float) -> np.ndarray:
    """x_t = e_t + coef * regime_t * (x_{t-1} + ... + x_{t-MOMENTUM_LAGS})."""
    x = np.empty_like(e)
    for t in range(len(e)):
        x[t] = e[t] + coef * regime[t] * x[max(0, t - MOMENTUM_LAGS) : t].sum()
    return x


def _u_shape(n: int) -> np.ndarray:
    """Intraday volatility profile, high at open and close, mean square 1."""
    x = np.linspace(-1.0, 1.0, n)
    prof = 0.6 + 1.4 * x**2
    return np.asarray(prof / np.sqrt(np.mean(prof**2)))


class SimulatedMarket(MarketDataSource):
    """Seeded, deterministic 1-minute market for any ticker list."""

    name = "simulated"
    limits = SourceLimits(10_000, None, None, 0.0)

    def __init__(
        self,
        seed: int = 42,
        planted_signal: float = 0.0,
        missing_rate: float = 0.01,
        events_per_session: float = 0.3,
        clock: SessionClock | None = None,
    ) -> None:
        if not 0.0 <= planted_signal <= 1.0:
            raise ValueError("planted_signal must be within [0, 1]")
        self.seed = seed
        self.planted_signal = planted_signal
        self.missing_rate = missing_rate
        self.events_per_session = events_per_session
        self.clock = clock
        self._sessions = sessions_between(EPOCH, HORIZON)
        self._index = {s: i for i, s in enumerate(self._sessions)}

    # ------------------------------------------------------------------ per ticker state
    def _params(self, ticker: str) -> tuple[float, float, float]:
        rng = np.random.default_rng([self.seed, _tick_hash(ticker), 7])
        return (
            float(rng.uniform(20, 600)),
            float(rng.uniform(0.012, 0.03)),
            float(rng.uniform(2e4, 2e5)),
        )

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - bounded, keyed on immutable args
    def _daily(self, ticker: str) -> tuple[np.ndarray, np.ndarray]:
        """Economic (unadjusted-for-actions) log open and close per session."""
        price0, vol, _ = self._params(ticker)
        rng = np.random.default_rng([self.seed, _tick_hash(ticker), 1])
        n = len(self._sessions)
        day_ret = rng.normal(0.0, vol, n)
        gap = rng.normal(0.0, 0.35 * vol, n)
        # log level mean-reverts slowly around log(price0), so prices stay plausible for years
        log_close = np.log(price0) + lfilter([1.0], [1.0, -0.995], day_ret)
        prev_close = np.concatenate([[np.log(price0)], log_close[:-1]])
        return prev_close + gap, log_close

    @functools.lru_cache(maxsize=64)  # noqa: B019
    def _raw_factor(self, ticker: str) -> np.ndarray:
        """Multiplier from economic to raw prices per session.

        Raw prices before a split are `ratio` times higher, and before a dividend
        1 / (1 - yield) higher, than the economic level they share with later sessions.
        """
        step = np.ones(len(self._sessions))
        for i, (kind, value) in self._actions_index(ticker).items():
            step[i] = value if kind == "split" else 1.0 / (1.0 - value)
        # factor[i] = product of steps of actions with ex-date after session i
        after = np.concatenate([np.cumprod(step[::-1])[::-1][1:], [1.0]])
        return after

    def _actions_index(self, ticker: str) -> dict[int, tuple[str, float]]:
        h = _tick_hash(ticker) + self.seed
        out: dict[int, tuple[str, float]] = {}
        split_at = int(self._sessions.searchsorted(pd.Timestamp("2025-01-02"))) + h % 250
        for i in range(len(self._sessions)):
            if ticker in SPLIT_RATIOS and i == split_at:  # one split, during 2025
                out[i] = ("split", SPLIT_RATIOS[ticker])
            elif ticker in DIVIDEND_PAYERS and (i + h) % 63 == 0 and i > 0:
                out[i] = ("dividend_yield", 0.004 + (h % 5) * 0.001)
        return out

    # ------------------------------------------------------------------ sessions
    def session_bars(self, ticker: str, session: pd.Timestamp) -> pd.DataFrame:
        """All bars of one session for one ticker (a copy; safe to modify)."""
        return self._session_bars(ticker, pd.Timestamp(session).normalize()).copy()

    @functools.lru_cache(maxsize=8192)  # noqa: B019
    def _session_bars(self, ticker: str, session: pd.Timestamp) -> pd.DataFrame:
        i = self._index.get(session)
        if i is None:
            return empty_bars()
        minutes = session_minutes(session)
        n = len(minutes)
        _, vol, base_volume = self._params(ticker)
        log_open, _ = self._daily(ticker)
        rng = np.random.default_rng([self.seed, _tick_hash(ticker), int(i), 2])
        prof = _u_shape(n)
        sigma = 0.8 * vol / np.sqrt(390) * prof
        e = rng.normal(0.0, 1.0, n) * sigma
        regime = self._activity_regime(ticker, int(i), n)
        if self.planted_signal > 0:
            e = _planted(e, regime, MOMENTUM_COEF * self.planted_signal)
        for minute_idx, sign in self._event_minutes(ticker, session, n):
            e[minute_idx] += sign * abs(rng.normal(6.0, 2.0)) * sigma[minute_idx]
        path = log_open[i] + np.cumsum(e)
        closes = np.exp(path)
        opens = np.exp(np.concatenate([[log_open[i]], path[:-1]]))
        wick = np.exp(np.abs(rng.normal(0, 0.3, (2, n))) * sigma)
        factor = self._raw_factor(ticker)[i]
        frame = pd.DataFrame(
            {
                "ticker": ticker,
                "ts": minutes,
                "open": np.round(opens * factor, 2),
                "high": np.round(np.maximum(opens, closes) * wick[0] * factor, 2),
                "low": np.round(np.minimum(opens, closes) / wick[1] * factor, 2),
                "close": np.round(closes * factor, 2),
                "volume": np.round(
                    base_volume * prof**2 * rng.lognormal(0, 0.4, n) * np.exp(0.6 * regime)
                ),
            }
        )
        frame["high"] = frame[["open", "high", "close"]].max(axis=1)
        frame["low"] = frame[["open", "low", "close"]].min(axis=1)
        keep = rng.random(n) >= self.missing_rate
        keep[0] = True
        return frame[keep].reset_index(drop=True)[BAR_COLUMNS]

    def _activity_regime(self, ticker: str, i: int, n: int) -> np.ndarray:
        """+1 (high activity) / -1 (low) per minute: a Markov switch, ~30 minutes per spell."""
        rng = np.random.default_rng([self.seed, _tick_hash(ticker), i, 4])
        flips = rng.random(n) < 1.0 / 30.0
        start = 1 if rng.random() < 0.5 else 0
        return np.where((np.cumsum(flips) + start) % 2 == 0, -1.0, 1.0)

    def _event_minutes(self, ticker: str, session: pd.Timestamp, n: int) -> list[tuple[int, int]]:
        i = self._index[session]
        rng = np.random.default_rng([self.seed, _tick_hash(ticker), int(i), 3])
        k = rng.poisson(self.events_per_session)
        return [(int(rng.integers(5, n - 5)), int(rng.choice([-1, 1]))) for _ in range(k)]

    def news_events(self, ticker: str, session: pd.Timestamp) -> pd.DataFrame:
        """The session's news: published_at (UTC), headline, sign (+1 good, -1 bad)."""
        session = pd.Timestamp(session).normalize()
        if session not in self._index:
            return pd.DataFrame(columns=["ticker", "published_at", "headline", "sign"])
        minutes = session_minutes(session)
        rows = []
        for k, (m, sign) in enumerate(self._event_minutes(ticker, session, len(minutes))):
            pool = POSITIVE if sign > 0 else NEGATIVE
            rows.append(
                {
                    "ticker": ticker,
                    "published_at": minutes[m],
                    "headline": pool[(m + k) % len(pool)].format(t=ticker),
                    "sign": sign,
                }
            )
        return pd.DataFrame(rows, columns=["ticker", "published_at", "headline", "sign"])

    # ------------------------------------------------------------------ interface
    def now(self) -> pd.Timestamp:
        return self.clock.now() if self.clock is not None else pd.Timestamp.now(tz="UTC")

    def live_start(self) -> pd.Timestamp:
        return self.clock.start if self.clock is not None else self.now()

    @property
    def clock_speed(self) -> float:
        return float(self.clock.speed) if self.clock is not None else 1.0

    @property
    def skips_closed_hours(self) -> bool:
        return self.clock is not None

    def latest_bars(
        self, tickers: list[str], now: pd.Timestamp, since: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        session = current_session(now)
        if session is None:
            return empty_bars()
        block, ts_ns = self._session_block(tuple(tickers), session)
        hi = int(np.searchsorted(ts_ns, (now - pd.Timedelta(minutes=1)).value, side="right"))
        lo = 0 if since is None else int(np.searchsorted(ts_ns, since.value, side="right"))
        return block.iloc[lo : max(lo, hi)].reset_index(drop=True)

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def _session_block(
        self, tickers: tuple[str, ...], session: pd.Timestamp
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """All tickers' bars of a session ordered by time, with their open times in ns."""
        frames = [self._session_bars(t, session) for t in tickers]
        block = pd.concat(frames, ignore_index=True) if frames else empty_bars()
        block["ts"] = block["ts"].dt.as_unit("ns")
        block = block.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)
        return block, pd.DatetimeIndex(block["ts"]).asi8

    def history(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        sessions = sessions_between(
            start.tz_convert(None).normalize(), end.tz_convert(None).normalize()
        )
        frames = [self._session_bars(t, s) for t in tickers for s in sessions]
        if not frames:
            return empty_bars()
        out = pd.concat(frames, ignore_index=True)
        out = out[(out["ts"] >= start) & (out["ts"] < end)]
        return out.sort_values(["ticker", "ts"]).reset_index(drop=True)

    def corporate_actions(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        rows = []
        for t in tickers:
            for i, (kind, value) in sorted(self._actions_index(t).items()):
                ex = self._sessions[i]
                if not (pd.Timestamp(start) <= ex <= pd.Timestamp(end)):
                    continue
                if kind == "split":
                    rows.append((t, ex.date(), "split", value))
                else:
                    prev_bars = self._session_bars(t, self._sessions[i - 1])
                    prev_raw_close = float(prev_bars["close"].iloc[-1])
                    rows.append((t, ex.date(), "dividend", round(value * prev_raw_close, 4)))
        return pd.DataFrame(rows, columns=ACTION_COLUMNS)
