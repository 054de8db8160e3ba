"""When and how long to wait before trying a Partner Center call again."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Bounded retries of GET calls: Retry-After wins, otherwise capped exponential backoff with jitter.

    Attempt n (1-based) that failed without Retry-After waits ``min(backoff_max, backoff_base * 2**(n-1))``
    scaled by a jitter factor in [0.5, 1.0). A Retry-After longer than ``retry_after_max`` is not slept on:
    the call fails so the run can stop cleanly and the next run picks the work up.
    """

    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 300.0
    not_ready_attempts: int = 3
    not_ready_default_wait: float = 30.0
    random: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """Wait after failed attempt ``attempt`` when the server gave no Retry-After."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return ceiling * (0.5 + self.random() / 2)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server sent one, else the backoff for this attempt."""
        return retry_after if retry_after is not None else self.backoff(attempt)


class ThrottleGate:
    """One shared 'not before' time: a 429 on any thread holds back every thread's next call.

    Partner Center limits are per partner tenant, so parallel workers must honour one 429 together.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._not_before = 0.0

    def hold(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` from now (never shortens an existing hold)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def wait(self) -> float:
        """Sleep until the hold has passed; returns how long it slept."""
        with self._lock:
            remaining = self._not_before - self._clock()
        if remaining > 0:
            self._sleep(remaining)
            return remaining
        return 0.0
