"""One run of a timer function: its counters, errors, quarantine, time budget, and its row in ``Runs``."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from shared import jsonutil
from shared.counters import Counters
from shared.deadline import DeadlineReached
from shared.errors import ServiceError
from shared.table_store import TableStore
from shared.tables import QUARANTINE, RUNS, RunStatus, quarantine_row, run_row

log = logging.getLogger(__name__)

# What a run record counts, in its order; the client reports calls, pages and retries into the same counters.
COUNTED = ("rows", "pages", "calls", "retries", "done", "pending", "quarantined")


class SyncFailed(Exception):
    """The run stored what it could but something failed; raised so the platform marks the run failed."""

    def __init__(self, run: SyncRun) -> None:
        super().__init__(run.summary())
        self.run = run


@dataclass(frozen=True)
class RunError:
    """One failure an operator should see: what it was about and the service's identifiers."""

    subject: str
    message: str
    status: int | None = None
    code: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None

    @classmethod
    def of(cls, subject: str, error: BaseException) -> RunError:
        """The record of an exception: status, code and ids of every service error, the type of anything else."""
        if isinstance(error, ServiceError):
            return cls(
                subject=subject,
                message=str(error),
                status=error.status,
                code=error.code,
                request_id=error.request_id,
                correlation_id=error.correlation_id,
            )
        return cls(subject=subject, message=f"{type(error).__name__}: {error}")

    def as_record(self) -> dict[str, Any]:
        """The JSON shape stored in the run record."""
        return {
            "subject": self.subject,
            "message": self.message,
            "status": self.status,
            "code": self.code,
            "requestId": self.request_id,
            "correlationId": self.correlation_id,
        }


