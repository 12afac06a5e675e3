"""Judging versions: the held-out evaluation (`evaluation`), the champion/challenger gate
(`gate`, `validate_model`), the block bootstrap and signal metrics behind the verdict cards
(`bootstrap`, `signal_metrics`, `verdict`, `report`), the live scoreboard (`scoreboard`), drift
monitoring and rollback (`drift_monitor`), the nightly pipeline (`pipeline`) and the backtest
(`backtest`).

May import every room before it: `ml.features`, `ml.models`, `ml.training`, `ml.serving`.
"""
