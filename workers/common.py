"""What every worker shares: retry with jittered back-off, graceful shutdown (`core.loops`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from core.loops import Shutdown, backoff_s

__all__ = ["Shutdown", "backoff_s", "with_retries"]

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
