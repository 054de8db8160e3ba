"""Running twice, with faults, or after a crash leaves exactly the rows of one clean run (issue 3)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from azure.core.exceptions import HttpResponseError
from azure.data.tables import UpdateMode
from werkzeug import Response

from devhost.simulator import Fault, Simulator, WorldConfig
from shared.settings import Settings
from shared.sync.jobs import JOB_NAMES as FUNCTIONS
from shared.sync.utilization import windows_to_fetch
from shared.table_store import TableStore
from shared.tables import RUNS
from tests.fakes import pc_json
from tests.stores import drop_tables
from tests.sync_support import run_job, sim_env, snapshot, stand_in_settings, ties_out, watermarks

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def world():
    return WorldConfig(
        customers=4,
        legacy_per_customer=2,
        plan_per_customer=1,
        licence_per_customer=1,
        forbidden_customers=1,
        days=8,
        records_per_day=5,
        now=NOW,
        invoice_months=1,  # the last closed month's invoices: enough for every path of fetch_invoices
    )


@pytest.fixture
def clean(azurite, azurite_blob, store):
    """The tables of one clean run of every function, without faults."""
    other = TableStore(store._service, prefix=store.prefix + "c")
    with Simulator(world=world(), blob_connection_string=azurite_blob.connection_string) as sim:
        ties_out(sim)
        settings = Settings.from_env(sim_env(sim, azurite, other.prefix))
        for function in FUNCTIONS:
            assert run_job(function, settings, other, NOW).status == "succeeded"
        yield snapshot(other), watermarks(other)
    drop_tables(other)


def test_two_runs_with_faults_leave_the_rows_of_one_clean_run(azurite, azurite_blob, store, clean):
    with Simulator(world=world(), blob_connection_string=azurite_blob.connection_string) as sim:
        ties_out(sim)
        sim.faults.add(Fault(kind="429", path=None, times=3, every=4, retry_after=1))
        sim.faults.add(Fault(kind="500", path=None, times=3, every=5))
        sim.faults.add(Fault(kind="drop", path=r"/utilizations/azure", times=2, every=3))
        settings = Settings.from_env(sim_env(sim, azurite, store.prefix))
        for _ in range(2):
            for function in FUNCTIONS:
                assert run_job(function, settings, store, NOW).status == "succeeded"
    assert (snapshot(store), watermarks(store)) == clean


class Crash(BaseException):
    """Stands for the process being killed: nothing catches it."""


class CrashingStore(TableStore):
    """A real store on Azurite that dies after a number of writes."""

    def __init__(self, service, *, prefix, writes_before_crash):
        super().__init__(service, prefix=prefix)
        self.left = writes_before_crash

    def _submit(self, table, batch, mode=UpdateMode.REPLACE):
        if self.left <= 0:
            raise Crash
        self.left -= 1
        return super()._submit(table, batch, mode)


@pytest.mark.parametrize("writes_before_crash", [3, 17])
def test_a_run_killed_half_way_then_rerun_converges_to_the_clean_rows(
    azurite, azurite_blob, store, clean, writes_before_crash
):
    with Simulator(world=world(), blob_connection_string=azurite_blob.connection_string) as sim:
        ties_out(sim)
        settings = Settings.from_env(sim_env(sim, azurite, store.prefix))
        crashing = CrashingStore(store._service, prefix=store.prefix, writes_before_crash=writes_before_crash)
        with pytest.raises(Crash):
            for function in FUNCTIONS:
                run_job(function, settings, crashing, NOW)
        for function in FUNCTIONS:
            assert run_job(function, settings, store, NOW).status == "succeeded"
    assert (snapshot(store), watermarks(store)) == clean


def test_a_malformed_record_is_quarantined_with_its_reason_and_the_rest_stored(httpserver, azurite, store):
    good = '{"id":"c-good","totalCost":1.10000000000000000001,"currencyCode":"EUR"}'
    no_id = '{"name":"nameless","totalCost":5}'
    bad_cost = '{"id":"c-bad","totalCost":"lots"}'
    httpserver.expect_request("/tenant/oauth2/v2.0/token").respond_with_response(
        Response(
            pc_json('{"access_token":"at","expires_in":3600,"refresh_token":"rt"}'), content_type="application/json"
        )
    )
    httpserver.expect_request("/v1/customers/usagerecords").respond_with_response(
        Response(pc_json(f'{{"totalCount":3,"items":[{good},{no_id},{bad_cost}]}}'), content_type="application/json")
    )
    settings = stand_in_settings(httpserver, azurite, store.prefix)
    run = run_job("fetch_usage_records", settings, store, NOW)
    assert run.status == "succeeded" and run.counters["quarantined"] == 2
    assert store.get("UsageRecords", "latest", "c-good")["totalCost"] == "1.10000000000000000001"
    quarantined = {r["reason"]: r["raw"] for r in store.partition("Quarantine", "fetch_usage_records")}
    assert quarantined == {
        "missing id / resourceId": no_id,
        "totalCost is not a number: 'lots'": bad_cost,
    }
    run_job("fetch_usage_records", settings, store, NOW)
    assert len(list(store.partition("Quarantine", "fetch_usage_records"))) == 2  # idempotent too


class FailingOnceStore(TableStore):
    """A real store on Azurite whose nth transaction is refused by the service, once."""

    def __init__(self, service, *, prefix, fail_at):
        super().__init__(service, prefix=prefix)
        self.sent = 0
        self.fail_at = fail_at

    def _submit(self, table, batch, mode=UpdateMode.REPLACE):
        if table.table_name.endswith("Utilization"):
            self.sent += 1
        if table.table_name.endswith("Utilization") and self.sent == self.fail_at:
            raise HttpResponseError(message="the service refused this batch")
        return super()._submit(table, batch, mode)


def test_a_refused_batch_keeps_the_watermark_behind_its_rows(azurite, store):
    # 40 records a day: a subscription's first full batch of 100 goes out while its third window is read,
    # holding rows of windows one and two, which were read in full.
    busy = WorldConfig(
        customers=1,
        legacy_per_customer=1,
        plan_per_customer=0,
        licence_per_customer=0,
        forbidden_customers=0,
        days=8,
        records_per_day=40,
        now=NOW,
    )
    with Simulator(world=busy) as sim:
        settings = Settings.from_env(sim_env(sim, azurite, store.prefix))
        failing = FailingOnceStore(store._service, prefix=store.prefix, fail_at=1)
        first = run_job("fetch_utilization", settings, failing, NOW)
        assert first.status == "failed" and "refused" in first.errors[0].message
        assert watermarks(store) == {}
        assert run_job("fetch_utilization", settings, store, NOW).status == "succeeded"
        ((cid, sid),) = sim.world.legacy_subscriptions()
        expected = sum(
            sim.world.utilization_count(cid, sid, start, end)
            for start, end in windows_to_fetch(None, now=NOW, settings=settings)
        )
    assert len(snapshot(store, ("Utilization",))["Utilization"]) == expected > 100


class MeetingStore(TableStore):
    """A real store on Azurite where each run, after writing its 'running' record, waits for the other run:
    the two runs are then certainly in flight at the same time."""

    def __init__(self, service, *, prefix):
        super().__init__(service, prefix=prefix)
        self.barrier = threading.Barrier(2, timeout=60)

    def upsert_one(self, name, entity):
        super().upsert_one(name, entity)
        if name == RUNS and entity.get("status") == "running":
            self.barrier.wait()


def test_two_overlapping_runs_of_each_function_converge_to_the_rows_of_one_clean_run(
    azurite, azurite_blob, store, clean
):
    with Simulator(world=world(), latency_ms=2, blob_connection_string=azurite_blob.connection_string) as sim:
        ties_out(sim)
        settings = Settings.from_env(sim_env(sim, azurite, store.prefix))
        meeting = MeetingStore(store._service, prefix=store.prefix)
        for function in FUNCTIONS:
            meeting.barrier.reset()
            with ThreadPoolExecutor(max_workers=2) as pool:
                runs = list(pool.map(lambda name: run_job(name, settings, meeting, NOW), [function] * 2))
            assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.errors for r in runs]
    assert (snapshot(store), watermarks(store)) == clean
