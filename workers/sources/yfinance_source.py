"""The real market source: Yahoo Finance 1-minute bars through `yfinance`.

Quirks handled here, and only here:

- one `yf.download` call per poll for the whole batch of tickers (yfinance fans it out);
- its column layout: a (Price, Ticker) MultiIndex by default, (Ticker, Price) with
  `group_by="ticker"`, single-level for one ticker; index in the exchange's timezone -> UTC;
- the newest row is usually the still-forming minute: only closed minutes are returned;
- pre-/post-market rows it sometimes returns although they were not asked for are left out by
  the regular-session rule (`clean_bars`);
- tickers that failed come back as all-NaN columns and an ERROR log line of yfinance, not as an
  exception: the log lines are captured to tell rate limits and failures apart;
- rate limits (`YFRateLimitError`, HTTP 429) come in waves: retried with jittered back-off, then
  raised as `RateLimitError` so the ingestor backs off too; network errors -> `SourceError`;
- 1-minute history reaches back about 30 days, at most 7 days per request;
- intraday bars are not adjusted for splits or dividends (the corporate-action handler adjusts);
- daily bars (`daily_bars`, for the daily reconciliation) come from one `yf.download` with
  `interval="1d"`, `auto_adjust=False` (no dividend adjustment) and `repair=True` (yfinance
  repairs 100x unit slips, missing split adjustments and zero prices in Yahoo's daily data).
  Yahoo's daily OHLC are adjusted for every split up to today (volume multiplied by the
  ratio): that is undone with the splits Yahoo returns with the bars, so a daily bar is in the
  prices traded that day, like the stored minutes; the download therefore runs to today.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from core.timeutil import NEW_YORK
from db.bar_rule import BAR_COLUMNS
from workers.common import with_retries
from workers.sources.base import (
    ACTION_COLUMNS,
    DAILY_COLUMNS,
    HistoryOutOfReachError,
    MarketDataSource,
    RateLimitError,
    SourceError,
    SourceLimits,
    clean_bars,
    closed_sessions,
    empty_bars,
    empty_daily,
    final_only,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

EXCHANGE_TZ = NEW_YORK
PRICE_FIELDS = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
RATE_LIMIT_MARKERS = ("YFRateLimitError", "Too Many Requests", "Rate limited")


class _ErrorCapture(logging.Handler):
    """Collects the ERROR lines yfinance logs for tickers it could not fetch."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().strip()
        if message and "Failed download" not in message:
            self.messages.append(message)


@contextmanager
def _captured_yf_errors() -> Iterator[_ErrorCapture]:
    logger = logging.getLogger("yfinance")
    capture = _ErrorCapture()
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)


def _raise_for_errors(messages: list[str], what: str, got_nothing: bool) -> None:
    if any(marker in m for m in messages for marker in RATE_LIMIT_MARKERS):
        raise RateLimitError(f"Yahoo rate limit during {what}: {messages[0]}")
    if messages and got_nothing:
        raise SourceError(f"Yahoo returned nothing for {what}: {'; '.join(messages[:3])}")
    if messages:
        log.warning("Yahoo: partial answer for %s: %s", what, "; ".join(messages[:5]))


def _per_ticker(frame: pd.DataFrame, tickers: list[str]) -> dict[str, pd.DataFrame]:
    """The columns of each ticker of a `yf.download` frame, in any of its layouts."""
    if isinstance(frame.columns, pd.MultiIndex):
        level0 = {str(v) for v in frame.columns.get_level_values(0)}
        ticker_level = 1 if level0 & PRICE_FIELDS.keys() else 0
        return {
            str(ticker): frame.xs(ticker, axis=1, level=ticker_level)
            for ticker in dict.fromkeys(frame.columns.get_level_values(ticker_level))
        }
    if len(tickers) == 1:
        return {tickers[0]: frame}
    raise SourceError(f"single-level columns from Yahoo for {len(tickers)} tickers")


def _prices(ticker: str, sub: pd.DataFrame) -> pd.DataFrame:
    """One ticker's OHLCV columns renamed to the shared names."""
    cols = {c: PRICE_FIELDS[c] for c in sub.columns if c in PRICE_FIELDS}
    if len(cols) < len(PRICE_FIELDS):
        raise SourceError(f"Yahoo frame for {ticker} lacks {set(PRICE_FIELDS) - set(cols)}")
    return sub[list(cols)].rename(columns=cols)


