"""What every worker shares: retry with jittered back-off, graceful shutdown."""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


def with_retries(
    exceptions: tuple[type[BaseException], ...],
    attempts: int = 5,
    max_wait_s: float = 60.0,
    logger: logging.Logger | None = None,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Retry on `exceptions` with exponential back-off and full jitter (rate limits come in
    waves; jitter keeps many clients from retrying in step)."""
    return retry(
        retry=retry_if_exception_type(exceptions),
        wait=wait_random_exponential(multiplier=1, max=max_wait_s),
        stop=stop_after_attempt(attempts),
        before_sleep=before_sleep_log(logger or log, logging.WARNING),
        reraise=True,
    )


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Jittered exponential back-off for loop-level waits: 50-100% of min(cap, base * 2^(n-1))."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return float(ceiling * random.uniform(0.5, 1.0))


class Shutdown:
    """Set by SIGTERM / SIGINT; loops check `requested` and sleep with `wait(seconds)`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> Shutdown:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if shutdown was requested meanwhile."""
        return self._event.wait(max(0.0, seconds))
