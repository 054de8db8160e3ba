"""Running a registered job: one correlation id, one set of counters the client reports into, one run record."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from shared.counters import Counters
from shared.settings import Settings
from shared.sync.jobs import Job, get
from shared.sync.runs import SyncRun
from shared.table_store import TableStore
from shared.wiring import partner_center_client

log = logging.getLogger(__name__)


def run_job(
    job: Job,
    settings: Settings,
    store: TableStore,
    *,
    budget_seconds: float | None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncRun:
    """Run one job once; raises SyncFailed (holding the run) after its record is written when any unit failed."""
    correlation_id = str(uuid.uuid4())
    counters = Counters()
    client = partner_center_client(settings, correlation_id=correlation_id, counters=counters, sleep=sleep)
    run = SyncRun(
        store,
        job.name,
        unit=job.unit,
        correlation_id=correlation_id,
        counters=counters,
        now=now,
        clock=clock,
        budget_seconds=budget_seconds,
    )
    with run:
        job.sync(client, store, settings, run, now=run.started_at)
    return run


def run_timer(name: str, *, past_due: bool) -> None:
    """What a timer function's ``main`` does: settings from the environment, the store, one run."""
    job = get(name)
    if past_due:
        log.info("%s is running late (past due)", name)
    settings = Settings.from_env()
    run_job(job, settings, TableStore.from_settings(settings), budget_seconds=settings.sync_time_budget_seconds)
