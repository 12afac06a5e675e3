"""Core tables: bars, news, macro, corporate actions, backfill queue, signals, runs."""

from __future__ import annotations

NAME = "core tables"

UP = [
    """CREATE TABLE bars_1m (
        ticker text NOT NULL,
        ts timestamptz NOT NULL,
        open double precision NOT NULL,
        high double precision NOT NULL,
        low double precision NOT NULL,
        close double precision NOT NULL,
        volume double precision NOT NULL CHECK (volume >= 0),
        source text NOT NULL DEFAULT 'unknown',
        ingested_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (ticker, ts),
        CHECK (high >= low)
    )""",
    "CREATE INDEX bars_1m_ts_idx ON bars_1m (ts)",
    """CREATE TABLE news_articles (
        article_key text NOT NULL,
        ticker text NOT NULL,
        published_at timestamptz NOT NULL,
        source text NOT NULL,
        title text NOT NULL,
        url text,
        summary text,
        sentiment double precision CHECK (sentiment BETWEEN -1 AND 1),
        sentiment_model text,
        ingested_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (article_key, ticker)
    )""",
    "CREATE INDEX news_ticker_time_idx ON news_articles (ticker, published_at)",
    """CREATE TABLE macro_observations (
        series_id text NOT NULL,
        obs_date date NOT NULL,
        realtime_start timestamptz NOT NULL,
        value double precision NOT NULL,
        source text NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (series_id, obs_date, realtime_start)
    )""",
    "CREATE INDEX macro_release_idx ON macro_observations (series_id, realtime_start)",
    """CREATE TABLE corporate_actions (
        ticker text NOT NULL,
        ex_date date NOT NULL,
        action_type text NOT NULL CHECK (action_type IN ('split', 'dividend')),
        value double precision NOT NULL CHECK (value > 0),
        factor double precision,
        source text NOT NULL DEFAULT 'unknown',
        detected_at timestamptz NOT NULL DEFAULT now(),
        applied_at timestamptz,
        PRIMARY KEY (ticker, ex_date, action_type)
    )""",
    """CREATE TABLE backfill_queue (
        ticker text NOT NULL,
        gap_start timestamptz NOT NULL,
        gap_end timestamptz NOT NULL,
        status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'filled', 'empty', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (ticker, gap_start),
        CHECK (gap_end >= gap_start)
    )""",
    "CREATE INDEX backfill_status_idx ON backfill_queue (status)",
    """CREATE TABLE signals (
        ticker text NOT NULL,
        bar_ts timestamptz NOT NULL,
        model_version text NOT NULL,
        action text NOT NULL CHECK (action IN ('BUY', 'SELL', 'HOLD')),
        confidence double precision NOT NULL,
        lstm_label text NOT NULL,
        lstm_p_down double precision NOT NULL,
        lstm_p_neutral double precision NOT NULL,
        lstm_p_up double precision NOT NULL,
        transformer_label text NOT NULL,
        transformer_p_down double precision NOT NULL,
        transformer_p_neutral double precision NOT NULL,
        transformer_p_up double precision NOT NULL,
        close double precision,
        reason text,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (ticker, bar_ts, model_version)
    )""",
    "CREATE INDEX signals_time_idx ON signals (bar_ts)",
    """CREATE TABLE model_events (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        event text NOT NULL,
        version text,
        previous_version text,
        actor text NOT NULL,
        reason text,
        details jsonb
    )""",
    """CREATE TABLE model_evaluations (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        challenger text NOT NULL,
        champion text,
        promoted boolean NOT NULL,
        report jsonb NOT NULL
    )""",
    """CREATE TABLE drift_metrics (
        checked_at timestamptz NOT NULL,
        model_version text NOT NULL,
        metric text NOT NULL,
        feature text NOT NULL DEFAULT '',
        value double precision,
        threshold double precision,
        alarm boolean NOT NULL DEFAULT false,
        PRIMARY KEY (checked_at, model_version, metric, feature)
    )""",
    """CREATE TABLE job_runs (
        id bigserial PRIMARY KEY,
        job text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        status text NOT NULL DEFAULT 'running'
            CHECK (status IN ('running', 'ok', 'failed', 'skipped')),
        message text
    )""",
    "CREATE INDEX job_runs_job_idx ON job_runs (job, started_at DESC)",
    """CREATE TABLE worker_heartbeats (
        worker text PRIMARY KEY,
        last_beat timestamptz NOT NULL,
        pid integer,
        status text,
        details jsonb
    )""",
]

DOWN = [
    "DROP TABLE IF EXISTS worker_heartbeats",
    "DROP TABLE IF EXISTS job_runs",
    "DROP TABLE IF EXISTS drift_metrics",
    "DROP TABLE IF EXISTS model_evaluations",
    "DROP TABLE IF EXISTS model_events",
    "DROP TABLE IF EXISTS signals",
    "DROP TABLE IF EXISTS backfill_queue",
    "DROP TABLE IF EXISTS corporate_actions",
    "DROP TABLE IF EXISTS macro_observations",
    "DROP TABLE IF EXISTS news_articles",
    "DROP TABLE IF EXISTS bars_1m",
]
