"""Shared pieces of the app tests: simulated bars fed to the database, pages under AppTest."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from streamlit.testing.v1 import AppTest

from config.market_calendar import sessions_between
from workers.bar_store import write_bars
from workers.sources.simulated import SimulatedMarket

APP_DIR = Path(__file__).resolve().parents[2] / "app"
PAGES = {
    "home": "views/live_signals.py",
    "detail": "views/stock_detail.py",
    "lab": "views/model_lab.py",
    "drift": "views/drift_and_history.py",
    "health": "views/data_health.py",
}


def past_sessions(n: int) -> list[pd.Timestamp]:
    """The last `n` XNYS sessions that ended before today (UTC dates, naive)."""
    today = pd.Timestamp.now(tz="UTC").normalize().tz_localize(None)
    return list(sessions_between(today - pd.Timedelta(days=10 + 2 * n), today))[-n - 1 : -1]


class MarketFeed:
    """Simulated bars for the whole universe: a history first, then one minute at a time."""

    def __init__(self, tickers: Iterable[str], sessions: int = 2, seed: int = 11) -> None:
        market = SimulatedMarket(seed=seed, planted_signal=0.6)
        frames = [market.session_bars(t, s) for s in past_sessions(sessions) for t in tickers]
        bars = pd.concat(frames, ignore_index=True)
        bars["source"] = "simulated"
        self.bars = bars.sort_values(["ts", "ticker"]).reset_index(drop=True)
        self.minutes = sorted(self.bars["ts"].unique())
        self.written = 0  # minutes written so far

    def seed(self, hold_back: int = 0) -> pd.Timestamp:
        """Write every minute but the last `hold_back`; returns the newest bar time written."""
        upto = len(self.minutes) - hold_back
        cutoff = self.minutes[upto - 1]
        write_bars(self.bars[self.bars["ts"] <= cutoff], source="simulated")
        self.written = upto
        return pd.Timestamp(cutoff)

    def next_minute(self) -> tuple[pd.Timestamp, int]:
        """Write the next minute's bars; returns its time and how many bars it had."""
        ts = self.minutes[self.written]
        rows = self.bars[self.bars["ts"] == ts]
        write_bars(rows, source="simulated")
        self.written += 1
        return pd.Timestamp(ts), len(rows)


def open_page(name: str, query: dict[str, str] | None = None, timeout: float = 90) -> AppTest:
    """Run one page of the app in a fresh session, as `streamlit run app/main.py` serves it."""
    at = AppTest.from_file(str(APP_DIR / "main.py"), default_timeout=timeout)
    if name != "home":
        at.switch_page(PAGES[name])
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def texts(at: AppTest) -> list[str]:
    """Every visible text of a run: markdown, captions, alerts, metrics, titles."""
    out: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption"):
        out += [str(e.value) for e in getattr(at, kind)]
    for kind in ("error", "warning", "info", "success", "exception"):
        out += [str(e.value) for e in getattr(at, kind)]
    out += [f"{m.label}: {m.value}" for m in at.metric]
    return out


def alerts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def figures(at: AppTest) -> dict[str, dict[str, Any]]:
    """The plotly figures of a run as dicts, by element key."""
    import json

    out = {}
    for i, el in enumerate(at.get("plotly_chart")):
        out[el.key or f"chart_{i}"] = json.loads(el.proto.spec)
    return out


def table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first st.dataframe of the run that has all `columns`."""
    shown = [frame.value for frame in at.dataframe]
    for frame in shown:
        if set(columns) <= set(frame.columns):
            return frame
    raise AssertionError(f"no table with {columns}; tables: {[list(f.columns) for f in shown]}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StreamlitServer:
    """`streamlit run app/main.py` as a real server process on a free local port."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        import os

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONPATH": str(APP_DIR.parent), **(env or {})}
        self.proc: Any = None

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 60) -> StreamlitServer:
        import subprocess
        import sys
        import time
        import urllib.request

        args = [sys.executable, "-m", "streamlit", "run", str(APP_DIR / "main.py")]
        args += ["--server.port", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, cwd=APP_DIR.parent, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"streamlit did not start in {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class ScoringWorkerProcess:
    """`python -m ml.serving.scoring_worker` as a real process (what supervisord runs beside the
    app)."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        import os

        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: Any = None

    def __enter__(self) -> ScoringWorkerProcess:
        import subprocess
        import sys

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ml.serving.scoring_worker"],
                cwd=APP_DIR.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def metric_value(page: Any, label: str) -> str:
    """The value of the st.metric labelled `label` in the browser page."""
    metric = page.locator('[data-testid="stMetric"]', has_text=label).first
    return str(metric.locator('[data-testid="stMetricValue"]').inner_text()).strip()
