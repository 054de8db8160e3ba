"""Running a registered job: one context (correlation id, counters, deadline, clients on demand), one run record."""

from __future__ import annotations

import logging
from typing import Unpack

from shared.settings import Settings
from shared.sync.context import RunContext, Timing
from shared.sync.jobs import Job, get
from shared.sync.runs import SyncRun
from shared.table_store import TableStore

log = logging.getLogger(__name__)


def run_job(
    job: Job, settings: Settings, store: TableStore, *, budget_seconds: float | None, **timing: Unpack[Timing]
) -> SyncRun:
    """Run one job once; raises SyncFailed (holding the run) after its record is written when any unit failed.

    The run stops a margin before the host's function timeout (host.json's; ``timing`` may give another, or None
    for none), whatever its budget.
    """
    ctx = RunContext.start(job, settings, store, budget_seconds=budget_seconds, **timing)
    with ctx.run:
        job.sync(ctx)
    return ctx.run


def run_timer(name: str, *, past_due: bool) -> None:
    """What a timer function's ``main`` does: settings from the environment, the store, one run."""
    job = get(name)
    if past_due:
        log.info("%s is running late (past due)", name)
    settings = Settings.from_env()
    run_job(job, settings, TableStore.from_settings(settings), budget_seconds=settings.sync_time_budget_seconds)
