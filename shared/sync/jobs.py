"""The timer functions, registered once: name, schedule setting, unit of work and sync callable.

Everything that lists the timer functions reads ``JOBS``: each function folder's ``main``, ``/api/health``,
``devhost up`` and ``trigger``, the tests and the benchmarks. A function folder of the same name holds the
``function.json`` whose schedule is ``%{schedule_setting}%``. Every sync callable has one signature, and
``run_job`` is the one way to run it: one correlation id, one set of counters that the client reports into,
one run record.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from shared.counters import Counters
from shared.partner_center import PartnerCenterClient
from shared.settings import Settings
from shared.sync.runs import SyncRun
from shared.sync.usage_records import sync_usage_records
from shared.sync.usage_summary import sync_usage_summaries
from shared.sync.utilization import sync_utilization
from shared.table_store import TableStore
from shared.wiring import partner_center_client

log = logging.getLogger(__name__)


class Sync(Protocol):
    """What every job's sync callable looks like."""

    def __call__(
        self, client: PartnerCenterClient, store: TableStore, settings: Settings, run: SyncRun, *, now: datetime
    ) -> None: ...


@dataclass(frozen=True)
class Job:
    """One timer function."""

    name: str  # the function folder's name, the Runs partition
    schedule_setting: str  # the app setting its function.json reads the NCRONTAB schedule from
    unit: str  # what the run record's done and pending count
    sync: Sync


JOBS: tuple[Job, ...] = (
    Job("fetch_usage_records", "USAGE_RECORDS_SCHEDULE", "customers", sync_usage_records),
    Job("fetch_usage_summary", "USAGE_SUMMARY_SCHEDULE", "subscriptions", sync_usage_summaries),
    Job("fetch_utilization", "UTILIZATION_SCHEDULE", "subscriptions", sync_utilization),
)
JOB_NAMES: tuple[str, ...] = tuple(job.name for job in JOBS)


def get(name: str) -> Job:
    """The job of a timer function; KeyError names the known ones."""
    for job in JOBS:
        if job.name == name:
            return job
    raise KeyError(f"no timer function {name!r}; there are: {', '.join(JOB_NAMES)}")


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
