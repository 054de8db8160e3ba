"""fetch_rated_usage end to end: the Graph billing export in the simulator, blobs in Azurite, rows in Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, localcontext
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from devhost.simulator.billing import lines as world_lines
from devhost.simulator.faults import Fault
from shared import jsonutil, tables
from shared.rated.chunks import count_of, texts_of
from shared.rated.ingest import EXACT
from shared.settings import Settings, SettingsError
from shared.sync import jobs, runner
from shared.sync.context import DEADLINE_MARGIN_SECONDS
from shared.sync.runs import SyncFailed
from shared.table_store import TableStore
from tests.fakes import FakeClock
from tests.rated_support import CURRENCIES, NOW, expected_totals, rated_rows, settings_of, stored_totals, sync
from tests.stores import drop_tables
from tests.sync_support import run_job, sim_env


@pytest.fixture
def other_store(azurite) -> Iterator[TableStore]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table_store = TableStore(service, prefix="o" + __import__("uuid").uuid4().hex[:12])
    yield table_store
    drop_tables(table_store)


def test_a_run_stores_every_line_and_totals_equal_their_lines_digit_for_digit(billing_sim, azurite, store):
    run = sync(billing_sim, azurite, store)
    assert run.status == "succeeded", run.summary()
    assert run.counters["done"] == 4  # current and last, two currencies
    expected = expected_totals(billing_sim)
    stored = stored_totals(store)
    assert set(stored) == {(c.lower(), e.lower(), d) for c, e, d in expected}
    for (customer, entitlement, day), total in expected.items():
        assert stored[(customer.lower(), entitlement.lower(), day)] == str(total)  # the same digits, not just equal
    lines = [text for row in store.all_rows(tables.RATED_LINES) for text in texts_of(row)]
    world = [
        line
        for c in CURRENCIES.split(",")
        for p in ("current", "last")
        for line in world_lines(billing_sim.world, p, c, billing_sim.graph.options)
    ]
    assert len(lines) == len(world)  # identical-looking lines are both kept
    assert sorted(jsonutil.loads(text)["BillingPreTaxTotal"] for text in lines) == sorted(
        ln["BillingPreTaxTotal"] for ln in world
    )
    customers = {
        (r["customerId"], r["period"]): jsonutil.loads(r["days"]) for r in store.all_rows(tables.RATED_CUSTOMER_DAYS)
    }
    for (customer, _period), days in customers.items():
        for day, view in days.items():
            parts = [total for (c, _, d), total in expected.items() if c.lower() == customer and d == day]
            with localcontext(EXACT):
                assert view["billingPreTaxTotal"] == str(sum(parts, Decimal(0)))
            assert view["subscriptions"] == len(parts)
    resellers = {r["currencyCode"]: r.get("tier2MpnId") for r in store.all_rows(tables.RATED_SLICES)}
    assert resellers["SEK"] and not resellers["GBP"]  # the reseller of record is kept (customer 2 is indirect)


@pytest.mark.parametrize(
    ("inline", "status"), [(False, "succeeded"), (True, "completed"), (True, "succeeded"), (False, "completed")]
)
def test_both_success_shapes_and_statuses_store_the_same_rows(billing_sim, azurite, store, other_store, inline, status):
    sync(billing_sim, azurite, other_store)
    billing_sim.graph.configure({"manifestInline": inline, "finalStatus": status})
    run = sync(billing_sim, azurite, store)
    assert run.status == "succeeded", run.summary()
    assert rated_rows(store) == rated_rows(other_store)


@pytest.mark.parametrize(("empty_as", "says"), [("5000", "(code 5000)"), ("blobCount0", ": 0 lines in 0 blobs")])
def test_no_data_as_failure_5000_or_as_an_empty_manifest_is_a_success_without_rows(
    billing_sim, azurite, store, empty_as, says
):
    billing_sim.graph.configure({"emptyAs": empty_as})
    settings = Settings.from_env(sim_env(billing_sim, azurite, store.prefix, RATED_USAGE_CURRENCIES="JPY"))
    run = run_job("fetch_rated_usage", settings, store, NOW)
    assert run.status == "succeeded", run.summary()
    assert run.counters["done"] == 2 and not list(store.all_rows(tables.RATED_SLICES))
    assert sum(says in note for note in run.notes) == 2, run.notes  # both streams (current, last) say why


def test_retry_after_is_honoured_through_the_injected_sleep_and_410_starts_again(billing_sim, azurite, store):
    billing_sim.graph.configure({"retryAfter": 7, "polls": 2, "expireOperations": 1})
    sleeps: list[float] = []
    run = sync(billing_sim, azurite, store, sleeps=sleeps)
    assert run.status == "succeeded", run.summary()
    assert sleeps.count(7.0) >= 2 * 4  # two running answers per export, four exports
    assert billing_sim.graph.exports_started == 5  # one 410 Gone: that stream exported again


def test_an_export_still_running_is_polled_again_by_the_next_run_not_started_again(billing_sim, azurite, store):
    billing_sim.graph.configure({"retryAfter": 200, "polls": 3})
    first = sync(billing_sim, azurite, store)
    assert first.counters["pending"] == 4 and first.counters["done"] == 0 and not first.errors
    started = billing_sim.graph.exports_started
    billing_sim.graph.configure({"polls": 0})
    second = sync(billing_sim, azurite, store)
    assert second.counters["done"] == 4 and billing_sim.graph.exports_started == started


def test_faults_converge_to_the_rows_of_a_clean_run(billing_sim, azurite, store, other_store):
    sync(billing_sim, azurite, other_store)
    billing_sim.faults.add(Fault("429", path="billing/operations", times=2, retry_after=3))
    billing_sim.faults.add(Fault("503", path="usage/unbilled/export", times=1))
    billing_sim.graph.configure({"cutBlobs": 2, "expiredSas": 1, "membersPerBlob": 3, "linesPerBlob": 40})
    run = sync(billing_sim, azurite, store)
    assert run.status == "succeeded", (run.summary(), run.errors)
    assert run.counters["retries"] >= 5
    assert rated_rows(store) == rated_rows(other_store)


def test_an_unchanged_export_writes_no_data_rows(billing_sim, azurite, store):
    sync(billing_sim, azurite, store)
    before = rated_rows(store)
    second = sync(billing_sim, azurite, store)  # the same eTag: nothing downloaded
    assert second.counters["rows"] == 0 and "nothing downloaded" in " ".join(second.notes)
    for row in store.partition(tables.SYNC_STATE, tables.RATED_USAGE_STATE):  # forget the eTags: compare digests
        store.upsert_one(tables.SYNC_STATE, {**dict(row), "snapshotETag": "", "settledPeriod": ""})
    third = sync(billing_sim, azurite, store)
    assert third.status == "succeeded" and third.counters["rows"] == 0, third.notes
    assert rated_rows(store) == before


def test_a_rerated_day_rewrites_only_that_days_slices(billing_sim, azurite, store, other_store):
    sync(billing_sim, azurite, store)
    old_keys = {r["RowKey"] for r in store.all_rows(tables.RATED_LINES)}
    billing_sim.graph.configure({"rerate": {"2026-11-05": "0.9"}})
    run = sync(billing_sim, azurite, store)
    assert run.status == "succeeded", run.summary()
    new_rows = [r for r in store.all_rows(tables.RATED_LINES) if r["RowKey"] not in old_keys]
    assert new_rows and all(r["RowKey"].startswith("2026-11-05|") for r in new_rows)
    day_lines = [
        ln
        for c in CURRENCIES.split(",")
        for ln in world_lines(billing_sim.world, "current", c, billing_sim.graph.options)
        if ln["UsageDate"].startswith("2026-11-05")
    ]
    assert sum(count_of(r) for r in new_rows) == len(day_lines)  # the day's lines, in chunks of its slices
    assert run.counters["rows"] == len(new_rows) + len(
        {(ln["CustomerId"], ln["EntitlementId"]) for ln in day_lines}
    ) + len({ln["CustomerId"] for ln in day_lines})
    assert stored_totals(store) == {
        k: str(v)
        for k, v in {(c.lower(), e.lower(), d): t for (c, e, d), t in expected_totals(billing_sim).items()}.items()
    }
    # The old version of the day stays readable for readers in flight, and goes at the first ingest after the grace.
    later = NOW.replace(hour=23)
    for row in store.partition(tables.SYNC_STATE, tables.RATED_USAGE_STATE):
        store.upsert_one(tables.SYNC_STATE, {**dict(row), "snapshotETag": ""})
    sync(billing_sim, azurite, store, now=later)
    sync(billing_sim, azurite, other_store, now=later)
    assert {r["RowKey"] for r in store.all_rows(tables.RATED_LINES)} == {
        r["RowKey"] for r in other_store.all_rows(tables.RATED_LINES)
    }


def test_a_crash_mid_ingest_leaves_the_old_snapshot_served_and_the_rerun_converges(
    billing_sim, azurite, store, other_store, monkeypatch
):
    sync(billing_sim, azurite, store)
    before = rated_rows(store)
    billing_sim.graph.configure({"rerate": {"2026-11-03": "1.5", "2026-11-10": "0.5"}})
    real_submit = TableStore._submit
    calls = {"n": 0}

    def crash_after_a_few(self, table, batch, mode=None):
        if table.table_name.endswith(tables.RATED_LINES):
            calls["n"] += 1
            if calls["n"] > 2:
                raise ConnectionAbortedError("the instance was recycled")
        return real_submit(self, table, batch) if mode is None else real_submit(self, table, batch, mode)

    monkeypatch.setattr(TableStore, "_submit", crash_after_a_few)
    crashed = sync(billing_sim, azurite, store)
    monkeypatch.setattr(TableStore, "_submit", real_submit)
    assert crashed.status == "failed" and calls["n"] > 2
    sync(billing_sim, azurite, other_store)  # what a clean run stores for the re-rated world
    after = {(r["PartitionKey"], r["RowKey"]): r["days"] for r in rated_rows(store)[tables.RATED_SLICES]}
    old = {(r["PartitionKey"], r["RowKey"]): r["days"] for r in before[tables.RATED_SLICES]}
    new = {(r["PartitionKey"], r["RowKey"]): r["days"] for r in rated_rows(other_store)[tables.RATED_SLICES]}
    changed = [key for key in new if new[key] != old[key]]
    assert all(after[key] in (old[key], new[key]) for key in new)  # each pointer names one snapshot or the other
    assert any(after[key] == old[key] for key in changed)  # the slices the crash hit still name the old one
    for key, days in after.items():  # ... and every version any pointer names is there, whole
        pk = key[0] + "|" + key[1].split("|")[0]
        rows = list(store.partition(tables.RATED_LINES, pk))
        for day, view in jsonutil.loads(days).items():
            prefix = f"{day}|{key[1].split('|')[2]}|{view['version']}|"
            assert sum(count_of(r) for r in rows if r["RowKey"].startswith(prefix)) == view["lines"]
    rerun = sync(billing_sim, azurite, store)
    assert rerun.status == "succeeded", rerun.summary()
    assert stored_totals(store) == stored_totals(other_store)
    assert {k: v["days"] for k, v in _by_key(store).items()} == {k: v["days"] for k, v in _by_key(other_store).items()}


def _by_key(store: TableStore) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["PartitionKey"], r["RowKey"]): r for r in store.all_rows(tables.RATED_SLICES)}


def test_malformed_lines_are_quarantined_with_their_reason_and_the_rest_is_stored(
    billing_sim, azurite, store, other_store
):
    sync(billing_sim, azurite, other_store)
    billing_sim.graph.configure({"badLines": True})
    run = sync(billing_sim, azurite, store, RATED_USAGE_QUARANTINE_SHARE="0.05")
    assert run.status == "succeeded", run.summary()
    quarantined = list(store.all_rows(tables.QUARANTINE))
    assert len(quarantined) == 4 * 4 and run.counters["quarantined"] == 16
    assert all(row["reason"] and "blob part-" in row["source"] for row in quarantined)
    assert stored_totals(store) == stored_totals(other_store)


def test_an_export_that_quarantined_more_than_the_share_allowed_fails_its_run_with_the_reason(
    billing_sim, azurite, store
):
    billing_sim.graph.configure({"badLines": True})
    run = sync(billing_sim, azurite, store, RATED_USAGE_QUARANTINE_SHARE="0.01")
    assert run.status == "failed" and stored_totals(store)  # stored all the same: the rest of the lines are good
    reasons = [error.message for error in run.errors]
    assert any(
        "quarantined 4 of 121 lines" in reason and "RATED_USAGE_QUARANTINE_SHARE" in reason for reason in reasons
    )


def test_lines_are_read_with_keys_in_any_case():
    from shared.rated.lines import parse_line

    line = parse_line(
        '{"customerId":"C1","entitlementID":"E1","usageDate":"11/5/2026","billingCurrency":"gbp","billingPreTaxTotal":"1.10000000000000000001"}'
    )
    assert (line.customer_id, line.entitlement_id, line.day, line.currency) == ("c1", "e1", "2026-11-05", "GBP")
    assert line.billing_total == Decimal("1.10000000000000000001")


def test_customer_totals_cover_every_subscription_when_an_export_spans_two_months(store):
    from tests.api_data import CUSTOMER, rated_line, write_rated_usage

    subs = ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222")
    texts = [
        rated_line(CUSTOMER, sub, day, amount)
        for sub in subs
        for day, amount in (("2026-10-31", "1.00000000000000000001"), ("2026-11-01", "2.5"))
    ]
    write_rated_usage(store, texts, now=NOW)
    rows = {r["period"]: jsonutil.loads(r["days"]) for r in store.all_rows(tables.RATED_CUSTOMER_DAYS)}
    assert rows["2026-10"]["2026-10-31"]["billingPreTaxTotal"] == "2.00000000000000000002"
    assert rows["2026-11"]["2026-11-01"] == {"lines": 2, "billingPreTaxTotal": "5.0", "subscriptions": 2}


# -- the run's deadline (function timeout less a margin) and the Graph-only settings -------------------------------


def stream_operations(store: TableStore) -> dict[str, str | None]:
    return {r["RowKey"]: r.get("operationUrl") for r in store.partition(tables.SYNC_STATE, tables.RATED_USAGE_STATE)}


def test_export_polling_stops_before_the_function_timeout_and_the_next_run_polls_the_same_exports(
    billing_sim, azurite, store
):
    # Exports that take an hour, a wait setting that allows it, and a clock that moves only when the run sleeps.
    billing_sim.graph.configure({"retryAfter": 200, "polls": 1000})
    settings = settings_of(billing_sim, azurite, store.prefix, RATED_USAGE_EXPORT_WAIT_SECONDS="3600")
    clock = FakeClock()
    try:
        first = runner.run_job(
            jobs.get("fetch_rated_usage"),
            settings,
            store,
            budget_seconds=settings.sync_time_budget_seconds,
            now=lambda: NOW,
            clock=clock,
            sleep=clock.sleep,
        )
    except SyncFailed as failed:
        first = failed.run
    assert sum(clock.sleeps) <= 600 - DEADLINE_MARGIN_SECONDS  # host.json's functionTimeout, less the margin
    assert first.status == "succeeded" and first.counters["pending"] == 4 and not first.errors, first.notes
    in_flight = stream_operations(store)
    assert len(in_flight) == 4 and all(in_flight.values())
    started = billing_sim.graph.exports_started
    billing_sim.graph.configure({"polls": 0})
    second = sync(billing_sim, azurite, store)
    assert second.counters["done"] == 4 and billing_sim.graph.exports_started == started  # the same exports, finished


def test_an_ingest_stopped_at_the_deadline_leaves_whole_pointers_and_its_export_for_the_next_run(
    billing_sim, azurite, store, other_store
):
    sync(billing_sim, azurite, store)
    before = rated_rows(store)
    billing_sim.graph.configure({"rerate": {"2026-11-03": "1.5", "2026-11-10": "0.5"}})
    settings = settings_of(billing_sim, azurite, store.prefix)

    def clock() -> float:  # time, for this run, is data rows written: the deadline comes in the middle of the commit
        return float(store.stats.by_table[tables.RATED_LINES] + store.stats.by_table[tables.RATED_SLICES])

    stopped = run_job("fetch_rated_usage", settings, store, NOW, clock=clock, timeout=DEADLINE_MARGIN_SECONDS + 3)
    assert stopped.status == "succeeded" and not stopped.errors, stopped.notes
    assert stopped.counters["pending"] >= 1 and stopped.counters["rows"] > 0
    assert any("deadline" in note for note in stopped.notes), stopped.notes
    in_flight = {key: url for key, url in stream_operations(store).items() if url}
    assert in_flight  # the export whose ingest was stopped is still the stream's, to be polled again
    sync(billing_sim, azurite, other_store)  # what a clean run stores for the re-rated world
    after = {(r["PartitionKey"], r["RowKey"]): r["days"] for r in rated_rows(store)[tables.RATED_SLICES]}
    old = {(r["PartitionKey"], r["RowKey"]): r["days"] for r in before[tables.RATED_SLICES]}
    new = {(r["PartitionKey"], r["RowKey"]): r["days"] for r in rated_rows(other_store)[tables.RATED_SLICES]}
    assert all(after[key] in (old[key], new[key]) for key in new)  # each pointer names one snapshot or the other
    assert any(after[key] == old[key] != new[key] for key in new)  # and the stop came before every slice was stored
    for key, days in after.items():  # ... and every version any pointer names is there, whole
        pk = key[0] + "|" + key[1].split("|")[0]
        rows = list(store.partition(tables.RATED_LINES, pk))
        for day, view in jsonutil.loads(days).items():
            prefix = f"{day}|{key[1].split('|')[2]}|{view['version']}|"
            assert sum(count_of(r) for r in rows if r["RowKey"].startswith(prefix)) == view["lines"]
    started = billing_sim.graph.exports_started
    rerun = sync(billing_sim, azurite, store)
    assert rerun.status == "succeeded", rerun.summary()
    assert billing_sim.graph.exports_started == started + rerun.counters["done"] - len(in_flight)  # in flight: polled
    assert stored_totals(store) == stored_totals(other_store)
    assert {k: v["days"] for k, v in _by_key(store).items()} == {k: v["days"] for k, v in _by_key(other_store).items()}


def test_rated_usage_runs_with_the_graph_settings_alone_and_the_partner_center_jobs_say_what_they_miss(
    billing_sim, azurite, store
):
    settings = settings_of(billing_sim, azurite, store.prefix, PARTNER_CENTER_REFRESH_TOKEN="")
    run = run_job("fetch_rated_usage", settings, store, NOW)
    assert run.status == "succeeded" and run.counters["done"] == 4, run.summary()
    with pytest.raises(SettingsError, match="PARTNER_CENTER_REFRESH_TOKEN") as caught:
        run_job("fetch_usage_records", settings, store, NOW)
    assert "PARTNER_CENTER_TENANT_ID" not in str(caught.value)
    (record,) = store.partition(tables.RUNS, "fetch_usage_records")  # the run's record says it too
    assert record["status"] == "failed" and "PARTNER_CENTER_REFRESH_TOKEN" in record["errors"]
