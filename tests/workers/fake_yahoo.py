"""A fake Yahoo chart endpoint at yfinance's transport boundary (`YfData._make_request`).

It serves the payloads of `data/` to the real yfinance code: a 1-minute session cut at the
fake's `now` (the last row being the still-forming minute with partial values, as Yahoo sends
it), `period1`/`period2` windows, daily charts with split/dividend events. Queued failures are
raised the way yfinance's transport raises them (HTTP 429 -> YFRateLimitError, curl timeouts).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"
SESSION = "2024-06-10"
SYMBOLS = ("AAPL", "MSFT", "NVDA")


@dataclass
class FakeResponse:
    payload: Any
    status_code: int = 200
    url: str = "https://query2.finance.yahoo.com/v8/finance/chart"

    @property
    def text(self) -> str:
        return json.dumps(self.payload)

    def json(self) -> Any:
        return copy.deepcopy(self.payload)  # a fresh parse each call, as requests gives


@dataclass
class FakeYahoo:
    now: pd.Timestamp
    failures: list[BaseException] = field(default_factory=list)  # raised by the next requests
    unknown: set[str] = field(default_factory=set)  # symbols answered with "No data found"
    requests: list[dict[str, Any]] = field(default_factory=list)
    # synthetic: every XNYS session's minutes for any symbol (`synthetic_chart`), at the wall
    # clock when `now` is None; else the recorded session of `SYMBOLS` only
    synthetic: bool = False
    wall_clock: bool = False

    def current(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC") if self.wall_clock else self.now

    def make_request(self, _yfdata: Any, url: str, request_method: Any, **kwargs: Any) -> Any:
        params = dict(kwargs.get("params") or {})
        symbol = url.rstrip("/").rsplit("/", 1)[-1].upper()
        self.requests.append({"symbol": symbol, **params})
        if self.failures and (not self.synthetic or params.get("interval") == "1m"):
            raise self.failures.pop(0)
        if self.synthetic and symbol not in self.unknown and params.get("interval") == "1m":
            lo = int(params.get("period1") or 0)
            hi = int(params.get("period2") or 2**40)
            if "range" in params and not params.get("period1"):  # period="1d": today's session
                lo = int((self.current() - pd.Timedelta(days=1)).timestamp())
            return FakeResponse(synthetic_chart(symbol, lo, hi, self.current()))
        if symbol in self.unknown or symbol not in SYMBOLS:
            return FakeResponse(
                {
                    "chart": {
                        "result": None,
                        "error": {"code": "Not Found", "description": "No data found"},
                    }
                },
                status_code=404,
            )
        if params.get("interval") == "1m":
            return FakeResponse(self._minutes(symbol, params))
        return FakeResponse(json.loads((DATA / f"yahoo_chart_1d_{symbol}_3mo.json").read_text()))

    def _minutes(self, symbol: str, params: dict[str, Any]) -> dict[str, Any]:
        payload = json.loads((DATA / f"yahoo_chart_1m_{symbol}_{SESSION}.json").read_text())
        result = payload["chart"]["result"][0]
        stamps = result["timestamp"]
        now_s = self.current().timestamp()
        lo = int(params.get("period1") or 0)
        hi = int(params.get("period2") or 2**40)
        keep = [i for i, t in enumerate(stamps) if lo <= t < hi and t <= now_s]
        quote = result["indicators"]["quote"][0]
        result["timestamp"] = [stamps[i] for i in keep]
        for key in quote:
            quote[key] = [quote[key][i] for i in keep]
        if keep and stamps[keep[-1]] + 60 > now_s and quote["open"][-1] is not None:
            _make_forming(quote)
        return payload


def _make_forming(quote: dict[str, list[Any]]) -> None:
    """The current minute as Yahoo sends it mid-minute: few trades so far."""
    o = quote["open"][-1]
    quote["close"][-1] = o
    quote["high"][-1] = o
    quote["low"][-1] = o
    quote["volume"][-1] = int(quote["volume"][-1] * 0.1)


def _synthetic_session(symbol: str, session: pd.Timestamp) -> tuple[list[int], dict[str, list]]:
    """One session of minutes as Yahoo sends them: 390 regular minutes, a few without trades
    (timestamp with null values), and the closing print at 16:00 with volume 0."""
    from config.market_calendar import xnys

    cal = xnys()
    opened, closed = cal.session_open(session), cal.session_close(session)
    minutes = pd.date_range(opened, closed, freq="min", inclusive="left")
    seed = int(session.strftime("%Y%m%d")) * 7 + sum(map(ord, symbol))
    rng = np.random.default_rng(seed)
    base = 50.0 + sum(map(ord, symbol)) % 300
    drift = np.cumsum(rng.normal(0, 6e-4, len(minutes)))
    close = np.round(base * np.exp(drift + 0.01 * np.sin(seed % 97)), 4)
    open_ = np.round(np.concatenate([[close[0]], close[:-1]]), 4)
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0, 4e-4, len(minutes))), 4)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0, 4e-4, len(minutes))), 4)
    volume = rng.integers(5_000, 200_000, len(minutes)).astype(object)
    quote: dict[str, list] = {
        "open": open_.tolist(),
        "high": high.tolist(),
        "low": low.tolist(),
        "close": close.tolist(),
        "volume": volume.tolist(),
    }
    for i in rng.choice(np.arange(5, len(minutes) - 5), 2, replace=False):  # no trades
        for key in quote:
            quote[key][int(i)] = None
    stamps = [int(t.timestamp()) for t in minutes]
    stamps.append(int(closed.timestamp()))  # the 16:00 closing print
    for key in ("open", "high", "low", "close"):
        quote[key].append(quote[key][-2] if quote[key][-2] is not None else float(close[-1]))
    quote["volume"].append(0)
    return stamps, quote


def synthetic_chart(symbol: str, lo: int, hi: int, now: pd.Timestamp) -> dict[str, Any]:
    """A 1-minute chart payload of every session minute in [lo, hi) up to `now`, the newest
    minute still forming when it has not closed yet."""
    from config.market_calendar import xnys

    cal = xnys()
    start = pd.Timestamp(lo, unit="s", tz="UTC")
    end = min(pd.Timestamp(hi, unit="s", tz="UTC"), now)
    sessions = cal.sessions_in_range(
        start.tz_convert(None).normalize() - pd.Timedelta(days=1), end.tz_convert(None).normalize()
    )
    stamps: list[int] = []
    quote: dict[str, list] = {k: [] for k in ("open", "high", "low", "close", "volume")}
    periods = []
    for session in sessions:
        times, values = _synthetic_session(symbol, session)
        keep = [i for i, t in enumerate(times) if lo <= t < hi and t <= now.timestamp()]
        if not keep:
            continue
        stamps += [times[i] for i in keep]
        for key in quote:
            quote[key] += [values[key][i] for i in keep]
        opened, closed = cal.session_open(session), cal.session_close(session)
        offset = int(opened.tz_convert("America/New_York").utcoffset().total_seconds())
        periods.append(
            [{"timezone": "EST" if offset == -18000 else "EDT", "start": int(opened.timestamp()),
              "end": int(closed.timestamp()), "gmtoffset": offset}]
        )  # fmt: skip
    if stamps and stamps[-1] + 60 > now.timestamp() and quote["open"][-1] is not None:
        _make_forming(quote)
    template = json.loads((DATA / f"yahoo_chart_1m_AAPL_{SESSION}.json").read_text())
    meta = template["chart"]["result"][0]["meta"]
    last_close = next((c for c in reversed(quote["close"]) if c is not None), 100.0)
    meta.update(symbol=symbol, regularMarketPrice=last_close, tradingPeriods=periods or [[]])
    if periods:
        meta["currentTradingPeriod"]["regular"] = periods[-1][0]
        meta["gmtoffset"] = periods[-1][0]["gmtoffset"]
        meta["timezone"] = periods[-1][0]["timezone"]
    result = {"meta": meta, "timestamp": stamps, "indicators": {"quote": [quote]}}
    return {"chart": {"result": [result], "error": None}}


def synthetic_bars(symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The final bars the synthetic Yahoo holds for `symbol` in [start, end): the regular
    session minutes that had trades (no null minute, no 16:00 print), UTC."""
    payload = synthetic_chart(symbol, int(start.timestamp()), int(end.timestamp()), end)
    result = payload["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    frame = pd.DataFrame({k: quote[k] for k in ("open", "high", "low", "close", "volume")})
    frame.insert(0, "ts", pd.to_datetime(result["timestamp"], unit="s", utc=True))
    frame.insert(0, "ticker", symbol)
    frame = frame.dropna()
    return frame[frame["volume"] > 0].reset_index(drop=True)


def session_bars(symbol: str) -> pd.DataFrame:
    """Every complete bar of the stored session for `symbol` (null minutes left out), UTC."""
    payload = json.loads((DATA / f"yahoo_chart_1m_{symbol}_{SESSION}.json").read_text())
    result = copy.deepcopy(payload["chart"]["result"][0])
    quote = result["indicators"]["quote"][0]
    frame = pd.DataFrame({k: quote[k] for k in ("open", "high", "low", "close", "volume")})
    frame.insert(0, "ts", pd.to_datetime(result["timestamp"], unit="s", utc=True))
    frame.insert(0, "ticker", symbol)
    return frame.dropna().reset_index(drop=True)


def install(
    monkeypatch: Any, cache_dir: Path, now: pd.Timestamp, synthetic: bool = False
) -> FakeYahoo:
    """Serve yfinance from a FakeYahoo (tz cache in `cache_dir`); the source's clock is its now."""
    import yfinance as yf
    from yfinance.data import YfData

    from workers.sources.yfinance_source import YFinanceSource

    yf.set_tz_cache_location(str(cache_dir))
    fake = FakeYahoo(now=now, synthetic=synthetic)

    def make_request(self: object, url: str, request_method: object, **kw: object) -> object:
        return fake.make_request(self, url, request_method, **kw)

    monkeypatch.setattr(YfData, "_make_request", make_request)
    monkeypatch.setattr(YFinanceSource, "now", lambda self: fake.now)
    YfData.cache_get.cache_clear()
    return fake


def install_in_process(cache_dir: Path, rate_limited_requests: int = 0) -> FakeYahoo:
    """Serve yfinance from a synthetic FakeYahoo on the wall clock for this whole process (the
    start-up tests' subprocesses load it from `tests/e2e/fake_site/sitecustomize.py`); the
    first `rate_limited_requests` requests answer HTTP 429 as Yahoo does."""
    import yfinance as yf
    from yfinance.data import YfData
    from yfinance.exceptions import YFRateLimitError

    yf.set_tz_cache_location(str(cache_dir))
    fake = FakeYahoo(now=pd.Timestamp.now(tz="UTC"), synthetic=True, wall_clock=True)
    fake.failures = [YFRateLimitError() for _ in range(rate_limited_requests)]

    def make_request(self: object, url: str, request_method: object, **kw: object) -> object:
        return fake.make_request(self, url, request_method, **kw)

    YfData._make_request = make_request  # type: ignore[method-assign]
    return fake
