"""The models' side of StockPulse, in five rooms; each imports only the rooms before it
(`tests/test_layers.py` holds the order):

1. `ml.features`: what a model sees: batch and live features, windows, labels, drift statistics.
2. `ml.models`: what a trained version is: architectures, TFLite export and inference, metadata,
   metrics, the registry and the loader of what serves.
3. `ml.training`: datasets, training, the baselines, the look-ahead check.
4. `ml.serving`: live scoring of every new bar, recommendations, outcomes, the scoring worker.
5. `ml.lifecycle`: judging versions: the gate, verdicts, reports, the scoreboard, drift
   monitoring, the nightly pipeline and the backtest.
"""
