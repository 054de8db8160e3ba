"""The timer functions, registered once: name, schedule setting, unit of work and sync callable.

Everything that lists the timer functions reads ``JOBS``: each function folder's ``main`` (through
``shared.sync.runner``), ``SETTINGS`` (each job's schedule setting and its default), ``/api/health``,
``devhost up`` and ``trigger``, the tests and the benchmarks. A function
folder of the same name holds the ``function.json`` whose schedule is ``%{schedule_setting}%``. Every sync
callable has one signature, ``Sync``: it takes the run's ``RunContext`` (settings, store, run record, clock,
deadline, clients built on demand). The sync modules are imported only when a job runs, so the HTTP function,
which only needs the names, does not load the Partner Center client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from shared.tables import RATED_USAGE_STATE, USAGE_SUMMARY_STATE, UTILIZATION_STATE

if TYPE_CHECKING:
    from shared.sync.context import RunContext

Sync = Callable[["RunContext"], None]  # what every job's sync callable looks like


@dataclass(frozen=True)
class Job:
    """One timer function."""

    name: str  # the function folder's name, the Runs partition
    schedule_setting: str  # the app setting its function.json reads the NCRONTAB schedule from (in SETTINGS)
    schedule: str  # that setting's default
    unit: str  # what the run record's done and pending count
    sync_path: str  # "module:function" of its Sync callable
    progress: tuple[str, str] | None = None  # (SyncState partition, field): how far each subscription's data reaches
    snapshots: str | None = None  # SyncState partition of its export streams (one row each), shown by health

    @property
    def sync(self) -> Sync:
        """The sync callable (its module imported on first use)."""
        module, _, function = self.sync_path.partition(":")
        return cast(Sync, getattr(importlib.import_module(module), function))


JOBS: tuple[Job, ...] = (
    Job(
        "fetch_usage_records",
        "USAGE_RECORDS_SCHEDULE",
        "0 15 * * * *",
        "customers",
        "shared.sync.usage_records:sync_usage_records",
    ),
    Job(
        "fetch_usage_summary",
        "USAGE_SUMMARY_SCHEDULE",
        "0 30 */6 * * *",
        "subscriptions",
        "shared.sync.usage_summary:sync_usage_summaries",
        (USAGE_SUMMARY_STATE, "lastSuccessAt"),
    ),
    Job(
        "fetch_utilization",
        "UTILIZATION_SCHEDULE",
        "0 45 */3 * * *",
        "subscriptions",
        "shared.sync.utilization:sync_utilization",
        (UTILIZATION_STATE, "doneThrough"),
    ),
    Job(
        "fetch_rated_usage",
        "RATED_USAGE_SCHEDULE",
        "0 20 5,17 * * *",
        "exports",
        "shared.sync.rated_usage:sync_rated_usage",
        snapshots=RATED_USAGE_STATE,
    ),
    Job(
        "fetch_invoices",
        "INVOICES_SCHEDULE",
        "0 40 6 * * *",
        "invoices",
        "shared.sync.invoices:sync_invoices",
    ),
    Job(
        "fetch_rate_card",
        "RATE_CARD_SCHEDULE",
        "0 10 4 * * *",
        "currencies",
        "shared.sync.rate_card:sync_rate_card",
    ),
)
JOB_NAMES: tuple[str, ...] = tuple(job.name for job in JOBS)


def get(name: str) -> Job:
    """The job of a timer function; KeyError names the known ones."""
    for job in JOBS:
        if job.name == name:
            return job
    raise KeyError(f"no timer function {name!r}; there are: {', '.join(JOB_NAMES)}")
