"""One HTTP GET for the news and macro sources, mapping failures to the error kinds.

- network errors and HTTP 5xx: `SourceError` (worth retrying with back-off);
- HTTP 429: `RateLimitError`;
- other HTTP 4xx: `PayloadError` (a wrong request or key; retrying does not help).
"""

from __future__ import annotations

from typing import Any

import requests

from workers.sources.base import RateLimitError, SourceError

USER_AGENT = "StockPulse/0.1 (context ingestor)"


class PayloadError(RuntimeError):
    """A provider answered with something that cannot be used (malformed, wrong shape)."""


def http_get(
    session: requests.Session, url: str, *, who: str, timeout_s: float = 20.0, **kwargs: Any
) -> requests.Response:
    """GET `url`; raise SourceError / RateLimitError / PayloadError instead of bad answers."""
    try:
        resp = session.get(url, timeout=timeout_s, **kwargs)
    except requests.RequestException as exc:
        raise SourceError(f"{who}: request failed: {type(exc).__name__}") from exc
    if resp.status_code == 429:
        raise RateLimitError(f"{who}: HTTP 429 rate limited: {resp.text[:200]}")
    if resp.status_code >= 500:
        raise SourceError(f"{who}: HTTP {resp.status_code}: {resp.text[:200]}")
    if resp.status_code >= 400:
        raise PayloadError(f"{who}: HTTP {resp.status_code}: {resp.text[:200]}")
    return resp


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session
