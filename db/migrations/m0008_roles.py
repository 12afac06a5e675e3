"""Least-privilege roles: the app and the workers stop connecting as the database owner.

- `stockpulse_worker` (NOLOGIN): reads every relation, writes every data table (not the
  migration ledger, not the sign-in records).
- `stockpulse_app` (NOLOGIN): reads every relation, writes only what the app's actions write
  (the model registry's events and evaluations, the retrain button's job runs, alert channels,
  rules and events, decisions on held tickers and quarantined bars, the sign-in records). It
  cannot write `bars_1m`.
- `reject_hold(hold_id, actor, reason, detail)` and `accept_quarantined_bar(bar_id, actor,
  reason)`: SECURITY DEFINER functions, owned by the migrator, with `search_path` fixed to
  `pg_catalog, pg_temp` and every relation schema-qualified; only the app group may execute
  them. The first moves the bars of an open hold from its onset on into quarantine as
  `rejected` and closes the hold; the second stores a quarantined bar in `bars_1m` and marks it
  `accepted`. `db.quality` calls them for the analysts' decisions.
- With TimescaleDB, the continuous aggregates are owned by `stockpulse_aggregates`, of which the
  worker group is a member (refreshes need the owner).
- Default privileges cover tables the migrator creates later.

Roles are cluster-wide: they are created only when missing, and `down` revokes their privileges
in this database (other databases of the server may use them) without dropping them. The
migrator must be a superuser (compose's POSTGRES_USER is one). The rules live in `db.roles`;
`python -m db.roles create-logins` applies them again and creates the LOGIN users.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from db import roles

NAME = "least-privilege roles: app and worker groups, their grants, the analysts' bar moves"

REJECT_HOLD = """
CREATE FUNCTION {s}.reject_hold(
    p_hold_id bigint, p_actor text, p_reason text, p_detail text)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    held record;
    moved integer;
BEGIN
    SELECT h.ticker, h.onset_ts, h.status INTO held
    FROM {s}.ticker_holds h WHERE h.id = p_hold_id FOR UPDATE;
    IF NOT FOUND OR held.status <> 'held' THEN
        RAISE EXCEPTION 'hold #% is not held', p_hold_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM nextval({bar_writes});
    WITH taken AS (
        DELETE FROM {s}.bars_1m b WHERE b.ticker = held.ticker AND b.ts >= held.onset_ts
        RETURNING b.ticker, b.ts, b.open, b.high, b.low, b.close, b.volume, b.source)
    INSERT INTO {s}.quarantined_bars
        (ticker, ts, open, high, low, close, volume, source, reason, detail, status)
    SELECT t.ticker, t.ts, t.open, t.high, t.low, t.close, t.volume, t.source,
           'level_shift', p_detail, 'rejected'
    FROM taken t
    WHERE NOT EXISTS (
        SELECT 1 FROM {s}.quarantined_bars q
        WHERE q.ticker = t.ticker AND q.ts = t.ts AND q.status IN ('pending', 'quarantined')
        AND (q.open, q.high, q.low, q.close, q.volume)
            IS NOT DISTINCT FROM (t.open, t.high, t.low, t.close, t.volume));
    GET DIAGNOSTICS moved = ROW_COUNT;
    UPDATE {s}.ticker_holds h SET status = 'rejected', decided_at = now(),
        decided_by = p_actor, decision_reason = p_reason
    WHERE h.id = p_hold_id;
    RETURN moved;
END
$fn$"""

ACCEPT_QUARANTINED_BAR = """
CREATE FUNCTION {s}.accept_quarantined_bar(
    p_bar_id bigint, p_actor text, p_reason text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bar record;
BEGIN
    SELECT q.ticker, q.ts, q.open, q.high, q.low, q.close, q.volume, q.source, q.status INTO bar
    FROM {s}.quarantined_bars q WHERE q.id = p_bar_id FOR UPDATE;
    IF NOT FOUND OR bar.status <> 'quarantined' THEN
        RAISE EXCEPTION 'bar #% is not quarantined', p_bar_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT (least(bar.open, bar.high, bar.low, bar.close) > 0 AND bar.volume >= 0
            AND greatest(bar.open, bar.high, bar.low, bar.close, bar.volume) < 'Infinity') THEN
        RAISE EXCEPTION 'bar #% has prices a bar cannot hold', p_bar_id
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM nextval({bar_writes});
    INSERT INTO {s}.bars_1m (ticker, ts, open, high, low, close, volume, source)
    VALUES (bar.ticker, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.source)
    ON CONFLICT (ticker, ts) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high,
        low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
        source = EXCLUDED.source;
    UPDATE {s}.quarantined_bars q SET status = 'accepted', decided_at = now(),
        decided_by = p_actor, decision_reason = p_reason
    WHERE q.id = p_bar_id;
END
$fn$"""


def up(cur: Any) -> None:
    schema = _current_schema(cur)
    bar_writes = sql.Literal(sql.Identifier(schema, "bar_writes").as_string(cur))
    for body in (REJECT_HOLD, ACCEPT_QUARANTINED_BAR):
        cur.execute(sql.SQL(body).format(s=sql.Identifier(schema), bar_writes=bar_writes))
    roles.apply(cur)


def down(cur: Any) -> None:
    roles.revoke(cur)
    schema = sql.Identifier(_current_schema(cur))
    for function in roles.FUNCTIONS:
        cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {}." + function).format(schema))


def _current_schema(cur: Any) -> str:
    cur.execute("SELECT current_schema()")
    return str(cur.fetchone()[0])
