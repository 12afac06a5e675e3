"""Where each feed's data comes from, as every page's banner says it: prices, news and macro,
each SIMULATED, REPLAY (a recorded file) or LIVE (with how far behind the source runs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from config.settings import Settings

Mode = Literal["SIMULATED", "REPLAY", "LIVE"]


@dataclass(frozen=True)
class Feed:
    name: str  # prices | news | macro
    mode: Mode
    detail: str


def feeds(settings: Settings) -> list[Feed]:
    """The configured source of each feed."""
    return [_prices(settings), _news(settings), _macro(settings)]


def _prices(s: Settings) -> Feed:
    if s.market_source == "simulated":
        return Feed(
            "prices", "SIMULATED", f"simulated market, seed {s.sim_seed}, {s.sim_speed:g}x clock"
        )
    if s.market_source == "replay":
        name = s.replay_path.name if s.replay_path is not None else "?"
        return Feed("prices", "REPLAY", f"recorded bars from {name}, {s.replay_speed:g}x")
    return Feed(
        "prices", "LIVE", "Yahoo Finance 1-minute bars, each about a minute after it closes"
    )


def _news(s: Settings) -> Feed:
    if s.news_source == "simulated":
        return Feed("news", "SIMULATED", "simulated headlines")
    if s.news_source == "newsapi":
        return Feed("news", "LIVE", f"News API, polled every {s.news_poll_interval_s:g} s")
    return Feed("news", "LIVE", f"RSS headlines, polled every {s.news_poll_interval_s:g} s")


def _macro(s: Settings) -> Feed:
    if s.macro_source == "simulated":
        return Feed("macro", "SIMULATED", "simulated FRED series")
    if s.macro_source == "fred":
        return Feed("macro", "LIVE", "FRED API, daily after the releases")
    return Feed("macro", "LIVE", "FRED CSV download, daily after the releases")
