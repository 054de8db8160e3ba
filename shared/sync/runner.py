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
        refresh_spend(ctx)
    return ctx.run


def refresh_spend(ctx: RunContext) -> None:
    """Project the spend of what this run (or an earlier one cut short) marked, within the run's deadline."""
    from shared.spend.refresh import project_marked  # imported when a run ends, not when the host loads

    settings = ctx.settings
    currencies = settings.rate_card_currencies
    try:
        stats = project_marked(
            ctx.store,
            now=ctx.now,
            deadline=ctx.deadline,
            region=settings.rate_card_region,
            default_currency=currencies[0] if len(currencies) == 1 else None,
        )
    except Exception as exc:  # the data is stored; the read model says it is behind, the run record says why
        ctx.run.fail("spend read model", exc)
        return
    if stats.months or stats.left:
        left = f", {stats.left} left for the next run" if stats.left else ""
        ctx.run.note(f"spend: {stats.months} customer months projected{left}")
    write_focus(ctx)


def write_focus(ctx: RunContext) -> None:
    """Write the FOCUS dataset of the periods whose spend changed, within the run's deadline."""
    from shared.focus import writer  # imported when a run ends, not when the host loads

    settings = ctx.settings
    if not writer.enabled(settings):
        return
    try:
        stats = writer.write_marked(
            ctx.store,
            writer.container_client(settings),
            billing_account=settings.tenant_id or "partner",
            now=ctx.now,
            deadline=ctx.deadline,
            grant_containers=(lambda name: writer.container_client(settings, name))
            if settings.focus_grant_datasets
            else None,
            grant_base=settings.focus_container,
        )
    except Exception as exc:  # the spend is stored; the dataset is behind, the run record says why
        ctx.run.fail("FOCUS dataset", exc)
        return
    if stats.periods or stats.left:
        left = f", {stats.left} left for the next run" if stats.left else ""
        ctx.run.note(
            f"focus: {len(stats.periods)} periods, {stats.files_written} files written, "
            f"{stats.files_unchanged} unchanged, {stats.rows} rows{left}"
        )


def run_timer(name: str, *, past_due: bool) -> None:
    """What a timer function's ``main`` does: settings from the environment, the store, one run."""
    job = get(name)
    if past_due:
        log.info("%s is running late (past due)", name)
    settings = Settings.from_env()
    run_job(job, settings, TableStore.from_settings(settings), budget_seconds=settings.sync_time_budget_seconds)
