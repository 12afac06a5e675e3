"""Market data sources behind one interface, chosen by `settings.market_source`.

- `simulated`: `SimulatedMarket` on the shared accelerated clock (`sim_speed`, `sim_seed`,
  `sim_planted_signal`); the clock starts at the open of the session before the latest one that
  has opened (see `workers.sources.clock`), so the demo shows bars at once.
- `replay`: `ReplaySource` playing `replay_path` at `replay_speed` bar-minutes per second.
- `yfinance`: `YFinanceSource`, the real one (needs internet).
"""

from __future__ import annotations

from config.settings import Settings, get_settings
from workers.sources.base import MarketDataSource

SOURCE_KINDS = ("simulated", "replay", "yfinance")


def make_source(settings: Settings | None = None, kind: str | None = None) -> MarketDataSource:
    """The configured market data source (`kind` overrides `settings.market_source`)."""
    settings = settings or get_settings()
    kind = kind or settings.market_source
    if kind == "simulated":
        from config.market_clock import anchored_clock
        from workers.sources.simulated import SimulatedMarket

        clock = anchored_clock(settings.data_dir, "simulated", speed=settings.sim_speed)
        return SimulatedMarket(
            seed=settings.sim_seed, planted_signal=settings.sim_planted_signal, clock=clock
        )
    if kind == "replay":
        from config.market_clock import anchored_clock
        from workers.sources.replay import ReplayFileError, ReplaySource, load_bars_file

        if settings.replay_path is None:
            raise ReplayFileError("market_source=replay needs replay_path (REPLAY_PATH)")
        bars = load_bars_file(settings.replay_path)
        clock = anchored_clock(
            settings.data_dir,
            f"replay:{settings.replay_path.resolve()}",
            speed=settings.replay_speed * 60.0,
            start=bars["ts"].iloc[0],
        )
        return ReplaySource(bars, clock=clock)
    if kind == "yfinance":
        from workers.sources.yfinance_source import YFinanceSource

        return YFinanceSource(min_request_interval_s=settings.yf_min_request_interval_s)
    raise ValueError(f"unknown market source '{kind}'; choose one of {SOURCE_KINDS}")
