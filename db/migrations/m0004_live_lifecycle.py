"""The live lifecycle: news known at arrival, champion and shadow predictions, realised outcomes.

- `news_articles.available_at`: when StockPulse could first have known the article (the later of
  its publication and its arrival for live feeds; publication plus a delay for seeded history).
  Features join news on it, in training as in serving. Existing rows get the later of
  `published_at` and `ingested_at`.
- `signals.role`: `champion` (the signal served to analysts) or `shadow` (a challenger or a
  pinned version scoring the same bar, never shown as a signal); `signals.provisional`: served by
  a champion that has not beaten the baselines.
- `outcomes`: the realised triple-barrier outcome of a scored bar once its horizon has passed,
  per label definition (`label_key`), stored once; drift and the live scoreboard read it.
"""

from __future__ import annotations

NAME = "news availability, champion and shadow predictions, realised outcomes"

UP = [
    "ALTER TABLE news_articles ADD COLUMN available_at timestamptz",
    "UPDATE news_articles SET available_at = GREATEST(published_at, ingested_at)",
    "ALTER TABLE news_articles ALTER COLUMN available_at SET NOT NULL",
    "CREATE INDEX news_ticker_available_idx ON news_articles (ticker, available_at)",
    "ALTER TABLE signals ADD COLUMN role text NOT NULL DEFAULT 'champion' "
    "CHECK (role IN ('champion', 'shadow'))",
    "ALTER TABLE signals ADD COLUMN provisional boolean NOT NULL DEFAULT false",
    "CREATE INDEX signals_version_time_idx ON signals (model_version, bar_ts)",
    """CREATE TABLE outcomes (
        ticker text NOT NULL,
        bar_ts timestamptz NOT NULL,
        label_key text NOT NULL,
        label smallint CHECK (label IN (0, 1, 2)),
        fwd_return double precision,
        exit_ts timestamptz,
        computed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (ticker, bar_ts, label_key)
    )""",
    "CREATE INDEX outcomes_time_idx ON outcomes (label_key, bar_ts)",
]

DOWN = [
    "DROP TABLE IF EXISTS outcomes",
    "DROP INDEX IF EXISTS signals_version_time_idx",
    "ALTER TABLE signals DROP COLUMN IF EXISTS provisional",
    "ALTER TABLE signals DROP COLUMN IF EXISTS role",
    "DROP INDEX IF EXISTS news_ticker_available_idx",
    "ALTER TABLE news_articles DROP COLUMN IF EXISTS available_at",
]
