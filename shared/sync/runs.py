"""One run of a timer function: its counters, errors, quarantine, time budget, and its row in ``Runs``."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from shared import jsonutil
from shared.keys import digest, make_key
from shared.partner_center import PartnerCenterClient, PartnerCenterError
from shared.table_store import TableStore

log = logging.getLogger(__name__)

RUNS_TABLE = "Runs"
QUARANTINE_TABLE = "Quarantine"
_MAX_ERRORS_KEPT = 50


class SyncFailed(Exception):
    """The run stored what it could but something failed; raised so the platform marks the run failed."""


@dataclass(frozen=True)
class RunError:
    """One failure an operator should see: what it was about and Partner Center's identifiers."""

    subject: str
    message: str
    status: int | None = None
    code: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None

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
    along the way make the exit raise ``SyncFailed`` after everything that succeeded was stored.
    """

    def __init__(
        self,
        store: TableStore,
        function: str,
        *,
        client: PartnerCenterClient | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        clock: Callable[[], float] = time.monotonic,
        budget_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.function = function
        self.client = client
        self._now = now
        self._clock = clock
        self.run_id = str(uuid.uuid4())
        self.started_at = now()
        self._deadline = None if budget_seconds is None else clock() + budget_seconds
        self._lock = threading.Lock()
        self._row_key = f"{10**13 - int(self.started_at.timestamp() * 1000):013d}"
        self.rows = 0
        self.done = 0
        self.pending = 0
        self.quarantined = 0
        self.skipped: list[str] = []
        self.errors: list[RunError] = []
        self.status = "running"

    # -- counters ------------------------------------------------------------------------------------------

    def add(self, *, rows: int = 0, done: int = 0, pending: int = 0) -> None:
        """Add to the run's counters (thread-safe)."""
        with self._lock:
            self.rows += rows
            self.done += done
            self.pending += pending

    def out_of_time(self) -> bool:
        """True once the time budget is spent: start no new unit of work."""
        return self._deadline is not None and self._clock() >= self._deadline

    def skip(self, subject: str, reason: str) -> None:
        """Note work deliberately not done (no relationship, not covered by the endpoint)."""
        log.info("%s: skipped %s: %s", self.function, subject, reason)
        with self._lock:
            self.skipped.append(f"{subject}: {reason}")

    def fail(self, subject: str, error: BaseException) -> None:
        """Record a failure of one unit of work; the run goes on and ends failed."""
        if isinstance(error, PartnerCenterError):
            entry = RunError(
                subject=subject,
                message=str(error),
                status=error.status,
                code=error.code,
                request_id=error.request_id,
                correlation_id=error.correlation_id,
            )
        else:
            entry = RunError(subject=subject, message=f"{type(error).__name__}: {error}")
        log.error("%s: %s failed: %s", self.function, subject, entry.message)
        with self._lock:
            self.errors.append(entry)

    def quarantine(self, *, source: str, raw: Any, reason: str) -> None:
        """Keep a record that cannot be mapped, with the reason, and carry on with the rest."""
        raw_text = raw if isinstance(raw, str) else jsonutil.dumps(raw)
        log.warning("%s: quarantined a record from %s: %s", self.function, source, reason)
        self.store.upsert_one(
            QUARANTINE_TABLE,
            {
                "PartitionKey": make_key(self.function),
                "RowKey": digest(source, raw_text, length=32),
                "source": source,
                "reason": reason,
                "raw": raw_text,
            },
        )
        with self._lock:
            self.quarantined += 1

    # -- the run record ------------------------------------------------------------------------------------

    def __enter__(self) -> SyncRun:
        self._write()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.fail("run", exc)
        self.status = "failed" if self.errors else "succeeded"
        try:
            self._write()
        except Exception:  # the run's own outcome matters more than its record
            log.exception("%s: could not write the run record", self.function)
        log.info(self.summary())
        if exc is None and self.errors:
            raise SyncFailed(self.summary())

    def counters(self) -> dict[str, int]:
        """Rows, pages, calls and the rest, including the client's."""
        stats = self.client.stats if self.client else None
        return {
            "rows": self.rows,
            "pages": stats.pages if stats else 0,
            "calls": stats.calls if stats else 0,
            "retries": stats.retries if stats else 0,
            "done": self.done,
            "pending": self.pending,
            "quarantined": self.quarantined,
            "skipped": len(self.skipped),
            "errors": len(self.errors),
        }

    def summary(self) -> str:
        """One line for the log and the devhost."""
        seconds = (self._now() - self.started_at).total_seconds()
        counts = " ".join(f"{k}={v}" for k, v in self.counters().items())
        return f"{self.function} {self.status} in {seconds:.1f}s: {counts} correlation_id={self._correlation_id()}"

    def _correlation_id(self) -> str | None:
        return self.client.correlation_id if self.client else None

    def _write(self) -> None:
        counters = self.counters()
        finished = self.status != "running"
        self.store.upsert_one(
            RUNS_TABLE,
            {
                "PartitionKey": self.function,
                "RowKey": self._row_key,
                "function": self.function,
                "runId": self.run_id,
                "correlationId": self._correlation_id(),
                "startedAt": self.started_at.isoformat(),
                "finishedAt": self._now().isoformat() if finished else None,
                "status": self.status,
                **{k: v for k, v in counters.items() if k not in ("errors", "skipped")},
                "errorCount": counters["errors"],
                "skippedCount": counters["skipped"],
                "errors": jsonutil.dumps([e.as_record() for e in self.errors[:_MAX_ERRORS_KEPT]]),
                "skipped": jsonutil.dumps(self.skipped[:_MAX_ERRORS_KEPT]),
            },
        )
