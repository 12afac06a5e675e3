"""`python -m ml.lifecycle.backtest` (see `ml.lifecycle.backtest.cli`)."""

from ml.lifecycle.backtest.cli import main

raise SystemExit(main())
