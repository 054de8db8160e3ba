"""The inventory refresh: resumable, stalest first, within its budget share, and only the calls a change needs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from devhost.simulator import Simulator, WorldConfig
from shared import tables
from shared.settings import Settings
from tests.api_data import get, settings_for
from tests.sync_support import run_job, sim_env

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SUBSCRIPTIONS_CALL = r"/customers/[^/?]+/subscriptions(\?|$)"
CUSTOMERS_CALL = r"/v1/customers(\?|$)"


def world(customers: int) -> WorldConfig:
    return WorldConfig(
        customers=customers,
        legacy_per_customer=1,
        plan_per_customer=0,
        licence_per_customer=0,
        forbidden_customers=0,
        days=4,
        records_per_day=2,
        now=NOW,
    )


def listed(store) -> dict[str, str | None]:
    return {r["customerId"]: r.get("subscriptionsListedAt") for r in store.all_rows(tables.CUSTOMERS)}


def test_a_refresh_longer_than_its_budget_resumes_where_it_stopped_and_every_run_stores_rows(azurite, store):
    with Simulator(world=world(8)) as sim:
        settings = Settings.from_env(sim_env(sim, azurite, store.prefix, SYNC_CONCURRENCY="1"))

        def clock():  # time, for these runs, is Partner Center calls: listings and utilization pages
            return sim.calls(SUBSCRIPTIONS_CALL) + sim.calls("/utilizations/azure")

        seen_listed: set[str] = set()
        for number in range(1, 5):
            run = run_job("fetch_utilization", settings, store, NOW, clock=clock, budget=6)
            now_listed = {c for c, at in listed(store).items() if at}
            # Half the budget: three more customers a run, never the same ones again.
            assert len(now_listed - seen_listed) == min(3, 8 - len(seen_listed)), number
            seen_listed = now_listed
            assert run.counters["rows"] > 0 and run.counters["done"] + run.counters["pending"] > 0
            if number > 1:
                assert run.status == "succeeded", run.notes
            if len(now_listed) == 8:
                break
        assert len(seen_listed) == 8
        assert {s.lower() for _, s in sim.world.legacy_subscriptions()} == {
            r["subscriptionId"] for r in store.all_rows(tables.SUBSCRIPTIONS)
        }


def test_a_run_that_stores_nothing_before_its_budget_runs_out_is_stalled_and_health_says_why(azurite, store):
    with Simulator(world=world(4)) as sim:
        settings = Settings.from_env(sim_env(sim, azurite, store.prefix, SYNC_CONCURRENCY="1"))
        first = run_job("fetch_utilization", settings, store, NOW)  # every subscription known and synced
        assert first.status == "succeeded"
        later = NOW + timedelta(days=2)  # two new windows each, but a budget spent before any is fetched
        run = run_job("fetch_utilization", settings, store, later, clock=lambda: 10.0, budget=0)
    assert run.status == "stalled" and run.counters["rows"] == 0 and run.counters["pending"] == 4
    assert run.notes[0].startswith("stalled: the time budget (0 s) ran out with 4 subscriptions pending")
    body = get(store, "/api/health", now=later, settings=settings_for(store)).json()
    reasons = body["functions"]["fetch_utilization"]["reasons"]
    assert body["status"] == "unhealthy" and reasons[0].startswith("last finished run stalled: the time budget")


def test_calls_are_cut_to_what_a_change_needs(azurite, store):
    with Simulator(world=world(10)) as sim:
        settings = Settings.from_env(sim_env(sim, azurite, store.prefix))
        run_job("fetch_usage_summary", settings, store, NOW)
        assert (sim.calls(CUSTOMERS_CALL), sim.calls(SUBSCRIPTIONS_CALL)) == (1, 10)
        run_job("fetch_usage_summary", settings, store, NOW + timedelta(hours=1))  # nothing due
        assert (sim.calls(CUSTOMERS_CALL), sim.calls(SUBSCRIPTIONS_CALL)) == (1, 10)
        run_job("fetch_usage_summary", settings, store, NOW + timedelta(hours=7))  # only the listing is due
        assert (sim.calls(CUSTOMERS_CALL), sim.calls(SUBSCRIPTIONS_CALL)) == (2, 10)
        run_job("fetch_usage_summary", settings, store, NOW + timedelta(hours=25))  # every customer's listing too
        assert (sim.calls(CUSTOMERS_CALL), sim.calls(SUBSCRIPTIONS_CALL)) == (3, 20)
    later = NOW + timedelta(hours=32)
    with Simulator(world=world(11)) as grown:  # the same ten customers and a new one
        settings = Settings.from_env(sim_env(grown, azurite, store.prefix))
        run_job("fetch_usage_summary", settings, store, later)
        assert (grown.calls(CUSTOMERS_CALL), grown.calls(SUBSCRIPTIONS_CALL)) == (1, 1)
        new_id = grown.world.customer_ids()[-1].lower()
        assert listed(store)[new_id] == later.isoformat()
    with Simulator(world=world(9)) as shrunk:  # the last two customers left
        settings = Settings.from_env(sim_env(shrunk, azurite, store.prefix))
        run_job("fetch_usage_summary", settings, store, later + timedelta(hours=7))
        remaining = {c.lower() for c in shrunk.world.customer_ids()}
        assert set(listed(store)) == remaining
        assert {r["customerId"] for r in store.all_rows(tables.SUBSCRIPTIONS)} == remaining


def test_a_failed_customers_listing_fails_the_run_but_the_stored_inventory_is_still_synced(azurite, store):
    from devhost.simulator import Fault

    with Simulator(world=world(3)) as sim:
        settings = Settings.from_env(sim_env(sim, azurite, store.prefix))
        run_job("fetch_usage_summary", settings, store, NOW)
        sim.faults.add(Fault(kind="500", path=r"/v1/customers\?", times=None))
        run = run_job("fetch_usage_summary", settings, store, NOW + timedelta(hours=7))
    assert run.status == "failed" and run.errors[0].subject == "inventory: customers listing"
    assert run.counters["done"] == 3 and run.counters["rows"] == 6
