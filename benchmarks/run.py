"""`make bench`: run every benchmarks/bench_*.py and write benchmarks/results.json.

    python -m benchmarks.run [name ...]     run only the named modules (e.g. write)

Results of modules not run this time are kept from the previous results.json; a module that
runs replaces every figure it wrote before.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"


def _load() -> list[dict[str, Any]]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def main(argv: list[str] | None = None) -> int:
    wanted = set(argv if argv is not None else sys.argv[1:])
    by_name = {r["name"]: r for r in _load()}
    failed = []
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda i: i.name):
        if not info.name.startswith("bench_"):
            continue
        short = info.name.removeprefix("bench_")
        if wanted and short not in wanted:
            continue
        print(f"==> {info.name}", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{info.name}")
            records = module.run()
            # re-read: another benchmark run may have written results meanwhile
            by_name.update({r["name"]: r for r in _load()})
            # this module's figures replace all it wrote before (renamed ones do not linger)
            by_name = {n: r for n, r in by_name.items() if r.get("module") != short}
            for rec in records:
                by_name[rec["name"]] = {**rec, "module": short}
                print(
                    f"    {rec['name']}: {rec['value']} {rec['unit']} "
                    f"(baseline {rec['baseline']}, ratio {rec['ratio']})",
                    flush=True,
                )
        except Exception:
            traceback.print_exc()
            failed.append(info.name)
        RESULTS.write_text(json.dumps(list(by_name.values()), indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
