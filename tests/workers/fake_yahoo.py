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
        return self.payload


@dataclass
class FakeYahoo:
    now: pd.Timestamp
    failures: list[BaseException] = field(default_factory=list)  # raised by the next requests
    unknown: set[str] = field(default_factory=set)  # symbols answered with "No data found"
    requests: list[dict[str, Any]] = field(default_factory=list)

    def make_request(self, _yfdata: Any, url: str, request_method: Any, **kwargs: Any) -> Any:
        params = dict(kwargs.get("params") or {})
        symbol = url.rstrip("/").rsplit("/", 1)[-1].upper()
        self.requests.append({"symbol": symbol, **params})
        if self.failures:
            raise self.failures.pop(0)
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
        now_s = self.now.timestamp()
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


def session_bars(symbol: str) -> pd.DataFrame:
    """Every complete bar of the stored session for `symbol` (null minutes left out), UTC."""
    payload = json.loads((DATA / f"yahoo_chart_1m_{symbol}_{SESSION}.json").read_text())
    result = copy.deepcopy(payload["chart"]["result"][0])
    quote = result["indicators"]["quote"][0]
    frame = pd.DataFrame({k: quote[k] for k in ("open", "high", "low", "close", "volume")})
    frame.insert(0, "ts", pd.to_datetime(result["timestamp"], unit="s", utc=True))
    frame.insert(0, "ticker", symbol)
    return frame.dropna().reset_index(drop=True)


def install(monkeypatch: Any, cache_dir: Path, now: pd.Timestamp) -> FakeYahoo:
    """Serve yfinance from a FakeYahoo (tz cache in `cache_dir`); the source's clock is its now."""
    import yfinance as yf
    from yfinance.data import YfData

    from workers.sources.yfinance_source import YFinanceSource

    yf.set_tz_cache_location(str(cache_dir))
    fake = FakeYahoo(now=now)

    def make_request(self: object, url: str, request_method: object, **kw: object) -> object:
        return fake.make_request(self, url, request_method, **kw)

    monkeypatch.setattr(YfData, "_make_request", make_request)
    monkeypatch.setattr(YFinanceSource, "now", lambda self: fake.now)
    YfData.cache_get.cache_clear()
    return fake
