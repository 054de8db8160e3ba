"""What the timer-function tests share: settings pointing at the simulator and Azurite, runs, table snapshots."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from devhost.azurite import Azurite
from devhost.simulator import invoices
from shared import tables
from shared.billing import rows as billed_rows
from shared.settings import Settings
from shared.sync import context, jobs, runner
from shared.sync.runs import SyncFailed, SyncRun
from shared.table_store import TableStore

DATA_TABLES = (
    tables.USAGE_RECORDS,
    tables.USAGE_SUMMARIES,
    tables.UTILIZATION,
    tables.CUSTOMERS,
    tables.SUBSCRIPTIONS,
    tables.QUARANTINE,
    tables.RATED_SLICES,
    tables.RATED_CUSTOMER_DAYS,
    tables.RATED_LINES,
    *billed_rows.TABLES,
)


def ties_out(sim: Any) -> None:
    """Clear the simulator's planted tie-out mismatch: a run that stores it fails by design (test_billing)."""
    invoices.configure(sim.world, sim.invoice_state, {"mismatch": None})


def sim_env(sim: Any, azurite: Azurite, prefix: str, **overrides: str) -> dict[str, str]:
    """App settings for a run against the simulator and Azurite."""
    env = {
        **sim.app_settings(),
        "USAGE_STORAGE": azurite.connection_string,
        "TABLE_PREFIX": prefix,
        "UTILIZATION_BACKFILL_DAYS": "5",
        "SYNC_CONCURRENCY": "2",
    }
    env.update(overrides)
    return env


def stand_in_settings(httpserver: Any, azurite: Azurite, prefix: str, **overrides: str) -> Settings:
    """Settings for a run against a loopback Partner Center stand-in (pytest-httpserver) and Azurite."""
    base = httpserver.url_for("/").rstrip("/")
    env = {
        "PARTNER_CENTER_BASE_URL": base,
        "PARTNER_CENTER_AUTHORITY": base,
        "PARTNER_CENTER_TENANT_ID": "tenant",
        "PARTNER_CENTER_CLIENT_ID": "app",
        "PARTNER_CENTER_CLIENT_SECRET": "s",
        "PARTNER_CENTER_REFRESH_TOKEN": "r",
        "USAGE_STORAGE": azurite.connection_string,
        "TABLE_PREFIX": prefix,
    }
    return Settings.from_env({**env, **overrides})


def _no_sleep(seconds: float) -> None:
    pass


def run_job(
    function: str,
    settings: Settings,
    store: TableStore,
    now: datetime,
    *,
    clock: Callable[[], float] | None = None,
    budget: float | None = None,
    sleep: Callable[[float], None] | None = None,
    timeout: float | None = context.FUNCTION_TIMEOUT,
) -> SyncRun:
    """Run one timer function's job as its main does, at ``now``, without real sleeps (host.json's function
    timeout unless ``timeout`` is given, on ``clock`` when given); never raises SyncFailed."""
    extra = {"clock": clock} if clock else {}
    job = jobs.get(function)
    try:
        return runner.run_job(
            job,
            settings,
            store,
            budget_seconds=budget,
            timeout_seconds=timeout,
            now=lambda: now,
            sleep=sleep or (lambda s: None),
            **extra,
        )
    except SyncFailed as failed:
        return failed.run


def snapshot(store: TableStore, tables: tuple[str, ...] = DATA_TABLES) -> dict[str, list[dict[str, Any]]]:
    """Every row of the data tables, without service metadata, in key order."""
    result = {}
    for table in tables:
        rows = list(store.all_rows(table))
        result[table] = sorted(rows, key=lambda r: (r["PartitionKey"], r["RowKey"]))
    return result


def watermarks(store: TableStore) -> dict[str, str | None]:
    """doneThrough per subscription key (None where a subscription has none yet)."""
    return {r["RowKey"]: r.get("doneThrough") for r in store.partition(tables.SYNC_STATE, tables.UTILIZATION_STATE)}
