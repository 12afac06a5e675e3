"""Article keys, text cleaning, URL normalisation and ticker tagging shared by every news source.

`clean_articles` is the one place article text is made safe to store and score. Every source
runs it on its rows before they become a frame (pandas keeps text in Arrow, which refuses lone
surrogates): NUL bytes and the other C0 control characters but tab and newline are removed (a
carriage return becomes a newline, without a flag), lone UTF-16 surrogates become U+FFFD, and
each field is cut to its `TEXT_LIMITS`; an article left without a title or a publication time is
dropped. Each article cleaned or dropped yields one `InputFlag` saying what was wrong.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd

from core.timeutil import utc
from db.input_flags import InputFlag

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
# The longest text kept per article field. A title is a line (the longest real headlines run to
# a few hundred characters); a summary is a teaser, not the article (20,000 characters is a long
# article in full). Longer text is cut; a link cut short would point nowhere, so an over-long URL
# is dropped instead. A multi-megabyte body never reaches the database, the ticker tagger or the
# sentiment model whole.
TEXT_LIMITS: dict[str, int] = {"title": 1_000, "summary": 20_000, "url": 2_048, "source": 200}
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f]")  # C0 controls but tab and newline
SURROGATES = re.compile(r"[\ud800-\udfff]")
NEEDS_CLEANING = re.compile(r"[\x00-\x08\x0b-\x1f\ud800-\udfff]")
WORD_CHAR = re.compile(r"[^\W_]")  # a usable title has at least one letter or digit
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


def scrub(text: str) -> str:
    """`text` without control characters (but tab and newline) or lone surrogates."""
    if NEEDS_CLEANING.search(text) is None:
        return text
    return clean_text(text, len(text))[0] or ""


def shown(value: object, max_chars: int = 120) -> str:
    """A raw value as short, printable text for a log line or a flag (control characters and
    surrogates escaped by `repr`)."""
    text = repr(value)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def clean_text(value: object, max_chars: int) -> tuple[str | None, dict[str, str]]:
    """`value` safe to store, and what was wrong with it (reason code -> what was done).

    Non-text and text with nothing left but whitespace become None. Surrounding whitespace is
    trimmed once something was removed."""
    if not isinstance(value, str):
        return None, {}
    found: dict[str, str] = {}
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    if NEEDS_CLEANING.search(text) is not None:
        nul = text.count("\x00")
        text, removed = CONTROL_CHARS.subn("", text)
        if nul:
            found["nul_bytes"] = f"{nul:,} NUL byte(s) removed"
        if removed > nul:
            found["control_chars"] = f"{removed - nul:,} control character(s) removed"
        if SURROGATES.search(text) is not None:
            # surrogate pairs become the character they encode; a lone half, U+FFFD
            fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
            lone = fixed.count("\ufffd") - text.count("\ufffd")
            if lone:
                found["lone_surrogates"] = f"{lone:,} lone surrogate(s) replaced by U+FFFD"
            text = fixed
        text = text.strip()
    if len(text) > max_chars:
        found["too_long"] = f"{len(text):,} characters cut to {max_chars:,}"
        text = text[:max_chars].rstrip()
    return text if text.strip() else None, found


def clean_article(article: Mapping[str, Any]) -> tuple[dict[str, Any], InputFlag | None]:
    """One article row made safe to store, and its flag: `cleaned` when text was changed,
    `dropped` when no title (with a letter or digit) or publication time is left (None when it
    was fine)."""
    row = dict(article)
    reasons: dict[str, None] = {}
    notes: list[str] = []
    for field, limit in TEXT_LIMITS.items():
        if field not in row:
            continue
        row[field], found = clean_text(row[field], limit)
        if field == "url" and "too_long" in found:
            row[field] = None
            found["too_long"] = f"longer than {limit:,} characters, dropped"
        reasons.update(dict.fromkeys(found))
        notes += [f"{field}: {note}" for note in found.values()]
    row["published_at"] = to_utc(row.get("published_at"))
    if row.get("title") is not None and WORD_CHAR.search(row["title"]) is None:
        row["title"] = None
    if row.get("title") is None:
        reasons["no_title"] = None
        notes.append(f"title: nothing usable in {shown(article.get('title'), 60)}")
    if row["published_at"] is None:
        reasons["no_published_at"] = None
        notes.append(f"published_at: {shown(article.get('published_at'), 60)}")
    if not reasons:
        return row, None
    dropped = row["title"] is None or row["published_at"] is None
    where = f"{row.get('source') or '?'} {row.get('url') or shown(row.get('title'), 80)}"
    return row, InputFlag(
        feed="news",
        item_key=str(row.get("article_key")),
        action="dropped" if dropped else "cleaned",
        reason=",".join(reasons),
        detail=f"{where}: " + "; ".join(notes),
    )


def clean_articles(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[InputFlag]]:
    """The article rows (one per article and ticker) safe to store and score, and one flag per
    article cleaned or dropped (its rows share its text, so they share its flag)."""
    kept: list[dict[str, Any]] = []
    flags: dict[InputFlag, None] = {}
    for article in rows:
        row, flag = clean_article(article)
        if flag is not None:
            flags[flag] = None
        if flag is None or flag.action == "cleaned":
            kept.append(row)
    return kept, list(flags)


def article_key(
    url: str | None, source: str, title: str, published_at: pd.Timestamp | None = None
) -> str:
    """A stable key: sha1 of the normalised URL, or of source + title + publication minute
    (control characters and lone surrogates scrubbed first, so any text has a key)."""
    url, source, title = (scrub(url) if url else url), scrub(source), scrub(title)
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
        """Tickers named in the texts, each read up to the longest summary kept."""
        blob = " ".join(t[: TEXT_LIMITS["summary"]] for t in texts if t)
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
