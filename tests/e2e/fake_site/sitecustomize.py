"""Loaded by every Python process of the start-up test (PYTHONPATH): Yahoo Finance answered at
yfinance's transport by the synthetic fake (`tests/workers/fake_yahoo.py`), on the wall clock.

STOCKPULSE_FAKE_YAHOO=<n>: the first n one-minute requests of each process answer HTTP 429.
"""

import os
import sys
import tempfile
from pathlib import Path

if "STOCKPULSE_FAKE_YAHOO" in os.environ:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workers"))
    import fake_yahoo

    fake_yahoo.install_in_process(
        Path(tempfile.mkdtemp(prefix="yf-tz-")),
        rate_limited_requests=int(os.environ["STOCKPULSE_FAKE_YAHOO"] or 0),
    )
