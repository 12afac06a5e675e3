"""The read replica's state, measured on the replica itself through the read path (the
data-health page shows it).

The replay lag is `now() - pg_last_xact_replay_timestamp()`: the age of the newest transaction
the replica has applied. It also grows while the primary commits nothing, so it is read beside
the WAL the replica has received but not yet replayed (`bytes_behind`): zero bytes behind with a
growing lag means an idle primary, not a slow replica.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from config.settings import get_settings
from db.connections import read_replica_url, reads_go_to_replica
from db.reads import read_from_db

STATE_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       CAST(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) AS float8)
           AS replay_lag_s,
       CAST(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS int8)
           AS bytes_behind
"""


@dataclass(frozen=True)
class ReplicaState:
    """What the server answering this process's reads says about its replication."""

    routed: bool  # this process's reads go to DATABASE_READ_URL (else the primary answered)
    in_recovery: bool  # the answering server is a standby replaying the primary's WAL
    replay_lag_s: float | None  # age of the newest replayed transaction; None before any
    bytes_behind: int | None  # WAL received but not replayed yet; None on a primary


def replica_state() -> ReplicaState | None:
    """The replica's recovery state, replay lag and bytes behind, measured on the read path;
    None when no `DATABASE_READ_URL` is configured. Raises like any read when the replica does
    not answer."""
    settings = get_settings()
    if read_replica_url(settings) is None:
        return None
    routed = reads_go_to_replica(settings)
    row = read_from_db(STATE_SQL).iloc[0]
    return ReplicaState(
        routed=routed,
        in_recovery=bool(row["in_recovery"]),
        replay_lag_s=None if pd.isna(row["replay_lag_s"]) else float(row["replay_lag_s"]),
        bytes_behind=None if pd.isna(row["bytes_behind"]) else int(row["bytes_behind"]),
    )
