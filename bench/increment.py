"""What a partner pays: calls per subscription-day, runs to converge, wall time and Flex cost at 1 s per call.

Partner Center answers in about a second per call, so a sync's wall time is set by its calls, not by its CPU.
The simulator answers at once and the run's time budget is spent on a **virtual clock** that advances by
``latency / concurrency`` per Partner Center call (what ``SYNC_CONCURRENCY`` workers at that latency would
see), so a 30-day backfill of 2,000 subscriptions at 1 s per call is simulated in minutes, with the app's real
budget logic, stalest-first order and watermarks. Utilization rows are counted, not sent (``DiscardStore``):
calls and runs do not depend on them.

Reported: the runs a backfill from empty needs (budget SYNC_TIME_BUDGET_SECONDS each), whether any
subscription waited longer than its fair share (starvation), then three days of increments as the schedule
runs them (every 3 hours; reported per day) against the minimum: one utilization call per subscription-day
plus the inventory (the customers listing every INVENTORY_REFRESH_HOURS, each customer's subscriptions every
INVENTORY_SUBSCRIPTIONS_HOURS). Wall time = latency x max(ceil(calls / concurrency), longest chain) per run;
Flex cost = wall time x instance memory (GB-s) x the on-demand GB-s price (parameters below, not measured).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from bench.common import CUSTOMERS_REQUEST_SIZE, NOW, DiscardStore, legacy_world, new_prefix, sim_env
from devhost.simulator import Simulator
from shared import tables
from shared.settings import Settings
from shared.sync import jobs, runner
from shared.sync.runs import SyncFailed, SyncRun

INSTANCE_GB = 2.048  # infra: instanceMemoryMB 2048
PRICE_PER_GB_S = 0.000026  # Flex Consumption on-demand execution time, USD (a parameter: check current pricing)
SCHEDULE_HOURS = 3  # UTILIZATION_SCHEDULE: every 3 hours
DAYS = 3  # increments simulated after the backfill; the figures are per day, averaged


def _api_calls(sim: Simulator) -> int:
    stats = sim.stats()
    return int(stats["total"]) - int(stats["routes"].get("token", 0))


def _run(settings: Settings, store: DiscardStore, clock: Callable[[], float], when: Any) -> SyncRun:
    try:
        return runner.run_job(
            jobs.get("fetch_utilization"),
            settings,
            store,
            budget_seconds=settings.sync_time_budget_seconds,
            now=lambda: when,
            clock=clock,
            sleep=lambda s: None,
        )
    except SyncFailed as failed:
        return failed.run


def settings_windows(settings: Settings) -> list[Any]:
    """The windows a first sync of one subscription fetches, one after another."""
    from shared.sync.utilization import windows_to_fetch

    return list(windows_to_fetch(None, now=NOW, settings=settings))


def _wall(calls: int, chain: int, latency_s: float, concurrency: int) -> float:
    return latency_s * max(math.ceil(calls / concurrency), chain) if calls else 0.0


def measure(
    connection_string: str,
    *,
    subscriptions: int,
    backfill_days: int,
    latency_s: float = 1.0,
    concurrency: int = 4,
    records_per_day: int = 4,
    max_runs: int = 200,
) -> dict[str, Any]:
    """Backfill from empty, then DAYS days of increments, for ``subscriptions`` legacy subscriptions."""
    world = legacy_world(subscriptions, days=backfill_days, records_per_day=records_per_day)
    with Simulator(world=world) as sim:
        prefix = new_prefix()
        env = sim_env(
            sim,
            connection_string,
            prefix,
            UTILIZATION_BACKFILL_DAYS=str(backfill_days),
            SYNC_CONCURRENCY=str(concurrency),
        )
        settings = Settings.from_env(env)
        store = DiscardStore(TableServiceClient.from_connection_string(connection_string), prefix=prefix)

        def clock() -> float:  # virtual seconds: each call costs latency / concurrency of wall time
            return _api_calls(sim) * latency_s / concurrency

        try:
            backfill = _backfill(sim, settings, store, clock, latency_s, concurrency, max_runs)
            day = _days_after(sim, settings, store, clock, latency_s, concurrency, subscriptions)
        finally:
            store.drop_tables()
    subscription_days = subscriptions * backfill_days
    backfill_gb_s = backfill["wall_s"] * INSTANCE_GB
    day_gb_s = day["wall_s"] * INSTANCE_GB
    return {
        "subscriptions": subscriptions,
        "backfill_days": backfill_days,
        "latency_s": latency_s,
        "concurrency": concurrency,
        "budget_s": settings.sync_time_budget_seconds,
        "backfill": backfill,
        "day": day,
        "flex": {
            "instance_gb": INSTANCE_GB,
            "usd_per_gb_s": PRICE_PER_GB_S,
            "backfill_usd": round(backfill_gb_s * PRICE_PER_GB_S, 4),
            "day_usd": round(day_gb_s * PRICE_PER_GB_S, 4),
            "usd_per_1000_subscription_days_backfill": round(
                backfill_gb_s * PRICE_PER_GB_S / subscription_days * 1000, 4
            ),
            "usd_per_1000_subscription_days_increment": round(day_gb_s * PRICE_PER_GB_S / subscriptions * 1000, 4),
        },
    }


def _watermarks(store: DiscardStore) -> dict[str, str]:
    return {
        r["RowKey"]: str(r.get("doneThrough") or "")
        for r in store.partition(tables.SYNC_STATE, tables.UTILIZATION_STATE, select=["RowKey", "doneThrough"])
    }


def _backfill(
    sim: Simulator,
    settings: Settings,
    store: DiscardStore,
    clock: Callable[[], float],
    latency_s: float,
    concurrency: int,
    max_runs: int,
) -> dict[str, Any]:
    """Runs at the same moment until nothing is pending: how many, their calls, and the longest wait."""
    runs: list[dict[str, Any]] = []
    history: list[dict[str, str]] = []
    for _ in range(max_runs):
        run = _run(settings, store, clock, NOW)
        history.append(_watermarks(store))
        runs.append({"calls": run.counters["calls"], "done": run.counters["done"], "pending": run.counters["pending"]})
        if not run.counters["pending"]:
            break
    final = history[-1]
    longest_wait = 0  # runs in a row a subscription with work left made no progress
    for key in final:
        streak = 0
        for earlier, later in zip([{}, *history], history, strict=False):
            if later.get(key) != final[key] and later.get(key) == earlier.get(key):
                streak += 1
                longest_wait = max(longest_wait, streak)
            else:
                streak = 0
    calls = [r["calls"] for r in runs]
    chain = 2 + len(settings_windows(settings))  # customers page, subscriptions call, one window after another
    walls = [_wall(c, chain, latency_s, concurrency) for c in calls]
    per_run = max(1, math.floor(settings.sync_time_budget_seconds * concurrency / latency_s))
    return {
        "runs": len(runs),
        "converged": not runs[-1]["pending"],
        "calls": sum(calls),
        "wall_s": round(sum(walls), 1),
        "bound_runs": math.ceil(sum(calls) / per_run),
        "longest_wait_runs": longest_wait,
    }


def _days_after(
    sim: Simulator,
    settings: Settings,
    store: DiscardStore,
    clock: Callable[[], float],
    latency_s: float,
    concurrency: int,
    subscriptions: int,
) -> dict[str, Any]:
    """The schedule's runs over the next DAYS days, per day, against one call per subscription plus the inventory."""
    calls = 0
    wall = 0.0
    routes_before = dict(sim.stats()["routes"])
    for step in range(1, DAYS * 24 // SCHEDULE_HOURS + 1):
        when = NOW + timedelta(hours=SCHEDULE_HOURS * step)
        sim.world.set_now(when)
        run = _run(settings, store, clock, when)
        calls += run.counters["calls"]
        wall += _wall(run.counters["calls"], 1, latency_s, concurrency)
    customers = sim.world.config.customers
    listing_pages = max(1, math.ceil(customers / min(CUSTOMERS_REQUEST_SIZE, sim.world.config.customers_page_size)))
    inventory = math.ceil(24 / settings.inventory_refresh_hours) * listing_pages + customers * math.ceil(
        24 / max(24.0, settings.inventory_subscriptions_hours)
    )
    minimum = subscriptions + inventory
    sim.world.set_now(NOW)
    routes = {k: v - routes_before.get(k, 0) for k, v in sim.stats()["routes"].items()}
    calls = round(calls / DAYS)
    return {
        "runs": 24 // SCHEDULE_HOURS,
        "days_averaged": DAYS,
        "calls": calls,
        "minimum_calls": minimum,
        "utilization_minimum": subscriptions,
        "utilization_calls": round(routes.get("utilizations", 0) / DAYS),
        "inventory_calls": round((routes.get("customers", 0) + routes.get("subscriptions", 0)) / DAYS),
        "inventory_minimum": inventory,
        "calls_per_subscription_day": round(calls / subscriptions, 3),
        "vs_minimum": round(calls / minimum, 3),
        "wall_s": round(wall / DAYS, 1),
    }
