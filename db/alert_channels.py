"""The alert channels and rules analysts add in the app, and the delivery log they read.

- A channel is an apprise URL with a name (and optionally quiet hours and a rate limit of its
  own). The URL is a secret: `channels_table` (what the app shows) gives only its scheme; only
  the alert worker reads URLs (`channel_rows`). The channels of `ALERT_URLS` are named
  `settings-1`, `settings-2`, ... and are not stored.
- A rule sends events of some kinds (for signals: of some tickers, at or above a confidence) to
  one channel or to every channel (`EVERY_CHANNEL`).
- Channels and rules are never deleted, only disabled; the record names who added and who last
  changed each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import text

from config.alerting import ALERT_KINDS, quiet_hours
from db.alerts import Event
from db.connections import connect
from db.reads import read_from_db

KINDS = ALERT_KINDS
EVERY_CHANNEL = "*"
SETTINGS_CHANNEL = "settings-"  # ALERT_URLS' channels are settings-1, settings-2, ...
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,39}$")


class AlertConfigError(ValueError):
    """A channel or rule that cannot be stored; the message is safe to show."""


@dataclass(frozen=True)
class Rule:
    """Which events go to which channel (`EVERY_CHANNEL`: all of them)."""

    channel: str
    kinds: frozenset[str]
    tickers: frozenset[str] = frozenset()  # empty: every ticker
    min_confidence: float = 0.0  # signals only
    id: int | None = None  # None: the settings' rule

    def matches(self, event: Event) -> bool:
        if event.kind not in self.kinds:
            return False
        ticker = event.payload.get("ticker")
        if self.tickers and ticker is not None and str(ticker) not in self.tickers:
            return False
        confidence = event.payload.get("confidence")
        return event.kind != "signal" or float(confidence or 0.0) >= self.min_confidence


@dataclass(frozen=True)
class ChannelRow:
    """A channel added in the app, with its URL (for the worker only: never shown)."""

    name: str
    url: str
    enabled: bool
    quiet_hours: str | None
    max_per_minute: int | None


def _check_name(name: str) -> str:
    name = name.strip()
    if not CHANNEL_NAME.match(name) or name.startswith(SETTINGS_CHANNEL):
        raise AlertConfigError(
            "A channel name is 2-40 letters, digits, . _ - and does not start with "
            f"'{SETTINGS_CHANNEL}' (the channels of ALERT_URLS)."
        )
    return name


def _check_quiet_hours(value: str | None) -> str | None:
    try:
        return None if quiet_hours(value) is None else str(value).strip()
    except ValueError as exc:
        raise AlertConfigError(str(exc)) from None


def add_channel(
    *,
    name: str,
    url: str,
    actor: str,
    quiet: str | None = None,
    max_per_minute: int | None = None,
) -> str:
    """Store a channel (its apprise URL checked by apprise itself); returns its name."""
    import apprise

    name = _check_name(name)
    url = url.strip()
    if not url or apprise.Apprise.instantiate(url) is None:
        raise AlertConfigError(
            "apprise does not understand that URL (e.g. slack://..., msteams://..., "
            "discord://..., tgram://..., mailto://..., json://host/path)."
        )
    if max_per_minute is not None and max_per_minute < 1:
        raise AlertConfigError("A rate limit is at least 1 alert per minute.")
    with connect() as conn:
        added = conn.execute(
            text(
                "INSERT INTO alert_channels (name, url, quiet_hours, max_per_minute, created_by) "
                "VALUES (:n, :u, :q, :m, :a) ON CONFLICT (name) DO NOTHING"
            ),
            {"n": name, "u": url, "q": _check_quiet_hours(quiet), "m": max_per_minute, "a": actor},
        ).rowcount
    if not added:
        raise AlertConfigError(f"A channel named {name!r} exists already.")
    return name


def set_channel_enabled(name: str, enabled: bool, actor: str) -> bool:
    """Enable or disable a channel (a disabled channel's pending deliveries fail); False when
    there is no such channel."""
    with connect() as conn:
        return bool(
            conn.execute(
                text(
                    "UPDATE alert_channels SET enabled = :e, updated_by = :a, updated_at = now() "
                    "WHERE name = :n"
                ),
                {"e": enabled, "a": actor, "n": name},
            ).rowcount
        )


def channel_rows() -> list[ChannelRow]:
    """Every channel added in the app, with its URL (for the alert worker)."""
    frame = read_from_db(
        "SELECT name, url, enabled, quiet_hours, max_per_minute FROM alert_channels ORDER BY id"
    )
    return [
        ChannelRow(
            str(r.name),
            str(r.url),
            bool(r.enabled),
            None if r.quiet_hours is None else str(r.quiet_hours),
            None if pd.isna(r.max_per_minute) else int(r.max_per_minute),
        )
        for r in frame.itertuples(index=False)
    ]


def channels_table() -> pd.DataFrame:
    """The channels added in the app for display: the URL's scheme only, never the URL."""
    return read_from_db(
        "SELECT name, split_part(url, '://', 1) AS scheme, enabled, quiet_hours, "
        "max_per_minute, created_by, created_at, updated_by, updated_at "
        "FROM alert_channels ORDER BY id"
    )


def add_rule(
    *,
    channel: str,
    kinds: Sequence[str],
    actor: str,
    tickers: Sequence[str] = (),
    min_confidence: float = 0.0,
) -> int:
    """Store a rule: events of `kinds` (signals of `tickers`, empty = all, at or above
    `min_confidence`) go to `channel` (`EVERY_CHANNEL`: all channels). Returns its id."""
    unknown = sorted(set(kinds) - set(KINDS))
    if not kinds or unknown:
        raise AlertConfigError(f"Choose event kinds among {', '.join(KINDS)}.")
    if not 0.0 <= min_confidence <= 1.0:
        raise AlertConfigError("The least confidence is between 0 and 1.")
    with connect() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO alert_rules (channel, kinds, tickers, min_confidence, "
                    "created_by) VALUES (:c, :k, :t, :m, :a) RETURNING id"
                ),
                {
                    "c": channel,
                    "k": sorted(set(kinds)),
                    "t": sorted({t.strip().upper() for t in tickers}),
                    "m": float(min_confidence),
                    "a": actor,
                },
            ).scalar_one()
        )


