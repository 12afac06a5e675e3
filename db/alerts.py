"""Alerts in the database: the transactional outbox, deliveries per channel, channels and rules.

**The outbox.** Whatever causes an alert inserts its event with `enqueue_event(conn, kind,
payload, fingerprint)` *in the transaction that records the cause*, so an alert exists exactly
when its cause was committed (a rolled-back signal alerts nobody; a committed one is never lost,
whatever crashes afterwards). The writers:

- `ml.serving.live_scoring.Scorer.score`: the champion's new BUY/SELL signals (`enqueue_signals`,
  in the transaction that stores them and sends `db.notify.SIGNALS`);
- `db.models.record_model_event`: promotions and rollbacks (with `db.notify.REGISTRY`);
- `ml.lifecycle.drift_monitor.check`: a drift alarm as it is raised (with its `drift_metrics` rows);
- `workers.cron_job`: a failed scheduled job, as soon as its command has failed;
- the alert worker's own check: a stale price feed, judged on the market clock;
- the data-quality guard's write path: a quarantined bar (`quarantined_bar`) or a held ticker
  (`held_ticker`), each with `ticker` (and `bar_time`, `reason`) in its payload.

`fingerprint` names the event (e.g. `signal:<version>:<ticker>:<bar time>`,
`model_event:<id>`); it is unique, so an event enqueued twice is stored once and alerts once.
`payload` is a JSON object; the keys messages know are `ticker`, `action`, `confidence`,
`model_version`, `role`, `price`, `bar_time`, `reason` (others are listed as they are).

**Deliveries.** The alert worker (`workers.alert_worker`) routes each event once to the channels
whose rules it matches (one `alert_deliveries` row per event and channel), then claims due rows
(`FOR UPDATE SKIP LOCKED`, then a lease in `claimed_until`), sends and records each outcome.
All timestamps of this module are the caller's clock, passed in as `now`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text

from config.alerting import ALERT_KINDS
from config.settings import get_settings
from core.redact import redact_values
from core.timeutil import iso, utc
from db.connections import connect
from db.reads import read_from_db

KINDS = ALERT_KINDS


@dataclass(frozen=True)
class Event:
    """One outbox row."""

    id: int
    kind: str
    fingerprint: str
    payload: dict[str, Any]
    created_at: pd.Timestamp


# --------------------------------------------------------------------------- the outbox


def _json(value: Any) -> Any:
    if isinstance(value, datetime):  # pandas Timestamps too
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def enqueue_event(
    conn: Connection, kind: str, payload: Mapping[str, Any], fingerprint: str
) -> int | None:
    """Insert an alert event in the caller's transaction (the outbox).

    Parameters
    ----------
    conn : the open transaction that records what caused the event.
    kind : one of `KINDS`.
    payload : JSON-serialisable fields (timestamps become ISO 8601 UTC text); every text in
        it is stored redacted (`Settings.redact`), as messages and the alerts page show it.
    fingerprint : names the event; an event whose fingerprint is stored already is ignored.

    Returns
    -------
    The new event's id, or None when its fingerprint was seen before.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; known: {', '.join(KINDS)}")
    if not fingerprint.strip():
        raise ValueError("an alert event needs a fingerprint")
    fields = json.loads(json.dumps(dict(payload), default=_json))
    stored = json.dumps(redact_values(fields, get_settings().secret_values()))
    new_id = conn.execute(
        text(
            "INSERT INTO alert_events (kind, fingerprint, payload) "
            "VALUES (:k, :f, CAST(:p AS jsonb)) ON CONFLICT (fingerprint) DO NOTHING RETURNING id"
        ),
        {"k": kind, "f": fingerprint, "p": stored},
    ).scalar()
    return None if new_id is None else int(new_id)


def enqueue(kind: str, payload: Mapping[str, Any], fingerprint: str) -> int | None:
    """`enqueue_event` in a transaction of its own (for causes that are not a database write)."""
    with connect() as conn:
        return enqueue_event(conn, kind, payload, fingerprint)


