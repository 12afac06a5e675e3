"""Secret redaction: a message with every secret masked before it is shown, logged or stored.

`redact` masks two things: the exact secret values it is given (the settings' secrets, passed
in by the caller: this layer knows no settings), and text shaped like a credential whatever its
value, so a job that prints a key the settings do not hold leaks nothing either:

- an assignment to a credential-like name: `api_key=...`, `apikey: ...`, `NEWS_API_KEY=...`,
  `"password": "..."`, `access_token=...`, `client_secret=...`, `X-Api-Key: ...`;
- an `Authorization:` header's credentials and a `Bearer ...` token;
- the password of a URL's userinfo (`scheme://user:password@host`);
- well-known token prefixes (`sk-...`, `sk_live_...`, `ghp_...`, `xoxb-...`, `AKIA...`, JWTs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "**********"

_KEY = (
    r"(?:api[_-]?key|apikey|access[_-]?key|secret[_-]?key|client[_-]?secret|secret|"
    r"(?:access|refresh|auth|bearer|id)?[_-]?token|password|passwd|pwd|passphrase)"
)
# a credential-like name (maybe prefixed: NEWS_API_KEY, x-api-key), its separator, its value
_ASSIGNED = re.compile(
    rf"(?<![A-Za-z0-9])((?:[A-Za-z0-9]+[_.-])*{_KEY})"
    r"([\"']?\s*[:=]\s*)"
    r"(?:\"([^\"\n]*)\"|'([^'\n]*)'|([^\s\"'&,;<>]+))",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(
    r"(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest)\s+)?)"
    r"([^\s\"',;]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(\bbearer\s+)([A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)([^\s/@]+)(@)")
_TOKENS = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|[spr]k_(?:live|test)_[A-Za-z0-9]{10,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)


def _mask_assigned(match: re.Match[str]) -> str:
    name, separator = match.group(1), match.group(2)
    double, single, bare = match.group(3), match.group(4), match.group(5)
    if double is not None:
        return f'{name}{separator}"{MASK}"' if double else match.group(0)
    if single is not None:
        return f"{name}{separator}'{MASK}'" if single else match.group(0)
    return f"{name}{separator}{MASK}" if bare else match.group(0)


def redact_shapes(message: str) -> str:
    """`message` with every credential-shaped part masked (see the module's docstring)."""
    message = _USERINFO.sub(rf"\g<1>{MASK}\g<3>", message)
    message = _AUTHORIZATION.sub(rf"\g<1>{MASK}", message)
    message = _BEARER.sub(rf"\g<1>{MASK}", message)
    message = _ASSIGNED.sub(_mask_assigned, message)
    return _TOKENS.sub(MASK, message)


def redact(message: str, secrets: Iterable[str] = ()) -> str:
    """`message` with each of `secrets` (longest first, so a password inside a URL goes with
    the URL) replaced by asterisks, then every credential-shaped part masked as well."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        message = message.replace(secret, MASK)
    return redact_shapes(message)


def redact_values(value: Any, secrets: Iterable[str] = ()) -> Any:
    """`value` with every string in it redacted (`redact`): a string, or the values and items
    of nested dicts, lists and tuples (keys are left as they are); other values unchanged."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_values(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(v, secrets) for v in value]
    return value