def set_rule_enabled(rule_id: int, enabled: bool, actor: str) -> bool:
    """Enable or disable a rule; False when there is no such rule."""
    with connect() as conn:
        return bool(
            conn.execute(
                text(
                    "UPDATE alert_rules SET enabled = :e, updated_by = :a, updated_at = now() "
                    "WHERE id = :i"
                ),
                {"e": enabled, "a": actor, "i": int(rule_id)},
            ).rowcount
        )


def rules() -> list[Rule]:
    """The enabled rules added in the app."""
    frame = read_from_db(
        "SELECT id, channel, kinds, tickers, min_confidence FROM alert_rules "
        "WHERE enabled ORDER BY id"
    )
    return [
        Rule(
            str(r.channel),
            frozenset(r.kinds),
            frozenset(r.tickers),
            float(r.min_confidence),
            int(r.id),
        )
        for r in frame.itertuples(index=False)
    ]


def rules_table() -> pd.DataFrame:
    """Every rule added in the app, for display."""
    return read_from_db(
        "SELECT id, channel, array_to_string(kinds, ', ') AS kinds, "
        "array_to_string(tickers, ', ') AS tickers, min_confidence, enabled, created_by, "
        "created_at, updated_by, updated_at FROM alert_rules ORDER BY id"
    )


# --------------------------------------------------------------------------- the log


def delivery_log(limit: int = 200) -> pd.DataFrame:
    """The newest deliveries with their event: what, to which channel, and how it went."""
    return read_from_db(
        "SELECT e.created_at, e.kind, e.payload->>'ticker' AS ticker, "
        "e.payload->>'action' AS action, d.channel, d.status, d.attempts, d.waiting_reason, "
        "d.next_attempt_at, d.sent_at, d.last_error, e.id AS event_id "
        "FROM alert_deliveries d JOIN alert_events e ON e.id = d.event_id "
        "ORDER BY d.updated_at DESC, e.id DESC LIMIT :n",
        {"n": limit},
    )


def recent_events(limit: int = 100) -> pd.DataFrame:
    """The newest events, each with how many of its deliveries are sent, pending and failed."""
    return read_from_db(
        "SELECT e.id, e.created_at, e.kind, e.payload->>'ticker' AS ticker, "
        "e.payload->>'action' AS action, e.payload->>'reason' AS reason, "
        "e.routed_at IS NOT NULL AS routed, "
        "count(d.channel) FILTER (WHERE d.status = 'sent') AS sent, "
        "count(d.channel) FILTER (WHERE d.status = 'pending') AS pending, "
        "count(d.channel) FILTER (WHERE d.status = 'failed') AS failed "
        "FROM alert_events e LEFT JOIN alert_deliveries d ON d.event_id = e.id "
        "GROUP BY e.id ORDER BY e.id DESC LIMIT :n",
        {"n": limit},
    )


def alerts_stamp() -> tuple[Any, ...]:
    """What changes when the alerts page must be redrawn (one cheap query)."""
    row = read_from_db(
        "SELECT (SELECT max(id) FROM alert_events) AS event, "
        "(SELECT max(updated_at) FROM alert_deliveries) AS delivery, "
        "(SELECT max(coalesce(updated_at, created_at)) FROM alert_channels) AS channel, "
        "(SELECT max(coalesce(updated_at, created_at)) FROM alert_rules) AS rule, "
        "(SELECT count(*) FROM alert_rules) + (SELECT count(*) FROM alert_channels) AS n"
    ).iloc[0]
    return tuple(None if pd.isna(v) else v for v in row)
