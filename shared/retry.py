"""One retry policy and one retry loop for every outbound call: whether an answer is retried, how long to wait,
when to stop.

Shaped like azure-core's ``RetryPolicy``: a policy is configuration, ``start()`` makes the per-call state,
``decide(state, outcome)`` says what to do with each answer, and ``run(send)`` is the one loop that owns
try -> decide -> (refresh the token | wait | stop), with its logging, its counters (``calls``, ``retries``,
``throttled``), the shared 429 ``ThrottleGate`` and the run's ``Deadline``. The callers (the Partner Center client,
the Graph billing client and its blob reader, the token provider, the table store) only send one try and map the
final answer; none of them holds a loop of its own.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Generic, TypeVar

from shared.counters import Counters
from shared.deadline import Deadline, DeadlineReached

log = logging.getLogger(__name__)
T = TypeVar("T")

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


# A try that did what it was asked without an HTTP status of its own (a table write, a secret saved, a blob read).
DONE = Outcome(status=200)


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


@dataclass(frozen=True)
class Final(Generic[T]):
    """How a call ended: the last try's result (None when it produced none), its outcome and the last decision.

    ``decision.action`` is ACCEPT (map ``result``), NOT_READY (204 too often) or FAIL (map the last answer or error).
    """

    result: T | None
    outcome: Outcome
    decision: Decision


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

    def run(
        self,
        send: Callable[[], tuple[T | None, Outcome]],
        *,
        sleep: Callable[[float], None],
        deadline: Deadline | None = None,
        gate: ThrottleGate | None = None,
        counters: Counters | None = None,
        on_refresh: Callable[[], None] | None = None,
        describe: Callable[[], str] = lambda: "call",
    ) -> Final[T]:
        """Send until the policy accepts, gives up or says not ready; the one loop every caller goes through.

        ``send`` makes one try and returns (its result or None, its outcome); it raises only what no retry can
        mend. Before each try the shared ``gate`` (a 429 on any thread holds every thread) is waited out; a 401
        calls ``on_refresh`` and sends again at once; a wait is slept (or, for a 429 with a gate, held on the
        gate for everyone). A try is not sent once ``deadline`` has passed, and a wait that would pass it is not
        slept: DeadlineReached is raised instead. ``describe`` names the call in logs and messages (its request
        and correlation ids), never a credential. ``counters`` get ``calls``, ``retries`` and ``throttled``.
        """
        state = self.start()
        while True:
            if deadline is not None and deadline.passed():
                raise DeadlineReached(f"{describe()}: not sent, the run's deadline has passed; left for the next run")
            if gate is not None:
                gate.wait(deadline, describe)
            if counters is not None:
                counters.add(calls=1)
            result, outcome = send()
            decision = self.decide(state, outcome)
            if decision.action is Action.REFRESH_TOKEN:
                if on_refresh is not None:
                    on_refresh()
                continue
            if decision.action is not Action.RETRY:
                return Final(result, outcome, decision)
            if deadline is not None and not deadline.allows(decision.wait):
                raise DeadlineReached(
                    f"{describe()} answered {outcome.reason} and asked for {decision.wait:.1f}s, which would pass "
                    f"the run's deadline ({deadline.remaining():.1f}s left); left for the next run"
                )
            if counters is not None:
                counters.add(retries=1, throttled=int(decision.throttled))
            log.warning(
                "%s answered %s; retrying in %.1fs (attempt %d/%d)",
                describe(),
                outcome.reason,
                decision.wait,
                decision.attempt + 1,
                self.max_attempts,
            )
            if decision.throttled and gate is not None:
                gate.hold(decision.wait)  # the gate, before the next try, does the waiting for every thread
            elif decision.wait > 0:
                sleep(decision.wait)


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

    def wait(self, deadline: Deadline | None = None, describe: Callable[[], str] = lambda: "call") -> None:
        """Sleep until the hold has passed; DeadlineReached instead when the hold outlasts ``deadline``."""
        with self._lock:
            remaining = self._not_before - self._clock()
        if remaining <= 0:
            return
        if deadline is not None and not deadline.allows(remaining):
            raise DeadlineReached(
                f"{describe()}: a 429 holds every call back for {remaining:.1f}s, which would pass "
                f"the run's deadline ({deadline.remaining():.1f}s left); left for the next run"
            )
        self._sleep(remaining)
