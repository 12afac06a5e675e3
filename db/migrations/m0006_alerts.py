"""Alerts: the transactional outbox of events, their deliveries per channel, and the channels and
rules analysts add in the app.

- `alert_events`: the outbox. One row per event (a champion BUY/SELL signal, a promotion or
  rollback, a drift alarm, a stale feed, a failed job, a quarantined bar or held ticker),
  inserted in the transaction that caused it (`db.alerts.enqueue_event`); `fingerprint` is
  unique, so the same event enqueued twice is stored once. `routed_at` is set once the alert
  worker has decided which channels receive it.
- `alert_deliveries`: one row per (event, channel): `pending` (waiting for `next_attempt_at`,
  or claimed by a worker until `claimed_until`), `sent` or `failed` (attempts exhausted, or the
  channel was removed or disabled), with the attempts made, the last error (secrets masked) and
  why it waits (`waiting_reason`: retry, quiet hours, rate limit).
- `alert_channels`: apprise URLs added by analysts (the URL is a secret: never shown), with
  optional quiet hours and rate limit of their own; the record names who added or changed it.
- `alert_rules`: which event kinds (and for signals which tickers and least confidence) go to
  which channel (`*`: every channel).
"""

from __future__ import annotations

NAME = "alerts: outbox, deliveries, channels and rules"

KINDS = (
    "'signal', 'promotion', 'rollback', 'drift_alarm', 'stale_feed', 'job_failed', "
    "'quarantined_bar', 'held_ticker'"
)

UP = [
    f"""CREATE TABLE alert_events (
        id bigserial PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ({KINDS})),
        fingerprint text NOT NULL UNIQUE,
        payload jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        routed_at timestamptz
    )""",
    "CREATE INDEX alert_events_unrouted_idx ON alert_events (id) WHERE routed_at IS NULL",
    "CREATE INDEX alert_events_time_idx ON alert_events (created_at)",
    """CREATE TABLE alert_deliveries (
        event_id bigint NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
        channel text NOT NULL,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
        attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        claimed_until timestamptz,
        waiting_reason text,
        last_error text,
        sent_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (event_id, channel)
    )""",
    "CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at) "
    "WHERE status = 'pending'",
    "CREATE INDEX alert_deliveries_sent_idx ON alert_deliveries (channel, sent_at) "
    "WHERE status = 'sent'",
    "CREATE INDEX alert_deliveries_updated_idx ON alert_deliveries (updated_at)",
    """CREATE TABLE alert_channels (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        url text NOT NULL,
        enabled boolean NOT NULL DEFAULT true,
        quiet_hours text,
        max_per_minute integer CHECK (max_per_minute > 0),
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_by text,
        updated_at timestamptz
    )""",
    """CREATE TABLE alert_rules (
        id bigserial PRIMARY KEY,
        channel text NOT NULL,
        kinds text[] NOT NULL,
        tickers text[] NOT NULL DEFAULT '{}',
        min_confidence double precision NOT NULL DEFAULT 0
            CHECK (min_confidence >= 0 AND min_confidence <= 1),
        enabled boolean NOT NULL DEFAULT true,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_by text,
        updated_at timestamptz
    )""",
]

DOWN = [
    "DROP TABLE IF EXISTS alert_rules",
    "DROP TABLE IF EXISTS alert_channels",
    "DROP TABLE IF EXISTS alert_deliveries",
    "DROP TABLE IF EXISTS alert_events",
]
