"""Secret redaction: a message with every secret value masked before it is shown or logged."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "**********"


def redact(message: str, secrets: Iterable[str]) -> str:
    """`message` with each of `secrets` (longest first, so a password inside a URL goes with
    the URL) replaced by asterisks."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        message = message.replace(secret, MASK)
    return message
