"""Serving inside the app: one model manager and one live scorer per server process.

`live_scorer()` is a `st.cache_resource` singleton shared by every session. Its daemon thread
runs the process's `ml.live_scoring.Scorer` (one incremental feature state) over what serves
(`ModelManager.serving()`: the champion and the shadow challengers) every few seconds, and a page
that sees a bar newer than the last one covered asks it to catch up at once (`catch_up`). Scoring
is serialised by a lock, so each new bar is scored once per process however many sessions are
open; the scorers' advisory lock makes it once across processes. Signals are read back from the
`signals` table by the data layer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import streamlit as st

from app.data import DataUnavailable, from_db, redact
from config.settings import Settings, get_settings
from db.bars import newest_bar_ts
from ml.live_scoring import Scorer
from ml.model_loader import LoadedModels, ModelManager, Serving

log = logging.getLogger(__name__)
HEARTBEAT_WORKER = "app_live_scorer"
HEARTBEAT_EVERY_S = 30.0
FULL_PASS_EVERY_S = 60.0


@st.cache_resource(show_spinner=False, max_entries=1)
def model_manager() -> ModelManager:
    """The serving pair, loaded once per process and reloaded when the registry changes."""
    return ModelManager(get_settings())


def serving() -> Serving:
    """The champion (with its provisional flag) and the challengers scoring in shadow."""
    return model_manager().serving()


def serving_models() -> LoadedModels | None:
    """The champion pair, or None when no model is trained or promoted yet."""
    return serving().champion


def model_problem() -> str | None:
    """Why the newest registry entry could not be loaded (the old pair keeps serving)."""
    error = model_manager().last_error
    return None if error is None else redact(error)


@dataclass(frozen=True)
class ScorerStatus:
    """What the live scorer has done so far (a snapshot)."""

    running: bool = False
    model_version: str | None = None
    bars_scored: int = 0
    shadow_scored: int = 0
    invocations: int = 0
    runs: int = 0
    covered_ts: pd.Timestamp | None = None
    last_run: pd.Timestamp | None = None
    last_error: str | None = None


class LiveScorer:
    """Scores every new bar once, from a background thread or on a page's request."""

    def __init__(self, manager: ModelManager, settings: Settings, poll_s: float) -> None:
        self.manager = manager
        self.settings = settings
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._status = ScorerStatus()
        self._last_beat = 0.0
        self._thread: threading.Thread | None = None
        self._scorer = Scorer(settings)

    @property
    def status(self) -> ScorerStatus:
        return self._status

    def start(self) -> LiveScorer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="stockpulse-live-scorer", daemon=True
            )
            self._thread.start()
            self._status = replace(self._status, running=True)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._status = replace(self._status, running=False)

    def catch_up(self, bars_ts: pd.Timestamp | None) -> bool:
        """Make sure bars up to `bars_ts` are scored; True if the signals log may have changed.

        Sessions that see the same new bar wait on one lock; the first scores, the rest find the
        bar covered and return at once. False means nothing new: the caller's stamp holds.
        """
        covered = self._status.covered_ts
        if bars_ts is None or (covered is not None and bars_ts <= covered):
            return False
        self.score_once(bars_ts)
        return True

    def score_once(self, bars_ts: pd.Timestamp | None = None) -> int:
        """Score the bars not in the signals log yet; returns how many were added."""
        with self._lock:
            covered = self._status.covered_ts
            if bars_ts is not None and covered is not None and bars_ts <= covered:
                return 0
            return self._score(bars_ts)

    def _score(self, bars_ts: pd.Timestamp | None) -> int:
        serving = self.manager.serving()
        now = pd.Timestamp.now(tz="UTC")
        if not serving.versions:
            self._status = replace(self._status, model_version=None, last_run=now)
            return 0
        try:
            newest = bars_ts if bars_ts is not None else _newest_bar_ts()
            result = self._scorer.score(serving)
        except Exception as exc:  # keep serving; the page shows the reason
            message = redact(f"{type(exc).__name__}: {exc}", self.settings).splitlines()[0]
            log.warning("live scoring failed: %s", message)
            self._status = replace(self._status, last_error=message[:300], last_run=now)
            return 0
        if result.busy:  # another process is scoring these bars; look again shortly
            self._status = replace(self._status, last_run=now)
            return 0
        added = len(result.recommendations)
        covered = self._status.covered_ts
        if newest is not None and (covered is None or newest > covered):
            covered = newest
        champion = serving.champion
        self._status = replace(
            self._status,
            model_version=champion.version if champion else None,
            bars_scored=self._status.bars_scored + added,
            shadow_scored=self._status.shadow_scored + result.shadow,
            invocations=self._status.invocations + int(result.invocations),
            runs=self._status.runs + 1,
            covered_ts=covered,
            last_run=now,
            last_error=None,
        )
        self._beat(force=added + result.shadow > 0)
        return added

    def _beat(self, force: bool) -> None:
        if not force and time.monotonic() - self._last_beat < HEARTBEAT_EVERY_S:
            return
        self._last_beat = time.monotonic()
        s = self._status
        details: dict[str, Any] = {
            "model_version": s.model_version,
            "bars_scored": s.bars_scored,
            "shadow_scored": s.shadow_scored,
            "invocations": s.invocations,
            "covered_ts": None if s.covered_ts is None else s.covered_ts.isoformat(),
        }
        try:
            from db.ops import heartbeat

            heartbeat(HEARTBEAT_WORKER, "ok", **details)
        except Exception as exc:
            log.warning("live scorer heartbeat failed: %s", redact(str(exc)).splitlines()[0])

    def _loop(self) -> None:
        last_full = 0.0
        while not self._stop.is_set():
            try:
                # a cheap look for a newer bar first; a full pass (late bars) once a minute
                newest, covered = _newest_bar_ts(), self._status.covered_ts
                due = time.monotonic() - last_full >= FULL_PASS_EVERY_S
                if due or newest is None or covered is None or newest > covered:
                    last_full = time.monotonic() if due else last_full
                    self.score_once()
            except Exception:  # never let the thread die
                log.exception("live scorer loop")
            self._wake.wait(self.poll_s)
            self._wake.clear()


def _newest_bar_ts() -> pd.Timestamp | None:
    try:
        return from_db(newest_bar_ts)
    except DataUnavailable:
        return None


def _release(scorer: LiveScorer) -> None:
    scorer.stop()


@st.cache_resource(show_spinner=False, max_entries=1, on_release=_release)
def live_scorer() -> LiveScorer:
    """The process-wide scorer, started on first use and stopped when the cache is cleared."""
    settings = get_settings()
    return LiveScorer(model_manager(), settings, poll_s=max(1.0, settings.app_refresh_s)).start()
