"""The three timer functions against the simulator, storing into Azurite (issue 3)."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from devhost.simulator import Fault, Simulator, WorldConfig
from shared import jsonutil
from shared.settings import Settings
from shared.sync.context import DEADLINE_MARGIN_SECONDS as DEADLINE_MARGIN
from shared.sync.utilization import windows_to_fetch
from shared.table_store import TableStore
from tests.fakes import FakeClock
from tests.stores import drop_tables
from tests.sync_support import run_job, sim_env, snapshot, watermarks

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def sim():
    world = WorldConfig(
        customers=3,
        legacy_per_customer=1,
        plan_per_customer=1,
        licence_per_customer=1,
        forbidden_customers=1,
        days=10,
        records_per_day=6,
        now=NOW,
    )
    with Simulator(world=world) as simulator:
        yield simulator


@pytest.fixture
def settings(sim, azurite, store):
    return Settings.from_env(sim_env(sim, azurite, store.prefix))


def legacy_subs(sim):
    return sim.world.legacy_subscriptions()


def subs_of_kind(sim, *kinds):
    world = sim.world
    return [
        (c, s) for c in world.customer_ids(include_forbidden=False) for k in kinds for s in world.subscription_ids(c, k)
    ]


def expected_utilization(sim, settings, now=NOW):
    """Records the world reports in the windows a first run fetches, per subscription."""
    expected = {}
    for cid, sid in legacy_subs(sim):
        records = []
        for start, end in windows_to_fetch(None, now=now, settings=settings):
            records.extend(sim.world.utilization(cid, sid, start, end))
        expected[(cid, sid)] = records
    return expected


# -- usage records --------------------------------------------------------------------------------------


def test_usage_records_keep_every_field_and_every_digit(sim, settings, store):
    run = run_job("fetch_usage_records", settings, store, NOW)
    assert run.status == "succeeded"
    latest = {r["RowKey"]: r for r in store.partition("UsageRecords", "latest")}
    assert len(latest) == len(sim.world.usage_record_customers()) > 0
    for customer_id in sim.world.usage_record_customers():
        upstream = sim.world.usage_record(customer_id)
        row = latest[customer_id.lower()]
        assert row["raw"] == jsonutil.dumps(upstream)  # every field, unknown ones too, every digit
        assert row["totalCost"] == str(upstream["totalCost"])
        assert Decimal(row["totalCost"]) == upstream["totalCost"]


def test_usage_records_history_survives_the_month_turning_over(sim, settings, store):
    run_job("fetch_usage_records", settings, store, NOW)
    november = {r["RowKey"]: r["totalCost"] for r in store.partition("UsageRecords", "2026-11")}
    december_now = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    sim.world.set_now(december_now)
    run_job("fetch_usage_records", settings, store, december_now)
    assert {r["RowKey"]: r["totalCost"] for r in store.partition("UsageRecords", "2026-11")} == november
    december = {r["RowKey"]: r["totalCost"] for r in store.partition("UsageRecords", "2026-12")}
    latest = {r["RowKey"]: r["totalCost"] for r in store.partition("UsageRecords", "latest")}
    assert latest == december and december != november


# -- usage summaries -----------------------------------------------------------------------------------------


def test_usage_summaries_cover_legacy_and_azure_plan_but_not_licences(sim, settings, store):
    run = run_job("fetch_usage_summary", settings, store, NOW)
    assert run.status == "succeeded", run.errors
    stored = {(r["customerId"], r["subscriptionId"]) for r in store.query("UsageSummaries", "RowKey eq 'latest'")}
    expected = {(c.lower(), s.lower()) for c, s in subs_of_kind(sim, "legacy", "azure_plan")}
    assert stored == expected
    assert sim.calls(r"/subscriptions/[^/]+/usagesummary") == len(expected)


def test_usage_summary_latest_and_period_rows_hold_the_exact_total(sim, settings, store):
    run_job("fetch_usage_summary", settings, store, NOW)
    cid, sid = legacy_subs(sim)[0]
    upstream = sim.world.usage_summary(cid, sid)
    pk = f"{cid.lower()}|{sid.lower()}"
    latest = store.get("UsageSummaries", pk, "latest")
    period = store.get("UsageSummaries", pk, "period-" + upstream["billingStartDate"][:10])
    assert latest["totalCost"] == period["totalCost"] == str(upstream["totalCost"])


def test_a_summary_wrapped_in_a_collection_is_stored_the_same(sim, azurite, store):
    bare_settings = Settings.from_env(sim_env(sim, azurite, store.prefix))
    run_job("fetch_usage_summary", bare_settings, store, NOW)
    bare = snapshot(store, ("UsageSummaries",))
    wrapped_sim_world = WorldConfig(
        customers=3,
        legacy_per_customer=1,
        plan_per_customer=1,
        licence_per_customer=1,
        forbidden_customers=1,
        days=10,
        records_per_day=6,
        now=NOW,
        wrap_summary=True,
    )
    with Simulator(world=wrapped_sim_world) as wrapped:
        other = TableStore(store._service, prefix=store.prefix + "w")
        try:
            run_job("fetch_usage_summary", Settings.from_env(sim_env(wrapped, azurite, other.prefix)), other, NOW)
            assert snapshot(other, ("UsageSummaries",)) == bare
        finally:
            drop_tables(other)


def test_a_customer_without_a_relationship_is_skipped_and_the_run_goes_on(sim, settings, store):
    run = run_job("fetch_usage_summary", settings, store, NOW)
    forbidden = [c for c in sim.world.customer_ids() if sim.world.is_forbidden(c)]
    assert forbidden and run.status == "succeeded"
    rows = {r["RowKey"]: r for r in store.partition("Customers", "customer")}
    for customer_id in forbidden:
        assert rows[customer_id.lower()]["relationship"] == "forbidden"
        assert rows[customer_id.lower()]["errorCode"] == "20002"
    assert any("20002" in s for s in run.skipped)


# -- utilization -------------------------------------------------------------------------------------------------


def test_utilization_stores_every_record_of_every_window_once(sim, settings, store):
    run = run_job("fetch_utilization", settings, store, NOW)
    assert run.status == "succeeded", run.errors
    for (cid, sid), records in expected_utilization(sim, settings).items():
        rows = list(store.partition("Utilization", f"{cid.lower()}|{sid.lower()}"))
        assert len(rows) == len(records)
        assert sorted(r["quantity"] for r in rows) == sorted(str(r["quantity"]) for r in records)


def test_utilization_pages_across_links_next(sim, azurite, store):
    world = WorldConfig(
        customers=1,
        legacy_per_customer=1,
        plan_per_customer=0,
        licence_per_customer=0,
        forbidden_customers=0,
        days=4,
        records_per_day=1500,
        now=NOW,
    )
    with Simulator(world=world) as big:
        settings = Settings.from_env(sim_env(big, azurite, store.prefix, UTILIZATION_BACKFILL_DAYS="2"))
        run = run_job("fetch_utilization", settings, store, NOW)
        assert run.status == "succeeded", run.errors
        ((cid, sid),) = legacy_subs(big)
        expected = sum(
            len(list(big.world.utilization(cid, sid, s, e)))
            for s, e in windows_to_fetch(None, now=NOW, settings=settings)
        )
        assert expected > 1000
        assert len(list(store.partition("Utilization", f"{cid.lower()}|{sid.lower()}"))) == expected
        next_pages = [r for r in big.requests if "seek_operation=Next" in (r.path + str(r.query))]
        assert next_pages and all(r.headers.get("MS-ContinuationToken") for r in next_pages)


def test_azure_plan_subscriptions_are_skipped_for_utilization_with_the_reason(sim, settings, store):
    run = run_job("fetch_utilization", settings, store, NOW)
    plan_ids = [s for _, s in subs_of_kind(sim, "azure_plan")]
    assert plan_ids
    for sid in plan_ids:
        assert sim.calls(f"/subscriptions/{sid}/utilizations") == 0
    assert sum("Azure plan" in s for s in run.skipped) == len(plan_ids)


def test_quantities_keep_every_digit(sim, settings, store):
    run_job("fetch_utilization", settings, store, NOW)
    for (cid, sid), records in expected_utilization(sim, settings).items():
        stored = {
            json.loads(r["raw"])["usageStartTime"]
            for r in store.partition("Utilization", f"{cid.lower()}|{sid.lower()}")
        }
        assert stored
        digits = {r["quantity"] for r in store.partition("Utilization", f"{cid.lower()}|{sid.lower()}")}
        assert digits == {str(r["quantity"]) for r in records}
        assert any(len(d.replace(".", "").lstrip("0")) > 17 for d in digits)  # more than a float keeps


def test_204_leaves_the_window_pending_and_the_next_run_fills_it(sim, settings, store):
    sim.faults.add(Fault(kind="204", path=r"/utilizations/azure", times=None, retry_after=1))
    first = run_job("fetch_utilization", settings, store, NOW)
    assert first.status == "succeeded" and first.counters["pending"] == len(legacy_subs(sim))
    assert watermarks(store) == {} or all(v is None for v in watermarks(store).values())
    assert list(store.query("Utilization", "PartitionKey ne @x", {"x": ""})) == []
    sim.faults.clear()
    second = run_job("fetch_utilization", settings, store, NOW)
    assert second.counters["pending"] == 0 and second.counters["done"] == len(legacy_subs(sim))
    last_end = windows_to_fetch(None, now=NOW, settings=settings)[-1][1]
    assert set(watermarks(store).values()) == {last_end.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_429_and_500_are_retried_and_the_run_succeeds(sim, settings, store):
    sim.faults.add(Fault(kind="429", path=r"/utilizations/azure", times=2, retry_after=1))
    sim.faults.add(Fault(kind="500", path=r"/utilizations/azure", times=2))
    run = run_job("fetch_utilization", settings, store, NOW)
    assert run.status == "succeeded", run.errors
    assert run.counters["retries"] >= 4 and run.counters["throttled"] >= 2


def test_the_watermark_never_moves_past_a_window_that_was_not_fully_stored(sim, settings, store):
    windows = windows_to_fetch(None, now=NOW, settings=settings)
    broken_start = windows[2][0].strftime("%Y-%m-%dT%H:%M:%SZ")
    sim.faults.add(
        Fault(
            kind="error",
            path=rf"start_time={broken_start}",
            times=None,
            status=500,
            body={"code": 800003, "description": "Unexpected error"},
        )
    )
    run = run_job("fetch_utilization", settings, store, NOW)
    assert run.status == "failed" and run.errors
    assert set(watermarks(store).values()) == {windows[2][0].strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_a_failing_subscription_does_not_stop_the_others(sim, settings, store):
    (bad_cid, bad_sid), *others = legacy_subs(sim)
    sim.faults.add(
        Fault(
            kind="error",
            path=rf"/subscriptions/{bad_sid}/utilizations",
            times=None,
            status=500,
            body={"code": 800003, "description": "Unexpected error"},
        )
    )
    run = run_job("fetch_utilization", settings, store, NOW)
    assert run.status == "failed"
    assert [e.subject for e in run.errors] == [f"customer {bad_cid.lower()} subscription {bad_sid.lower()}"]
    assert run.errors[0].code == "800003" and run.errors[0].request_id
    marks = watermarks(store)
    assert all(marks.get(f"{c.lower()}|{s.lower()}") for c, s in others)
    stored = store.query("Runs", "PartitionKey eq @f", {"f": "fetch_utilization"})
    record = next(stored)
    assert record["status"] == "failed" and json.loads(record["errors"])[0]["code"] == "800003"


def test_the_time_budget_stops_at_a_window_boundary_and_the_next_run_resumes(sim, azurite, settings, store):
    # Time, for this run, is the number of utilization calls made: the budget runs out after three windows.
    one_at_a_time = Settings.from_env({**sim_env(sim, azurite, store.prefix), "SYNC_CONCURRENCY": "1"})
    run = run_job(
        "fetch_utilization", one_at_a_time, store, NOW, clock=lambda: sim.calls("/utilizations/azure"), budget=3
    )
    assert run.status == "succeeded" and run.counters["pending"] >= 1
    assert sim.calls("/utilizations/azure") == 3
    windows = windows_to_fetch(None, now=NOW, settings=settings)
    boundaries = {w[1].strftime("%Y-%m-%dT%H:%M:%SZ") for w in windows}
    assert list(watermarks(store).values()) == [windows[2][1].strftime("%Y-%m-%dT%H:%M:%SZ")]
    rerun = run_job("fetch_utilization", settings, store, NOW)
    assert rerun.counters["pending"] == 0
    assert set(watermarks(store).values()) == {max(boundaries)}


def test_windows_are_aligned_contiguous_and_end_hours_before_now():
    settings = Settings.from_env({"UTILIZATION_BACKFILL_DAYS": "3", "UTILIZATION_LAG_HOURS": "6"})
    windows = windows_to_fetch(None, now=NOW, settings=settings)
    assert windows[0][0] == datetime(2026, 11, 17, tzinfo=timezone.utc)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert windows[-1][1] <= NOW - timedelta(hours=6)
    resumed = windows_to_fetch(windows[1][1], now=NOW, settings=settings)
    assert resumed == windows[2:]
    long_idle = windows_to_fetch(NOW - timedelta(days=400), now=NOW, settings=settings)
    assert long_idle[0][0] >= NOW - timedelta(days=91)


def test_subscription_status_and_offer_values_are_kept_as_strings_unknown_ones_too(sim, settings, store):
    run_job("fetch_usage_summary", settings, store, NOW)
    stored = {
        (r["customerId"], r["subscriptionId"]): r for r in store.query("Subscriptions", "RowKey ne @x", {"x": ""})
    }
    upstream = {
        (cid.lower(), s["id"].lower()): s
        for cid in sim.world.customer_ids(include_forbidden=False)
        for s in (sub.raw for sub in sim.world.subscriptions(cid))
    }
    assert stored.keys() == upstream.keys()
    statuses = {row["status"] for row in stored.values()}
    assert statuses - {"active"}, "the world has undocumented statuses to keep"
    for key, row in stored.items():
        assert row["status"] == upstream[key]["status"] and row["offerId"] == upstream[key]["offerId"]
    assert {row["kind"] for row in stored.values()} == {"legacy", "azure_plan", "other"}


def test_records_without_instance_data_or_budget_amount_are_stored_not_quarantined(sim, azurite, store):
    no_details = Settings.from_env(sim_env(sim, azurite, store.prefix, UTILIZATION_SHOW_DETAILS="false"))
    run = run_job("fetch_utilization", no_details, store, NOW)
    assert run.status == "succeeded" and run.counters["quarantined"] == 0
    rows = list(store.query("Utilization", "PartitionKey ne @x", {"x": ""}))
    assert rows and all("instanceData" not in json.loads(r["raw"]) and "resourceUri" not in r for r in rows)
    records = run_job("fetch_usage_records", no_details, store, NOW)
    assert records.counters["quarantined"] == 0
    budgets = [json.loads(r["raw"]).get("budget", {}) for r in store.partition("UsageRecords", "latest")]
    assert any("amount" not in b for b in budgets)


# -- the run's deadline ---------------------------------------------------------------------------------------------


def test_a_wait_that_would_pass_the_deadline_stops_the_run_cleanly_and_the_next_run_resumes(sim, azurite, store):
    one_at_a_time = Settings.from_env({**sim_env(sim, azurite, store.prefix), "SYNC_CONCURRENCY": "1"})
    sim.faults.add(Fault("429", path="/utilizations/azure", times=1, retry_after=120))
    clock = FakeClock()
    run = run_job(
        "fetch_utilization", one_at_a_time, store, NOW, clock=clock, sleep=clock.sleep, timeout=DEADLINE_MARGIN + 60
    )
    assert not run.errors and run.counters["pending"] == len(legacy_subs(sim)), run.notes
    assert any("deadline" in note and "429" in note for note in run.notes), run.notes
    assert clock.sleeps == []  # the 120 s hold would have passed the deadline: not slept
    assert sim.calls("/utilizations/azure") == 1  # and nothing more was started
    rerun = run_job("fetch_utilization", one_at_a_time, store, NOW)
    assert rerun.status == "succeeded" and rerun.counters["pending"] == 0


def test_a_sequential_job_stopped_at_the_deadline_is_stalled_not_failed(sim, azurite, settings, store):
    sim.faults.add(Fault("503", path="/customers/usagerecords", times=1, retry_after=90))
    clock = FakeClock()
    run = run_job(
        "fetch_usage_records", settings, store, NOW, clock=clock, sleep=clock.sleep, timeout=DEADLINE_MARGIN + 60
    )
    assert run.status == "stalled" and not run.errors and run.notes[0].startswith("stalled: the run's deadline")
    assert run_job("fetch_usage_records", settings, store, NOW).status == "succeeded"
