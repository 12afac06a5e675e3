"""Article keys, URL normalisation and ticker tagging shared by every news source."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd

from core.timeutil import utc

ARTICLE_COLUMNS = ["article_key", "ticker", "published_at", "source", "title", "url", "summary"]

# Company names that identify a ticker in a headline (default universe). Tickers outside this
# table are matched by their symbol only.
COMPANY_NAMES: dict[str, tuple[str, ...]] = {
    "AAPL": ("Apple",),
    "MSFT": ("Microsoft",),
    "GOOGL": ("Alphabet", "Google"),
    "AMZN": ("Amazon",),
    "META": ("Meta Platforms", "Facebook", "Meta"),
    "NVDA": ("Nvidia",),
    "TSLA": ("Tesla",),
    "JPM": ("JPMorgan", "JP Morgan"),
    "V": ("Visa",),
    "JNJ": ("Johnson & Johnson",),
    "WMT": ("Walmart",),
    "PG": ("Procter & Gamble",),
    "XOM": ("Exxon",),
    "UNH": ("UnitedHealth",),
    "HD": ("Home Depot",),
    "MA": ("Mastercard",),
    "BAC": ("Bank of America",),
    "KO": ("Coca-Cola",),
    "PEP": ("PepsiCo", "Pepsi"),
    "DIS": ("Disney",),
}
TRACKING_PARAMS = re.compile(r"^(utm_.*|\.tsrc|guccounter|guce_.*|ncid|soc_src|soc_trk|cmpid|src)$")


def normalise_url(url: str) -> str:
    """Lower-case scheme and host, no `www.`, fragment or tracking parameters, sorted query."""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not TRACKING_PARAMS.match(k.lower())
    )
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(
        (
            "https" if parts.scheme in ("http", "https") else parts.scheme,
            host,
            path,
            urlencode(query),
            "",
        )
    )


def normalise_title(title: str) -> str:
    return " ".join(title.lower().split())


def article_key(
    url: str | None, source: str, title: str, published_at: pd.Timestamp | None = None
) -> str:
    """A stable key: sha1 of the normalised URL, or of source + title + publication minute."""
    if url and url.strip():
        basis = "url|" + normalise_url(url)
    else:
        when = "" if published_at is None else pd.Timestamp(published_at).floor("min").isoformat()
        basis = f"title|{source.lower()}|{normalise_title(title)}|{when}"
    return hashlib.sha1(basis.encode("utf-8"), usedforsecurity=False).hexdigest()


def _patterns(ticker: str) -> list[re.Pattern[str]]:
    sym = re.escape(ticker)
    pats = [re.compile(rf"\${sym}\b"), re.compile(rf"\((?:NYSE|NASDAQ|Nasdaq):\s*{sym}\)")]
    if len(ticker) >= 3:  # "V", "MA", "HD" are ordinary words too; only their cashtag counts
        pats.append(re.compile(rf"\b{sym}\b"))
    for name in COMPANY_NAMES.get(ticker, ()):
        pats.append(re.compile(rf"(?<![\w&]){re.escape(name)}(?![\w&])"))
    return pats


class TickerTagger:
    """Finds which universe tickers an article is about (symbols, cashtags, company names)."""

    def __init__(self, tickers: Sequence[str]) -> None:
        self.patterns = {t: _patterns(t) for t in tickers}

    def tags(self, *texts: str | None) -> list[str]:
        blob = " ".join(t for t in texts if t)
        return [t for t, pats in self.patterns.items() if any(p.search(blob) for p in pats)]


def search_terms(ticker: str) -> list[str]:
    """Query terms for a ticker: its company names (quoted if multi-word), else the symbol."""
    names = COMPANY_NAMES.get(ticker) or (ticker,)
    return [f'"{n}"' if " " in n or "&" in n or "-" in n else n for n in names]


def batch_queries(tickers: Iterable[str], max_chars: int) -> list[tuple[list[str], str]]:
    """Group tickers into as few OR-queries as fit in `max_chars` each."""
    batches: list[tuple[list[str], str]] = []
    group: list[str] = []
    terms: list[str] = []
    for t in tickers:
        extra = search_terms(t)
        candidate = " OR ".join(terms + extra)
        if group and len(candidate) > max_chars:
            batches.append((group, " OR ".join(terms)))
            group, terms = [], []
        group.append(t)
        terms.extend(extra)
    if group:
        batches.append((group, " OR ".join(terms)))
    return batches


def empty_articles() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in ARTICLE_COLUMNS})
    frame["published_at"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame


def to_utc(value: object) -> pd.Timestamp | None:
    """A publication time as a UTC timestamp, or None when it cannot be parsed."""
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    return utc(ts)
