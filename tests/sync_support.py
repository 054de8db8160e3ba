"""What the timer-function tests share: settings pointing at the simulator and Azurite, runs, table snapshots."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from devhost.azurite import Azurite
from shared.settings import Settings
from shared.sync.runs import SyncFailed, SyncRun
from shared.sync.usage_records import sync_usage_records
from shared.sync.usage_summary import sync_usage_summaries
from shared.sync.utilization import sync_utilization
from shared.table_store import TableStore
from shared.wiring import partner_center_client

DATA_TABLES = ("UsageRecords", "UsageSummaries", "Utilization", "Customers", "Subscriptions", "Quarantine")


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


def run_job(
    function: str,
    settings: Settings,
    store: TableStore,
    now: datetime,
    *,
    clock: Callable[[], float] | None = None,
    budget: float | None = None,
) -> SyncRun:
    """Run one timer function's sync like its main does, without real sleeps; never raises SyncFailed."""
    client = partner_center_client(settings, sleep=lambda seconds: None)
    extra = {"clock": clock} if clock else {}
    run = SyncRun(store, function, client=client, now=lambda: now, budget_seconds=budget, **extra)
    try:
        with run:
            if function == "fetch_usage_records":
                sync_usage_records(client, store, run, now=now)
            elif function == "fetch_usage_summary":
                sync_usage_summaries(client, store, settings, run, now=now)
            else:
                sync_utilization(client, store, settings, run, now=now)
    except SyncFailed:
        pass
    return run


def snapshot(store: TableStore, tables: tuple[str, ...] = DATA_TABLES) -> dict[str, list[dict[str, Any]]]:
    """Every row of the data tables, without service metadata, in key order."""
    result = {}
    for table in tables:
        rows = [dict(e) for e in store.query(table, "PartitionKey ne @x", {"x": "\u0000"})]
        result[table] = sorted(rows, key=lambda r: (r["PartitionKey"], r["RowKey"]))
    return result


def watermarks(store: TableStore) -> dict[str, str]:
    """doneThrough per subscription key."""
    return {r["RowKey"]: r.get("doneThrough") for r in store.partition("SyncState", "utilization")}
