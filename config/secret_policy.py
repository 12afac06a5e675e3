"""What production refuses as a secret: placeholders (in any case), the demo's defaults,
`.env.example`'s own suggestions, and anything shorter than MIN_SECRET_LENGTH."""

from __future__ import annotations

# Values production refuses as secrets (compared case-insensitively): the usual defaults, the
# demo's password and `.env.example`'s own suggestions.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "stockpulse",
        "stockpulse-demo",
        "password",
        "secret",
        "postgres",
        "admin",
        "choose-a-password",
        "choose-a-long-random-password",
        "choose-another-long-random-password",
        "choose-a-long-random-secret",
    }
)


MIN_SECRET_LENGTH = 12


def weak_secret(secret: str | None) -> bool:
    value = (secret or "").strip()
    return value.lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_LENGTH
