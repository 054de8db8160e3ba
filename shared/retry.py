"""One retry policy for every outbound call: whether an answer is retried, how long to wait, when to stop.

Shaped like azure-core's ``RetryPolicy``: a policy is configuration, ``start()`` makes the per-call state, and
``decide(state, outcome)`` says what to do with each answer. The callers (the Partner Center client, the token
provider, the table store) only send and map; none of them holds retry logic of its own.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import StrEnum

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


@dataclass(frozen=True)
class Outcome:
    """What one try produced: an HTTP status (with its Retry-After), or a transport error's type name."""

    status: int | None = None
    retry_after: float | None = None
    error: str | None = None

    @classmethod
    def of_response(cls, status: int, headers: Mapping[str, str]) -> Outcome:
        """The outcome of an answer, with its Retry-After parsed."""
        return cls(status=status, retry_after=parse_retry_after(headers.get("Retry-After")))

    @classmethod
    def of_error(cls, error: BaseException) -> Outcome:
        """The outcome of a try that got no answer (timeout, reset, refused connection)."""
        return cls(error=type(error).__name__)

    @property
    def reason(self) -> str:
        """How logs name it: the status, or the error type."""
        return self.error or str(self.status)


class Action(StrEnum):
    """What the caller does next."""

    ACCEPT = "accept"  # the answer is final and good: map it
    RETRY = "retry"  # wait ``Decision.wait`` seconds, then send again
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 (an action's name) - drop the cached token, send again at once
    NOT_READY = "not_ready"  # 204 answered too often: the data is not ready; report it, never as empty
    FAIL = "fail"  # give up: map the last answer (or error) to an error


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one outcome."""

    action: Action
    wait: float = 0.0
    throttled: bool = False  # a 429: every caller sharing the gate should hold back
    attempt: int = 0  # the counted tries so far (204 and one token refresh do not count)


@dataclass
class RetryState:
    """One call's history, kept across its tries (azure-core's ``retry_settings``)."""

    attempt: int = 0
    not_ready: int = 0
    token_refreshed: bool = False


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Bounded retries: Retry-After wins, otherwise capped exponential backoff with jitter.

    Counted try n (1-based) that failed without Retry-After waits ``min(backoff_max, backoff_base * 2**(n-1))``
    scaled by a jitter factor in [0.5, 1.0). A Retry-After longer than ``retry_after_max`` is not slept on:
    the call fails so the run can stop cleanly and the next run picks the work up. A 204 waits its Retry-After
    (or ``not_ready_default_wait``) up to ``not_ready_attempts`` answers, then is reported as not ready. A 401
    drops the cached token once. Set ``not_ready_attempts=0`` where 204 is an ordinary success.
    """

    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 300.0
    not_ready_attempts: int = 3
    not_ready_default_wait: float = 30.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES
    refresh_token_on_401: bool = True
    random: Callable[[], float] = field(default=random.random, repr=False)

    def start(self) -> RetryState:
        """The state of a new call."""
        return RetryState()

    def backoff(self, attempt: int) -> float:
        """Wait after failed counted try ``attempt`` when the server gave no Retry-After."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + self.random() / 2)

    def decide(self, state: RetryState, outcome: Outcome) -> Decision:
        """What to do after ``outcome``; updates ``state``."""
        if outcome.status == 204 and self.not_ready_attempts:
            state.not_ready += 1
            if state.not_ready >= self.not_ready_attempts:
                return Decision(Action.NOT_READY, outcome.retry_after or 0.0, attempt=state.attempt)
            wait = self.not_ready_default_wait if outcome.retry_after is None else outcome.retry_after
            return Decision(Action.RETRY, wait, attempt=state.attempt)  # a normal answer, not a failed try
        if outcome.status == 401 and self.refresh_token_on_401 and not state.token_refreshed:
            state.token_refreshed = True  # a token can be revoked before its expiry: fetch a new one, once
            return Decision(Action.REFRESH_TOKEN, attempt=state.attempt)
        state.attempt += 1
        retryable = outcome.error is not None or outcome.status in self.retry_statuses
        if not retryable:
            failed = outcome.status is None or outcome.status >= 400
            return Decision(Action.FAIL if failed else Action.ACCEPT, attempt=state.attempt)
        if state.attempt >= self.max_attempts:
            return Decision(Action.FAIL, attempt=state.attempt)
        if outcome.retry_after is not None and outcome.retry_after > self.retry_after_max:
            return Decision(Action.FAIL, attempt=state.attempt)
        wait = self.backoff(state.attempt) if outcome.retry_after is None else outcome.retry_after
        return Decision(Action.RETRY, wait, throttled=outcome.status == 429, attempt=state.attempt)


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

    def wait(self) -> None:
        """Sleep until the hold has passed."""
        with self._lock:
            remaining = self._not_before - self._clock()
        if remaining > 0:
            self._sleep(remaining)