def enqueue_signals(conn: Connection, rows: pd.DataFrame) -> int:
    """Enqueue the champion's new BUY/SELL signals among `rows` (as stored in `signals`, in the
    transaction that stores them): per ticker only its newest bar of the batch, so a catch-up
    after a pause alerts on what is current, not on every missed bar, and only when the signal
    changed: a BUY whose previous stored signal of the same version and ticker was a BUY too
    continues a run and is not new. Returns the events added."""
    if rows.empty:
        return 0
    chosen = rows[(rows["role"] == "champion") & rows["action"].isin(["BUY", "SELL"])]
    chosen = chosen.sort_values("bar_ts").groupby("ticker", sort=False).tail(1)
    events = []
    for r in chosen.itertuples(index=False):
        bar = iso(r.bar_ts)
        events.append(
            {
                "f": f"signal:{r.model_version}:{r.ticker}:{bar}",
                "p": {
                    "ticker": r.ticker,
                    "action": r.action,
                    "confidence": float(r.confidence),
                    "model_version": r.model_version,
                    "role": "champion",
                    "provisional": bool(getattr(r, "provisional", False)),
                    "price": None if pd.isna(r.close) else float(r.close),
                    "bar_time": bar,
                    "reason": r.reason,
                },
            }
        )
    if not events:
        return 0
    return conn.execute(
        text(
            "INSERT INTO alert_events (kind, fingerprint, payload) "
            "SELECT 'signal', e->>'f', e->'p' FROM jsonb_array_elements(CAST(:e AS jsonb)) e "
            "WHERE (SELECT s.action FROM signals s WHERE s.ticker = e->'p'->>'ticker' "
            "AND s.model_version = e->'p'->>'model_version' "
            "AND s.bar_ts < CAST(e->'p'->>'bar_time' AS timestamptz) "
            "ORDER BY s.bar_ts DESC LIMIT 1) IS DISTINCT FROM e->'p'->>'action' "
            "ON CONFLICT (fingerprint) DO NOTHING"
        ),
        {"e": json.dumps(events, default=_json)},
    ).rowcount


# --------------------------------------------------------------------------- routing


def _event(row: Any) -> Event:
    return Event(int(row.id), row.kind, row.fingerprint, dict(row.payload), utc(row.created_at))


def unrouted_events(conn: Connection, limit: int = 200) -> list[Event]:
    """Events no worker has routed yet, oldest first, locked for this transaction (another
    worker skips them)."""
    rows = conn.execute(
        text(
            "SELECT id, kind, fingerprint, payload, created_at FROM alert_events "
            "WHERE routed_at IS NULL ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"
        ),
        {"n": limit},
    )
    return [_event(r) for r in rows]


def route(conn: Connection, routes: Mapping[int, Sequence[str]], now: pd.Timestamp) -> int:
    """Give each event its deliveries (one per channel, due now) and mark it routed; returns
    the deliveries added."""
    if not routes:
        return 0
    pairs = [(event_id, ch) for event_id, channels in routes.items() for ch in channels]
    added = 0
    if pairs:
        added = conn.execute(
            text(
                "INSERT INTO alert_deliveries (event_id, channel, next_attempt_at, created_at, "
                "updated_at) SELECT r.event_id, r.channel, :now, :now, :now "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:chs AS text[])) AS r(event_id, channel) "
                "ON CONFLICT DO NOTHING"
            ),
            {"ids": [p[0] for p in pairs], "chs": [p[1] for p in pairs], "now": now},
        ).rowcount
    conn.execute(
        text("UPDATE alert_events SET routed_at = :now WHERE id = ANY(:ids)"),
        {"now": now, "ids": list(routes)},
    )
    return int(added)


# --------------------------------------------------------------------------- deliveries


@dataclass(frozen=True)
class Delivery:
    """A delivery claimed for sending: its event and the attempt it is (1 = first)."""

    event: Event
    channel: str
    attempt: int


def due_channels(now: pd.Timestamp) -> list[str]:
    """Channels with deliveries due at `now` and not claimed by a worker."""
    frame = read_from_db(
        "SELECT DISTINCT channel FROM alert_deliveries WHERE status = 'pending' "
        "AND next_attempt_at <= :now AND (claimed_until IS NULL OR claimed_until <= :now)",
        {"now": now},
    )
    return [str(c) for c in frame["channel"]]


def next_due(now: pd.Timestamp) -> pd.Timestamp | None:
    """When the next pending delivery becomes due (or its claim lapses), None without any."""
    value = read_from_db(
        "SELECT min(GREATEST(next_attempt_at, coalesce(claimed_until, next_attempt_at))) AS t "
        "FROM alert_deliveries WHERE status = 'pending'"
    )["t"].iloc[0]
    return None if value is None or pd.isna(value) else max(utc(value), now)


def lock_due(conn: Connection, channel: str, now: pd.Timestamp, limit: int) -> list[Delivery]:
    """The channel's due deliveries, oldest first, locked for this transaction; `attempt` is
    the attempt sending it now would be."""
    rows = conn.execute(
        text(
            "SELECT e.id, e.kind, e.fingerprint, e.payload, e.created_at, d.attempts "
            "FROM alert_deliveries d JOIN alert_events e ON e.id = d.event_id "
            "WHERE d.channel = :c AND d.status = 'pending' AND d.next_attempt_at <= :now "
            "AND (d.claimed_until IS NULL OR d.claimed_until <= :now) "
            "ORDER BY d.next_attempt_at, d.event_id LIMIT :n FOR UPDATE OF d SKIP LOCKED"
        ),
        {"c": channel, "now": now, "n": limit},
    )
    return [Delivery(_event(r), channel, int(r.attempts) + 1) for r in rows]