def normalise_download(frame: pd.DataFrame | None, tickers: list[str]) -> pd.DataFrame:
    """A `yf.download` frame (any layout) -> bars in the shared long shape, UTC, no NaN rows."""
    if frame is None or frame.empty:
        return empty_bars()
    parts = []
    for ticker, sub in _per_ticker(frame, tickers).items():
        part = _prices(ticker, sub).dropna(subset=["open", "high", "low", "close"], how="any")
        if part.empty:
            continue
        index = pd.DatetimeIndex(part.index)
        index = index.tz_localize(EXCHANGE_TZ) if index.tz is None else index
        parts.append(
            pd.DataFrame(
                {
                    "ticker": ticker.upper(),
                    "ts": index.tz_convert("UTC").as_unit("ns"),
                    **{c: part[c].to_numpy(dtype="float64") for c in BAR_COLUMNS[2:]},
                }
            )
        )
    if not parts:
        return empty_bars()
    bars, dropped = clean_bars(pd.concat(parts, ignore_index=True))
    if dropped:
        log.warning("Yahoo: dropped %d bar(s) without a ticker or a time", dropped)
    return bars.sort_values(["ticker", "ts"]).reset_index(drop=True)


def _split_factor(sub: pd.DataFrame) -> np.ndarray:
    """Per row, the product of the split ratios of the rows after it (Yahoo's "Stock Splits":
    the ratio on the ex-date, 0 on other days): what Yahoo divided that day's prices by."""
    if "Stock Splits" not in sub.columns:
        return np.ones(len(sub))
    ratio = pd.to_numeric(sub["Stock Splits"], errors="coerce").to_numpy(dtype="float64")
    ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)
    through = np.cumprod(ratio[::-1])[::-1]  # this row's ratio and every later one
    return np.asarray(through / ratio)


def normalise_daily(frame: pd.DataFrame | None, tickers: list[str]) -> pd.DataFrame:
    """A daily `yf.download` frame (`auto_adjust=False`, `actions=True`, any layout) -> daily
    bars (`DAILY_COLUMNS`) in the prices traded each day: Yahoo's split adjustment undone
    (prices times, volume divided by, the ratios of the later splits in the frame)."""
    if frame is None or frame.empty:
        return empty_daily()
    parts = []
    for ticker, sub in _per_ticker(frame, tickers).items():
        sub = sub.sort_index()
        factor = _split_factor(sub)
        part = _prices(ticker, sub).astype("float64")
        part[["open", "high", "low", "close"]] = part[["open", "high", "low", "close"]].mul(
            factor, axis=0
        )
        part["volume"] = part["volume"].fillna(0.0) / factor
        part = part.dropna(subset=["open", "high", "low", "close"], how="any")
        if "Repaired?" in sub.columns and sub["Repaired?"].fillna(False).astype(bool).any():
            log.info("Yahoo: yfinance repaired daily bar(s) of %s", ticker)
        index = pd.DatetimeIndex(part.index)
        if index.tz is not None:
            index = index.tz_convert(EXCHANGE_TZ).tz_localize(None)
        parts.append(part.assign(ticker=ticker.upper(), session=list(index.date)))
    if not parts:
        return empty_daily()
    daily = pd.concat(parts, ignore_index=True)[DAILY_COLUMNS]
    daily.columns.name = None
    return daily.sort_values(["ticker", "session"], ignore_index=True)


def _period_for(days: int) -> str:
    for limit, period in ((28, "1mo"), (88, "3mo"), (180, "6mo"), (360, "1y"), (720, "2y")):
        if days <= limit:
            return period
    return "max"


