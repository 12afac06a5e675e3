"""What the backtest may run on: the first out-of-sample bar of a version and the refusal of a
range that touches its training or validation data, and which version was champion when (the
registry history's promotions and rollbacks, on the market clock)."""

from __future__ import annotations

import pandas as pd

from config.market_clock import clock_kind, read_clock
from config.settings import Settings
from core.timeutil import utc
from ml.features.feature_engineering import BAR
from ml.lifecycle.backtest.execution import BacktestRefused
from ml.models.metadata import MetadataError, ModelMetadata
from ml.models.registry import Registry

FAR = pd.Timestamp("2262-01-01", tz="UTC")


def fmt_utc(ts: pd.Timestamp) -> str:
    """A bar time as the backtest's messages show it."""
    return f"{utc(ts):%Y-%m-%d %H:%M} UTC"


def first_out_of_sample(meta: ModelMetadata) -> pd.Timestamp:
    """The first bar whose outcome the version has not seen: after its training and validation
    data and the label horizon that follows them."""
    try:
        horizon = meta.labels.horizon_bars
    except MetadataError as exc:
        raise BacktestRefused(str(exc)) from None
    if meta.trained_until is None:
        raise BacktestRefused(
            f"version {meta.version} records no training or validation range, so no range can "
            "be shown to be out of sample for it"
        )
    return utc(meta.trained_until) + BAR * (horizon + 1)


def check_out_of_sample(meta: ModelMetadata, start: pd.Timestamp, end: pd.Timestamp) -> None:
    """Refuse a range [start, end) that touches the version's training or validation data or
    the label horizon after them, naming both ranges."""
    embargo = first_out_of_sample(meta) - utc(meta.trained_until)
    for name, span in (("training", meta.train_range), ("validation", meta.val_range)):
        if span is None:
            continue
        lo, hi = utc(span[0]), utc(span[1])
        if start < hi + embargo and end > lo:
            raise BacktestRefused(
                f"the backtest range {fmt_utc(start)} to {fmt_utc(end)} overlaps the {name} "
                f"data of {meta.version} ({fmt_utc(lo)} to {fmt_utc(hi)}, and its labels look "
                f"{meta.labels.horizon_bars} bars further): a backtest on data the model was "
                f"trained or validated on is not out of sample. Start at "
                f"{fmt_utc(first_out_of_sample(meta))} or later."
            )


def market_instants(walls: list[pd.Timestamp], settings: Settings) -> list[pd.Timestamp]:
    """Where the market clock stood at each wall-clock instant of `walls` (the wall clock
    itself for live sources, and before a simulated or replay clock is anchored)."""
    kind = clock_kind(settings)
    clock = None if kind is None else read_clock(settings.data_dir, kind)
    if clock is None:
        return [utc(wall) for wall in walls]
    out = []
    for wall in walls:
        clock.time_fn = utc(wall).timestamp
        out.append(clock.now())
    return out


def champion_periods(
    registry: Registry, start: pd.Timestamp, end: pd.Timestamp, settings: Settings
) -> pd.DataFrame:
    """version, start, end (exclusive) of each champion within [start, end), from the registry
    history's promotions and rollbacks (in their order), their times put on the market clock."""
    events = [h for h in registry.history if h.event in ("promoted", "rolled_back")]
    stamps = market_instants([utc(h.at) for h in events], settings)
    changes = sorted(zip(stamps, [h.version for h in events], strict=True), key=lambda c: c[0])
    rows = []
    for k, (at, version) in enumerate(changes):
        until = changes[k + 1][0] if k + 1 < len(changes) else FAR
        lo, hi = max(at, start), min(until, end)
        if lo < hi:
            rows.append({"version": version, "start": lo, "end": hi})
    return pd.DataFrame(rows, columns=["version", "start", "end"])
