"""What serves, as the app sees it: the registry's versions and the scoring worker's state.

The app only reads. Every bar is scored by the scoring worker (`python -m
ml.serving.scoring_worker`, supervisord's `scoring_worker` program) the moment it is stored,
whether or not a page is open; pages read the signals it wrote. `model_manager()` loads the serving
versions' metadata and files once per server (to show which versions serve, their provisional state
and their inputs) and never calls a model. `scorer_state()` says whether the signals shown are
current: the worker's heartbeat, the newest bar it scored and how far behind the newest stored bar
that is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from app.data import from_db, redact
from config.settings import get_settings
from core.timeutil import utc_now
from db.health import heartbeats
from ml.models.model_loader import LoadedModels, ModelManager, Serving

SCORER = "scoring_worker"  # its heartbeat's name (ml.serving.scoring_worker.WORKER)
STALE_AFTER_S = 30.0  # no heartbeat for this long: the worker is down
BEHIND_AFTER = pd.Timedelta(minutes=2)  # stored bars this far past the newest signal: behind


@st.cache_resource(show_spinner=False, max_entries=1)
def model_manager() -> ModelManager:
    """The serving versions, loaded once per process and reloaded when the registry changes."""
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
class ScorerState:
    """The scoring worker as the live page reports it."""

    state: str  # "current", "behind", "down", "stopped" or "never"
    beat_age_s: float | None = None
    newest_scored: pd.Timestamp | None = None  # the newest bar the champion has a signal for
    behind: pd.Timedelta | None = None  # newest stored bar minus newest_scored (market time)
    pass_ms: float | None = None
    error: str | None = None

    @property
    def current(self) -> bool:
        return self.state == "current"


def _details(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def scorer_state(bars_ts: pd.Timestamp | None, signal_ts: pd.Timestamp | None) -> ScorerState:
    """Judge the worker from its heartbeat and from the signals stored (`signal_ts`: the newest
    bar the champion has a signal for; `bars_ts`: the newest stored bar)."""
    beats = from_db(heartbeats)
    row = beats[beats["worker"] == SCORER]
    behind = (
        None if bars_ts is None or signal_ts is None else max(bars_ts - signal_ts, pd.Timedelta(0))
    )
    if row.empty:
        return ScorerState("never", newest_scored=signal_ts, behind=behind)
    beat = row.iloc[0]
    details = _details(beat["details"])
    age_s = max(0.0, (utc_now() - beat["last_beat"]).total_seconds())
    error = details.get("error")
    common = {
        "beat_age_s": age_s,
        "newest_scored": signal_ts,
        "behind": behind,
        "pass_ms": details.get("last_pass_ms"),
        "error": None if not error else redact(str(error))[:300],
    }
    if beat["status"] == "stopped":
        return ScorerState("stopped", **common)
    if age_s > STALE_AFTER_S:
        return ScorerState("down", **common)
    if behind is not None and behind >= BEHIND_AFTER:
        return ScorerState("behind", **common)
    return ScorerState("current", **common)