class YFinanceSource(MarketDataSource):
    """Yahoo Finance via yfinance (needs internet; tests replay recorded payloads)."""

    name = "yfinance"
    settle_s = 5.0  # Yahoo publishes a closed minute a few seconds late

    def __init__(
        self,
        min_request_interval_s: float = 2.0,
        timeout_s: float = 20.0,
        attempts: int = 4,
        max_wait_s: float = 30.0,
        batch_size: int = 100,
    ) -> None:
        self.limits = SourceLimits(batch_size, 30, 7, min_request_interval_s)
        self.timeout_s = timeout_s
        self._retry = with_retries((SourceError,), attempts=attempts, max_wait_s=max_wait_s)
        self._last_request = float("-inf")

    # ------------------------------------------------------------------ transport
    def _throttle(self) -> None:
        wait = self.limits.min_request_interval_s - (time.monotonic() - self._last_request)
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """One request to Yahoo, its exceptions mapped to SourceError / RateLimitError."""
        import yfinance.exceptions as yfe

        self._throttle()
        try:
            with warnings.catch_warnings():
                # yfinance still passes inplace=... to pandas, which warns on every request
                warnings.filterwarnings("ignore", message=".*inplace keyword.*")
                return fn()
        except yfe.YFRateLimitError as exc:
            raise RateLimitError(f"Yahoo rate limit during {what}") from exc
        except (OSError, yfe.YFException) as exc:  # network errors and timeouts are OSErrors
            raise SourceError(f"Yahoo request failed during {what}: {exc!r}") from exc

    def _download_once(self, tickers: list[str], window: dict[str, Any]) -> pd.DataFrame:
        import yfinance as yf

        what = f"1m download of {len(tickers)} ticker(s) {window}"
        with _captured_yf_errors() as capture:
            frame = self._call(
                what,
                lambda: yf.download(
                    tickers=tickers,
                    interval="1m",
                    group_by="column",
                    auto_adjust=False,
                    actions=False,
                    prepost=False,
                    threads=True,
                    progress=False,
                    timeout=self.timeout_s,
                    multi_level_index=True,
                    **window,
                ),
            )
        bars = normalise_download(frame, tickers)
        _raise_for_errors(capture.messages, what, got_nothing=bars.empty)
        return bars

    def _download(self, tickers: list[str], **window: Any) -> pd.DataFrame:
        size = self.limits.max_tickers_per_request
        frames = [
            self._retry(self._download_once)(tickers[i : i + size], window)
            for i in range(0, len(tickers), size)
        ]
        return pd.concat(frames, ignore_index=True) if frames else empty_bars()

    # ------------------------------------------------------------------ interface
    def latest_bars(
        self, tickers: list[str], now: pd.Timestamp, since: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        bars = final_only(self._download(tickers, period="1d"), now)
        if since is not None:
            bars = bars[bars["ts"] > since]
        return bars.reset_index(drop=True)

    def history(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        now = self.now()
        reach_days = self.limits.history_days or 30
        reach = (now - pd.Timedelta(days=reach_days)).ceil("min")
        if end <= reach:
            raise HistoryOutOfReachError(
                f"Yahoo keeps 1-minute bars for about {reach_days} days; "
                f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC is older"
            )
        if start < reach:
            log.warning("Yahoo: history from %s clipped to its reach, %s", start, reach)
            start = reach
        step = pd.Timedelta(days=self.limits.max_days_per_request or 7)
        frames, cursor = [], start
        while cursor < end:
            stop = min(cursor + step, end)
            frames.append(self._download(tickers, start=cursor, end=stop))
            cursor = stop
        bars = pd.concat(frames, ignore_index=True)
        bars = final_only(bars[(bars["ts"] >= start) & (bars["ts"] < end)], now)
        return bars.drop_duplicates(["ticker", "ts"]).sort_values(
            ["ticker", "ts"], ignore_index=True
        )

    def corporate_actions(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        period = _period_for((pd.Timestamp.now(tz=EXCHANGE_TZ).date() - start).days)
        rows: list[tuple[str, date, str, float]] = []
        for ticker in tickers:
            splits, dividends = self._retry(self._actions_once)(ticker, period)
            for kind, series in (("split", splits), ("dividend", dividends)):
                for ts, value in series.items():
                    ex = pd.Timestamp(ts).date()
                    if start <= ex <= end and float(value) > 0:
                        rows.append((ticker, ex, kind, float(value)))
        return pd.DataFrame(rows, columns=ACTION_COLUMNS)

    def daily_bars(self, tickers: list[str], start: date, end: date) -> pd.DataFrame:
        """Yahoo's daily bars of the closed sessions from `start` to `end`, repaired by
        yfinance and in the prices traded each day (see the module docstring)."""
        now = self.now()
        sessions = closed_sessions(start, end, now)
        if not sessions or not tickers:
            return empty_daily()
        # to today: the splits after the last session are needed to undo Yahoo's adjustment
        until = now.tz_convert(EXCHANGE_TZ).date() + timedelta(days=1)
        size = self.limits.max_tickers_per_request
        frames = [
            self._retry(self._daily_once)(tickers[i : i + size], sessions[0], until)
            for i in range(0, len(tickers), size)
        ]
        daily = pd.concat(frames, ignore_index=True)
        daily = daily[daily["session"].isin(set(sessions))]
        return daily.sort_values(["ticker", "session"], ignore_index=True)

    def _daily_once(self, tickers: list[str], start: date, until: date) -> pd.DataFrame:
        import yfinance as yf

        what = f"daily download of {len(tickers)} ticker(s) {start}..{until}"
        with _captured_yf_errors() as capture:
            frame = self._call(
                what,
                lambda: yf.download(
                    tickers=tickers,
                    start=start.isoformat(),
                    end=until.isoformat(),
                    interval="1d",
                    group_by="column",
                    auto_adjust=False,
                    actions=True,
                    repair=True,
                    prepost=False,
                    threads=True,
                    progress=False,
                    timeout=self.timeout_s,
                    multi_level_index=True,
                ),
            )
        daily = normalise_daily(frame, tickers)
        _raise_for_errors(capture.messages, what, got_nothing=daily.empty)
        return daily

    def _actions_once(self, ticker: str, period: str) -> tuple[pd.Series, pd.Series]:
        import yfinance as yf

        what = f"corporate actions of {ticker} ({period})"
        with _captured_yf_errors() as capture:
            tk = yf.Ticker(ticker)
            splits = self._call(what, lambda: tk.get_splits(period=period))
            dividends = self._call(what, lambda: tk.get_dividends(period=period))
        _raise_for_errors(capture.messages, what, got_nothing=True)
        return splits, dividends