def sent_since(conn: Connection, channel: str, since: pd.Timestamp) -> tuple[int, pd.Timestamp]:
    """How many deliveries the channel has sent since `since`, and the oldest of them (`since`
    when none)."""
    row = conn.execute(
        text(
            "SELECT count(*) AS n, min(sent_at) AS oldest FROM alert_deliveries "
            "WHERE channel = :c AND status = 'sent' AND sent_at > :since"
        ),
        {"c": channel, "since": since},
    ).one()
    return int(row.n), since if row.oldest is None else utc(row.oldest)


def _keys(deliveries: Sequence[Delivery]) -> dict[str, Any]:
    channels = {d.channel for d in deliveries}
    if len(channels) != 1:
        raise ValueError("deliveries of one channel at a time")
    return {"c": channels.pop(), "ids": [d.event.id for d in deliveries]}


def defer(
    conn: Connection,
    deliveries: Sequence[Delivery],
    until: pd.Timestamp,
    reason: str,
    now: pd.Timestamp,
) -> None:
    """Leave deliveries pending until `until` without counting an attempt (quiet hours, rate
    limit)."""
    if deliveries:
        conn.execute(
            text(
                "UPDATE alert_deliveries SET next_attempt_at = :t, waiting_reason = :r, "
                "updated_at = :now WHERE channel = :c AND event_id = ANY(:ids)"
            ),
            {**_keys(deliveries), "t": until, "r": reason, "now": now},
        )


def claim(
    conn: Connection, deliveries: Sequence[Delivery], until: pd.Timestamp, now: pd.Timestamp
) -> None:
    """Count an attempt and lease the deliveries to this worker until `until` (a worker that
    dies while sending leaves them to be sent again once the lease lapses)."""
    if deliveries:
        conn.execute(
            text(
                "UPDATE alert_deliveries SET attempts = attempts + 1, claimed_until = :t, "
                "waiting_reason = NULL, updated_at = :now "
                "WHERE channel = :c AND event_id = ANY(:ids)"
            ),
            {**_keys(deliveries), "t": until, "now": now},
        )


def fail_all(
    conn: Connection, deliveries: Sequence[Delivery], error: str, now: pd.Timestamp
) -> None:
    """Mark deliveries failed without sending them (their channel is gone or disabled); the
    error is stored redacted."""
    if deliveries:
        error = get_settings().redact(error)
        conn.execute(
            text(
                "UPDATE alert_deliveries SET status = 'failed', last_error = :e, "
                "claimed_until = NULL, waiting_reason = NULL, updated_at = :now "
                "WHERE channel = :c AND event_id = ANY(:ids)"
            ),
            {**_keys(deliveries), "e": error, "now": now},
        )


_OUTCOME = {
    "sent": "SET status = 'sent', sent_at = :now, last_error = NULL, waiting_reason = NULL, ",
    "retry": "SET next_attempt_at = :t, last_error = :e, waiting_reason = 'retry', ",
    "failed": "SET status = 'failed', last_error = :e, waiting_reason = NULL, ",
}
_RECORD = {
    outcome: text(
        "UPDATE alert_deliveries " + assignments + "claimed_until = NULL, updated_at = :now "
        "WHERE event_id = :i AND channel = :c AND status = 'pending'"
    )
    for outcome, assignments in _OUTCOME.items()
}


def record(
    delivery: Delivery,
    *,
    now: pd.Timestamp,
    error: str | None = None,
    retry_at: pd.Timestamp | None = None,
) -> None:
    """The outcome of one attempt: sent (no `error`), to retry at `retry_at`, or failed; the
    error is stored redacted (`Settings.redact`), as the alerts page shows it."""
    outcome = "sent" if error is None else "retry" if retry_at is not None else "failed"
    shown = None if error is None else get_settings().redact(error)
    params = {"t": retry_at, "e": shown, "now": now, "i": delivery.event.id, "c": delivery.channel}
    with connect() as conn:
        conn.execute(_RECORD[outcome], params)


def prune(before: pd.Timestamp) -> int:
    """Delete events created before `before` whose deliveries are all finished."""
    with connect() as conn:
        return conn.execute(
            text(
                "DELETE FROM alert_events e WHERE e.created_at < :b AND e.routed_at IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM alert_deliveries d "
                "WHERE d.event_id = e.id AND d.status = 'pending')"
            ),
            {"b": before},
        ).rowcount
