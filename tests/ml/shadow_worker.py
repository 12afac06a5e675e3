"""A scoring process for the shadow-scoring tests: what the app's live scorer thread does, in a
process of its own, until a stop file appears (then one last pass).

    python tests/ml/shadow_worker.py <stop-file> <report-file>

The report file gets one line per pass: rows stored for the champion and the shadow versions.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ml.live_scoring import Scorer
from ml.model_loader import ModelManager


def main(stop: Path, report: Path) -> int:
    manager, scorer = ModelManager(), Scorer()
    with report.open("a") as out:
        while True:
            last = stop.exists()
            result = scorer.score(manager.serving())
            out.write(f"{len(result.recommendations)} {result.shadow} {int(result.busy)}\n")
            out.flush()
            if last:
                return 0
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
