"""What every long-running loop shares (workers and the scoring worker): graceful shutdown on
SIGTERM / SIGINT, and jittered back-off for loop-level waits."""

from __future__ import annotations

import os
import random
import signal
import threading
from typing import Any


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Jittered exponential back-off for loop-level waits: 50-100% of min(cap, base * 2^(n-1))."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret


class Shutdown:
    """Set by SIGTERM / SIGINT; loops check `requested` and sleep with `wait(seconds)`.

    A loop that blocks in `select()` instead (a database listener) also watches `wake_fd`: it
    becomes readable when shutdown is requested, by a signal or by `request()`.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def install(self) -> Shutdown:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name
        self.request()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: it is readable already
            pass

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if shutdown was requested meanwhile."""
        return self._event.wait(max(0.0, seconds))