class SyncRun:
    """Counters and outcome of one run, written to the ``Runs`` table at start and at the end.

    Used as a context manager: an exception escaping the body is recorded and re-raised; errors recorded
    along the way make the exit raise ``SyncFailed`` after everything that succeeded was stored. Reaching the run's
    deadline (``DeadlineReached``, escaping the body or met by a unit of work) is no error: the run stops starting
    work, says so in its notes, and what it left is pending for the next run.
    ``done`` and ``pending`` count the job's ``unit`` (customers, subscriptions), named in the record.
    """

    def __init__(
        self,
        store: TableStore,
        function: str,
        *,
        unit: str,
        correlation_id: str | None = None,
        counters: Counters | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        clock: Callable[[], float] = time.monotonic,
        budget_seconds: float | None = None,
    ) -> None:
        self.store, self.function, self.unit = store, function, unit
        self.correlation_id = correlation_id
        self.counters = counters if counters is not None else Counters()
        self._now, self._clock = now, clock
        self.run_id = str(uuid.uuid4())
        self.started_at = now()
        self._deadline = None if budget_seconds is None else clock() + budget_seconds
        self._lock = threading.Lock()
        self.budget_seconds = budget_seconds
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.errors: list[RunError] = []
        self.status = RunStatus.RUNNING
        self.deadline_reached = False

    # -- counters ------------------------------------------------------------------------------------------

    def add(self, *, rows: int = 0, done: int = 0, pending: int = 0) -> None:
        """Add to the run's counters (thread-safe)."""
        self.counters.add(rows=rows, done=done, pending=pending)

    def out_of_time(self) -> bool:
        """True once the time budget is spent (or the deadline was met): start no new unit of work."""
        return self.deadline_reached or (self._deadline is not None and self._clock() >= self._deadline)

    def reached_deadline(self, subject: str, error: DeadlineReached) -> None:
        """A unit of work stopped at the run's deadline: no failure; the run starts nothing more (said once)."""
        log.info("%s: %s stopped at the deadline: %s", self.function, subject, error)
        with self._lock:
            first, self.deadline_reached = not self.deadline_reached, True
            if first:
                self.notes.append(f"stopped at the run's deadline (function timeout less a margin): {error}")

    def budget_share(self, share: float) -> Callable[[], bool]:
        """The clock of a step that may use ``share`` of the budget left now: True once that part is spent."""
        if self._deadline is None:
            return self.out_of_time
        deadline = self._clock() + max(0.0, self._deadline - self._clock()) * share
        return lambda: self._clock() >= deadline

    def skip(self, subject: str, reason: str) -> None:
        """Note work deliberately not done (no relationship, not covered by the endpoint)."""
        log.info("%s: skipped %s: %s", self.function, subject, reason)
        with self._lock:
            self.skipped.append(f"{subject}: {reason}")

    def note(self, text: str) -> None:
        """Say something an operator should read about how the run went (kept in its record)."""
        log.info("%s: %s", self.function, text)
        with self._lock:
            self.notes.append(text)

    def fail(self, subject: str, error: BaseException) -> None:
        """Record a failure of one unit of work; the run goes on and ends failed."""
        entry = RunError.of(subject, error)
        log.error("%s: %s failed: %s", self.function, subject, entry.message)
        with self._lock:
            self.errors.append(entry)

    def quarantine(self, *, source: str, raw: Any, reason: str, raw_is_text: bool = False) -> None:
        """Keep a record (as parsed, or its JSON text) that cannot be mapped or stored, with the reason; carry on."""
        raw_text = raw if raw_is_text else jsonutil.dumps(raw, allow_nan=True)
        row = quarantine_row(self.function, source=source, raw_text=raw_text, reason=reason)
        log.warning("%s: quarantined a record from %s: %s", self.function, row["source"][:200], row["reason"])
        self.store.upsert_one(QUARANTINE, row)
        self.counters.add(quarantined=1)

    def quarantine_refused(self, row: Mapping[str, Any], reason: str) -> None:
        """Keep a row the table service refused (its record, when it has one), and carry on."""
        source = f"refused row ({row.get('PartitionKey')}, {row.get('RowKey')})"
        if isinstance(row.get("raw"), str):
            self.quarantine(source=source, raw=row["raw"], reason=reason, raw_is_text=True)
        else:
            self.quarantine(source=source, raw=dict(row), reason=reason)

    # -- the run record ------------------------------------------------------------------------------------

    def __enter__(self) -> SyncRun:
        self._write()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if isinstance(exc, DeadlineReached):
            self.reached_deadline("run", exc)
            if not self.counters["pending"]:
                self.counters.add(pending=1)  # the unit it was working on
        elif exc is not None:
            self.fail("run", exc)
        self.status = RunStatus.FAILED if self.errors else RunStatus.SUCCEEDED
        stalled = self.stalled_reason()
        if stalled and not self.errors:
            self.status = RunStatus.STALLED
            self.notes.insert(0, stalled)
        try:
            self._write()
        except Exception:  # the run's own outcome matters more than its record
            log.exception("%s: could not write the run record", self.function)
        log.info(self.summary())
        if (exc is None or isinstance(exc, DeadlineReached)) and self.status != RunStatus.SUCCEEDED:
            raise SyncFailed(self)
        return isinstance(exc, DeadlineReached)  # a clean stop: the run is over, not broken

    def stalled_reason(self) -> str | None:
        """Why the run made no progress, when its budget ran out with work pending and nothing finished or stored."""
        pending, done, rows = self.counters["pending"], self.counters["done"], self.counters["rows"]
        # ``advanced``: work that is kept for the next run though nothing is stored yet (a staged export's blobs)
        if not (pending and not done and not rows and not self.counters["advanced"] and self.out_of_time()):
            return None
        spent = "the run's deadline" if self.deadline_reached else f"the time budget ({self.budget_seconds:g} s)"
        return f"stalled: {spent} ran out with {pending} {self.unit} pending and none finished or stored"

    def counts(self) -> dict[str, int]:
        """Rows, pages, calls and the rest, as the run record stores them."""
        return {name: self.counters[name] for name in COUNTED}

    def summary(self) -> str:
        """One line for the log and the devhost."""
        seconds = (self._now() - self.started_at).total_seconds()
        counts = {**self.counts(), "skipped": len(self.skipped), "errors": len(self.errors)}
        text = " ".join(f"{k}={v}" for k, v in counts.items())
        return f"{self.function} {self.status} in {seconds:.1f}s: {text} correlation_id={self.correlation_id}"

    def _write(self) -> None:
        finished = self.status != RunStatus.RUNNING
        row = run_row(
            function=self.function,
            run_id=self.run_id,
            correlation_id=self.correlation_id,
            started_at=self.started_at,
            finished_at=self._now() if finished else None,
            status=self.status,
            unit=self.unit,
            counts=self.counts(),
            errors=[e.as_record() for e in self.errors],
            skipped=self.skipped,
            notes=self.notes,
        )
        self.store.upsert_one(RUNS, row)
