"""What the rated-usage tests share: the simulated world's date, currencies, a run of fetch_rated_usage and the
totals the world says each day must have."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from devhost.simulator import Simulator
from devhost.simulator.billing import totals as world_totals
from shared import jsonutil, tables
from shared.settings import Settings
from shared.sync import jobs, runner
from shared.sync.runs import SyncFailed, SyncRun
from shared.table_store import TableStore
from tests.sync_support import sim_env

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
RATED = (tables.RATED_SLICES, tables.RATED_CUSTOMER_DAYS, tables.RATED_LINES)
CURRENCIES = "GBP,SEK"


def settings_of(sim: Simulator, azurite, prefix: str, **overrides: str) -> Settings:
    return Settings.from_env(sim_env(sim, azurite, prefix, **{"RATED_USAGE_CURRENCIES": CURRENCIES, **overrides}))


def rated_rows(store: TableStore) -> dict[str, list[dict[str, Any]]]:
    """Every rated-usage row, without service metadata, in key order."""
    return {
        name: sorted((dict(r) for r in store.all_rows(name)), key=lambda r: (r["PartitionKey"], r["RowKey"]))
        for name in RATED
    }


def sync(
    sim: Simulator,
    azurite,
    store: TableStore,
    *,
    now: datetime = NOW,
    sleeps: list[float] | None = None,
    **overrides: str,
) -> SyncRun:
    settings = settings_of(sim, azurite, store.prefix, **overrides)
    recorded = sleeps if sleeps is not None else []
    try:
        return runner.run_job(
            jobs.get("fetch_rated_usage"), settings, store, budget_seconds=None, now=lambda: now, sleep=recorded.append
        )
    except SyncFailed as failed:
        return failed.run


def expected_totals(sim: Simulator) -> dict[tuple[str, str, str], Decimal]:
    found: dict[tuple[str, str, str], Decimal] = {}
    for currency in CURRENCIES.split(","):
        for period in ("current", "last"):
            found.update(world_totals(sim.world, period, currency, sim.graph.options))
    return found


def stored_totals(store: TableStore) -> dict[tuple[str, str, str], str]:
    found = {}
    for row in store.all_rows(tables.RATED_SLICES):
        for day, view in jsonutil.loads(row["days"]).items():
            found[(row["customerId"], row["entitlementId"], day)] = view["billingPreTaxTotal"]
    return found
