"""A run's deadline: the moment (on the run's monotonic clock) by which its work must have stopped.

The Functions host kills a function at ``functionTimeout``; a run stops a margin before that, so its state and its
run record are written. Every wait (a poll, a ``Retry-After``, a throttle hold, a blob read) asks the deadline
first: a wait that would pass it is not slept, ``DeadlineReached`` is raised instead, and the work is left
resumable for the next run. Table writes are not bounded: they are what the margin is for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class DeadlineReached(Exception):
    """The run's deadline came before this work could finish; it is left for the next run (not a failure)."""


class Deadline:
    """A moment on ``clock`` (None: no deadline); thread-safe, immutable."""

    def __init__(self, at: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.at = at
        self.clock = clock

    @classmethod
    def after(cls, seconds: float | None, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline ``seconds`` from now on ``clock`` (None: never)."""
        return cls(None if seconds is None else clock() + seconds, clock=clock)

    def remaining(self) -> float:
        """Seconds left (0 once passed, infinity without a deadline)."""
        return math.inf if self.at is None else max(0.0, self.at - self.clock())

    def passed(self) -> bool:
        """True once the deadline has come."""
        return self.at is not None and self.clock() >= self.at

    def allows(self, wait: float) -> bool:
        """True when waiting ``wait`` seconds from now ends before the deadline."""
        return self.at is None or self.clock() + wait < self.at

    def check(self, what: str) -> None:
        """Raise DeadlineReached, naming ``what`` was stopped, once the deadline has come."""
        if self.passed():
            raise DeadlineReached(f"{what}: stopped at the run's deadline; the next run goes on from here")


NO_DEADLINE = Deadline(None)
