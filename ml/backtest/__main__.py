"""`python -m ml.backtest` (see `ml.backtest.cli`)."""

from ml.backtest.cli import main

raise SystemExit(main())
