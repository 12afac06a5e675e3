"""Screenshots of a running workbench for README (`docs/screenshots/`), in headless Chromium.

    make demo                                   # in one terminal (SIM_SPEED=60 for a fast day)
    .venv/bin/python scripts/screenshots.py     # in another, once it runs

Waits for each page's content (signals on the live page, drift checks, the scoreboard when
`--wait-for-scoreboard` is given; on the backtest page it runs the default backtest first) and
writes one PNG per page. Uses Debian's chromium
(`make browser`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGES = {
    "live_signals": ("", "Newest signal"),
    "stock_detail": ("stock_detail?ticker=AAPL", "Latest signal"),
    "model_lab": ("model_lab", "Live scoreboard"),
    "drift_and_history": ("drift_and_history", "Registry history"),
    "data_health": ("data_health", "Database:"),
    "backtest": ("backtest", "Run backtest"),
    "alerts": ("alerts", "Delivery log"),
}
CLICK = {"backtest": ("Run backtest", "Equity of the total")}  # a button, then what it shows


def wait_for_text(page: object, text: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in page.inner_text("body"):  # type: ignore[attr-defined]
            return True
        time.sleep(2)
    return False


def settle(page: object, timeout_s: float = 20) -> None:
    """Wait until no rerun is in flight (a rerun fades the page's elements)."""
    deadline = time.monotonic() + timeout_s
    status = page.locator('[data-testid="stStatusWidget"]')  # type: ignore[attr-defined]
    while time.monotonic() < deadline and status.count() and status.first.is_visible():
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/screenshots.py", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8501")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--only", nargs="*", choices=sorted(PAGES), default=sorted(PAGES))
    parser.add_argument("--wait-for-scoreboard", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--wait-for-drift", type=float, default=0, metavar="SECONDS")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        for name in args.only:
            path, marker = PAGES[name]
            page.goto(f"{args.url}/{path}")
            if not wait_for_text(page, marker, 120):
                print(f"{name}: '{marker}' did not show", file=sys.stderr)
            if name == "model_lab" and args.wait_for_scoreboard:
                seen = wait_for_text(page, "vs champion: Δ macro-F1", args.wait_for_scoreboard)
                print(f"{name}: scoreboard {'shown' if seen else 'not filled yet'}")
            if name in CLICK:
                button, shows = CLICK[name]
                page.get_by_role("button", name=button).click()
                seen = wait_for_text(page, shows, 240)
                print(f"{name}: '{shows}' {'shown' if seen else 'did not show'}")
            if name == "drift_and_history" and args.wait_for_drift:
                seen = wait_for_text(page, "Population stability", args.wait_for_drift)
                print(f"{name}: drift checks {'shown' if seen else 'not there yet'}")
            time.sleep(3)  # charts drawn
            settle(page)
            page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)
            print(f"wrote {args.out / f'{name}.png'}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
