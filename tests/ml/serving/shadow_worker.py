"""A scoring process for the racing test: the scoring worker's passes (`ml.serving.scoring_worker`),
one after another, until a stop file appears (then one last pass).

    python tests/ml/serving/shadow_worker.py <stop-file> <report-file>

The report file gets one line per pass: rows stored for the champion and the shadow versions,
and 1 when another process held the scorers' lock.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ml.serving.scoring_worker import ScoringWorker


def main(stop: Path, report: Path) -> int:
    worker = ScoringWorker()
    with report.open("a") as out:
        while True:
            last = stop.exists()
            result = worker.run_pass()
            out.write(f"{len(result.recommendations)} {result.shadow} {int(result.busy)}\n")
            out.flush()
            if last:
                return 0
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
