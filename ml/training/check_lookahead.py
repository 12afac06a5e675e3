"""Lookahead check: recompute features and labels on truncated histories and compare.

`python -m ml.training.check_lookahead [--tickers A,B] [--start DATE] [--end DATE] [--cuts 40]`
runs it on your own data (from the database) with your settings. For each random cut point c, the
inputs are cut to what was known at the close of bar c (bars up to c, news and macro releases
before that close) and the features are recomputed: every feature value at a bar <= c must equal
the value computed on the whole history. Labels may look `horizon_bars` bars ahead and no more:
a label defined on the truncated data must equal the full one, and labels at least
`horizon_bars` bars before the cut must be identical. Any column whose past values change is
reported. The test suite uses the same functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.timeutil import utc, utc_now
from ml.features.feature_engineering import FeatureParams, bars_for_features, create_features
from ml.features.labels import LabelParams, triple_barrier_labels

BAR = pd.Timedelta(minutes=1)
KEY = ["ticker", "ts"]


@dataclass(frozen=True)
class Violation:
    """The first place where a column's past value changed once the future was added."""

    column: str
    ticker: str
    ts: pd.Timestamp
    cut: pd.Timestamp
    truncated: float
    full: float


Compute = Callable[[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None], pd.DataFrame]


def truncate(
    bars: pd.DataFrame, news: pd.DataFrame | None, macro: pd.DataFrame | None, cut: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """What was known at the close of the bar stamped `cut`."""
    known = cut + BAR
    bars = bars[bars["ts"] <= cut]
    if news is not None:
        news = news[news["available_at"] < known]
    if macro is not None:
        macro = macro[macro["realtime_start"] < known]
    return bars, news, macro


def _same(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(b)
    return np.asarray(both_nan | (np.abs(a - b) <= tol * (1.0 + np.abs(b))))


def find_lookahead(
    compute: Compute,
    bars: pd.DataFrame,
    cuts: list[pd.Timestamp],
    news: pd.DataFrame | None = None,
    macro: pd.DataFrame | None = None,
    *,
    allowed_bars: int = 0,
    tol: float = 1e-9,
) -> dict[str, Violation]:
    """Columns of `compute(bars, news, macro)` (ticker, ts, numeric columns) whose value at a
    bar <= cut depends on data after the cut. With `allowed_bars` = h > 0 (labels), a value
    missing on the truncated data is accepted within the last h bars before the cut."""
    bars = bars_for_features(bars)
    full = compute(bars, news, macro).set_index(KEY)
    columns = [c for c in full.columns if pd.api.types.is_numeric_dtype(full[c])]
    found: dict[str, Violation] = {}
    for cut in cuts:
        part = compute(*truncate(bars, news, macro, cut)).set_index(KEY)
        ref = full.loc[full.index.get_level_values("ts") <= cut].reindex(part.index)
        # how many bars of the same ticker follow each row up to the cut
        after = part.groupby(level="ticker").cumcount(ascending=False).to_numpy()
        for col in columns:
            if col in found:
                continue
            a, b = part[col].to_numpy(float), ref[col].to_numpy(float)
            ok = _same(a, b, tol)
            if allowed_bars:
                ok |= np.isnan(a) & (after < allowed_bars)
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                ticker, ts = part.index[i]
                found[col] = Violation(col, str(ticker), ts, cut, float(a[i]), float(b[i]))
    return found


def feature_lookahead(
    bars: pd.DataFrame,
    cuts: list[pd.Timestamp],
    news: pd.DataFrame | None = None,
    macro: pd.DataFrame | None = None,
    params: FeatureParams | None = None,
) -> dict[str, Violation]:
    """`find_lookahead` for `create_features` (no lookahead allowed)."""
    params = params or FeatureParams()

    def compute(b: pd.DataFrame, n: pd.DataFrame | None, m: pd.DataFrame | None) -> pd.DataFrame:
        return create_features(b, n, m, params=params)

    return find_lookahead(compute, bars, cuts, news, macro)


def label_lookahead(
    bars: pd.DataFrame, cuts: list[pd.Timestamp], params: LabelParams
) -> dict[str, Violation]:
    """`find_lookahead` for triple-barrier labels (up to horizon_bars ahead allowed)."""

    def compute(b: pd.DataFrame, n: pd.DataFrame | None, m: pd.DataFrame | None) -> pd.DataFrame:
        out = triple_barrier_labels(b, params)
        return out[["ticker", "ts", "label", "fwd_return", "barrier"]]

    return find_lookahead(compute, bars, cuts, allowed_bars=params.horizon_bars)


def random_cuts(bars: pd.DataFrame, n: int, seed: int = 0) -> list[pd.Timestamp]:
    """`n` distinct bar times drawn at random, the newest bar excluded."""
    stamps = np.sort(pd.to_datetime(bars["ts"], utc=True).unique())[:-1]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(stamps), size=min(n, len(stamps)), replace=False)
    return [pd.Timestamp(stamps[i]) for i in np.sort(picks)]


def _report(name: str, found: dict[str, Violation], cuts: int) -> bool:
    if not found:
        print(f"{name}: no lookahead at {cuts} cut points")
        return True
    for v in found.values():
        print(
            f"{name}: LOOKAHEAD in '{v.column}' ({v.ticker} {v.ts}): {v.truncated!r} with data "
            f"up to {v.cut}, {v.full!r} with the whole history"
        )
    return False


def main(argv: list[str] | None = None) -> int:
    from config.settings import get_settings
    from ml.training.dataset import load_raw

    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m ml.training.check_lookahead",
        description="Recompute features and labels on truncated histories of your data and "
        "report every column whose past values change (exit code 1 if any).",
    )
    parser.add_argument(
        "--tickers", default=",".join(settings.universe[:3]), help="comma list (default: 3)"
    )
    parser.add_argument("--end", default=None, help="last day checked (default: now)")
    parser.add_argument("--days", type=int, default=7, help="calendar days of history")
    parser.add_argument("--cuts", type=int, default=40, help="random cut points")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cut points")
    args = parser.parse_args(argv)
    end = utc_now() if args.end is None else utc(args.end)
    tickers = [t.strip().upper() for t in args.tickers.split(",") if t.strip()]
    params = FeatureParams.from_settings(settings)
    raw = load_raw(tickers, end - pd.Timedelta(days=args.days), end, params=params)
    if raw.bars.empty:
        print(f"no bars for {tickers} in the {args.days} days before {end}", file=sys.stderr)
        return 1
    cuts = random_cuts(raw.bars, args.cuts, args.seed)
    print(f"{len(raw.bars)} bars of {tickers}; {len(cuts)} cut points")
    ok = _report(
        "features", feature_lookahead(raw.bars, cuts, raw.news, raw.macro, params), len(cuts)
    )
    labels = label_lookahead(raw.bars, cuts, LabelParams.from_settings(settings))
    ok = _report("labels", labels, len(cuts)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
