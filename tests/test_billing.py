"""Billed data (issue 23) on Azurite and the simulator: invoices, their billed reconciliation and billed usage
exports, period close (estimated -> billed with the invoice id and the estimate's delta), tie-out, new charge
kinds in spend, scoped callers, idempotence and a crash mid-ingest."""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from devhost.simulator import Simulator, WorldConfig, reconciliation
from devhost.simulator import invoices as sim_invoices
from shared.billing import ingest
from shared.billing.rows import BILLED_SPEND, INVOICE_CUSTOMERS, INVOICE_LINES, INVOICES
from shared.settings import Settings
from shared.spend.rows import SPEND_MONTHS, SpendMonth
from shared.table_store import TableStore
from tests.api_data import check, get
from tests.rated_support import NOW
from tests.stores import drop_tables
from tests.sync_support import run_job, sim_env

BILLED_TABLES = (INVOICES, INVOICE_LINES, INVOICE_CUSTOMERS, BILLED_SPEND)
OCTOBER = "2026-10"  # the last period at NOW (2026-11-20): its invoice is dated 2026-11-08
EXACT = decimal.Context(prec=400)
KEY = {"x-functions-key": "k"}


@pytest.fixture
def other_store(azurite) -> Iterator[TableStore]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    found = TableStore(service, prefix="o" + uuid.uuid4().hex[:12])
    yield found
    drop_tables(found)


@pytest.fixture(scope="module")
def billed(azurite, azurite_blob) -> Iterator[dict[str, Any]]:
    """One simulated partner whose rated usage and invoices were fetched once, for the tests that only read."""
    with Simulator(
        world=WorldConfig(now=NOW, customers=4, forbidden_customers=1),
        blob_connection_string=azurite_blob.connection_string,
    ) as sim:
        service = TableServiceClient.from_connection_string(azurite.connection_string)
        found = TableStore(service, prefix="b" + uuid.uuid4().hex[:12])
        run(sim, azurite, found, "fetch_rated_usage")
        first = run(sim, azurite, found, "fetch_invoices")
        try:
            yield {"sim": sim, "store": found, "first": first}
        finally:
            drop_tables(found)


def env_of(sim, azurite, store: TableStore, **more: str) -> dict[str, str]:
    return sim_env(sim, azurite, store.prefix, **{"RATED_USAGE_CURRENCIES": "", **more})


def run(sim, azurite, store: TableStore, name: str, **more: str):
    return run_job(name, Settings.from_env(env_of(sim, azurite, store, **more)), store, NOW)


def rows_of(store: TableStore, names=BILLED_TABLES) -> dict[str, list[dict[str, Any]]]:
    drop = {"billedAt"}
    return {
        name: sorted(
            ({k: v for k, v in r.items() if k not in drop} for r in store.all_rows(name)),
            key=lambda r: (r["PartitionKey"], r["RowKey"]),
        )
        for name in names
    }


def listed(sim) -> list[dict[str, Any]]:
    return sim_invoices.invoices(sim.world, sim.invoice_state)


def month(store: TableStore, customer_id: str, period: str = OCTOBER) -> SpendMonth:
    row = store.get(SPEND_MONTHS, period, customer_id.lower())
    assert row is not None, (customer_id, period)
    return SpendMonth.of_row(row)


def add(values) -> Decimal:
    found = Decimal(0)
    for value in values:
        found = EXACT.add(found, Decimal(str(value)))
    return found


def test_a_month_moves_from_estimated_to_billed_with_its_invoice_and_the_estimates_delta(billing_sim, azurite, store):
    for name in ("fetch_usage_records", "fetch_utilization", "fetch_rated_usage", "fetch_rate_card"):
        run(billing_sim, azurite, store, name, UTILIZATION_BACKFILL_DAYS="35")
    october = [(row["RowKey"], SpendMonth.of_row(row)) for row in store.partition(SPEND_MONTHS, OCTOBER)]
    assert october and all(m.status == "estimated" for _, m in october)
    estimates = {m.customer_id: dict(m.currencies) for _, m in october}

    done = run(billing_sim, azurite, store, "fetch_invoices")
    october_invoices = [i for i in listed(billing_sim) if i["billingPeriodStartDate"].startswith(OCTOBER)]
    recurring = [i for i in october_invoices if i["documentType"] == "Invoice"]
    assert len({i["currencyCode"] for i in recurring}) >= 2  # two currencies at least
    assert done.counts()["done"] >= len(recurring), done.summary()
    checked: list[str] = []
    for invoice in recurring:
        usage = list(reconciliation.billed_usage_lines(billing_sim.world, invoice, billing_sim.graph.options))
        billed: dict[str, Decimal] = {}
        for line in usage:
            billed[line["CustomerId"]] = add([billed.get(line["CustomerId"], 0), line["BillingPreTaxTotal"]])
        for customer_id, total in billed.items():
            found = month(store, customer_id)
            totals = found.currencies[invoice["currencyCode"]]
            estimated_too = any(e.kind == "legacy" and str(e.reason) == "notInBilledExports" for e in found.excluded)
            expected_status = "partlyBilled" if estimated_too else "billed"
            assert totals.status == expected_status and invoice["id"] in totals.invoice_ids
            before = estimates[customer_id.lower()][invoice["currencyCode"]]
            estimate = Decimal(before.by_source["ratedUsage"])  # the Azure plan's estimate (legacy stays one)
            assert Decimal(totals.estimate or "x") == estimate  # the last estimate kept beside the billed figure
            assert Decimal(totals.by_source["billedUsage"]) == total  # the billed usage, digit for digit
            assert Decimal(totals.estimate_delta or "x") == EXACT.subtract(total, estimate)
            assert Decimal(totals.estimate_delta or "0") != 0  # the 15th was re-rated in the final figures
            checked.append(customer_id)
    assert checked
    # legacy usage of the closed month: in the figures, still the estimate, and said so
    legacy = [(m, e) for _, m in october for e in month(store, m.customer_id).excluded if e.kind == "legacy"]
    closed = [(m, e) for m, e in legacy if str(e.reason) == "notInBilledExports"]
    assert closed
    for found, _ in closed:
        assert any(t.status == "partlyBilled" for t in month(store, found.customer_id).currencies.values())
    answer = get(store, f"/api/v1/customers/{checked[0]}/spend?from=2026-10-01&to=2026-10-31", headers=KEY)
    check(answer, "/v1/customers/{customer_id}/spend")
    overview = get(store, "/api/v1/spend?period=2026-10", headers=KEY)
    check(overview, "/v1/spend")
    assert any(c.get("status") == "billed" for i in overview.json()["items"] for c in i["currencies"])
    body = answer.json()
    assert body["status"] in ("billed", "partlyBilled")
    assert any(c.get("estimateDelta") not in (None, 0) for c in body["currencies"])


def test_licences_reservations_and_marketplace_appear_as_their_own_kinds_never_spread_over_days(billed):
    billing_sim, store = billed["sim"], billed["store"]
    october = [i for i in listed(billing_sim) if i["billingPeriodStartDate"][:7] == OCTOBER]  # credit notes too
    lines = [
        line for i in october for line in reconciliation.billed_lines(billing_sim.world, i, billing_sim.graph.options)
    ]
    kinds: dict[tuple[str, str, str], Decimal] = {}
    for line in lines:
        if line["ChargeType"] == "usage":
            continue
        kind = (
            "reservation"
            if line["ReservationOrderId"]
            else "marketplace"
            if line["PublisherName"] == "Contoso SaaS Ltd"
            else "licence"
        )
        key = (line["CustomerId"].lower(), kind, line["Currency"])
        if line["ChargeStartDate"][:7] == OCTOBER:
            kinds[key] = add([kinds.get(key, 0), line["Subtotal"]])
    assert {k for _, k, _ in kinds} >= {"licence", "reservation", "marketplace"}
    for (customer_id, kind, currency), total in kinds.items():
        totals = month(store, customer_id).currencies[currency]
        assert Decimal(totals.by_kind[kind]) == total, (customer_id, kind)
    customer_id = next(c for c, k, _ in kinds if k == "licence")
    body = get(store, f"/api/v1/customers/{customer_id}/spend?from=2026-10-01&to=2026-10-31", headers=KEY).json()
    charges = [s for s in body["subscriptions"] if s["source"] == "reconciliation"]
    assert charges and all(s["status"] == "billed" and s["billing"]["billingCycle"] for s in charges)
    for charge in charges:  # a period total: no day of the series carries it
        assert all(not c["series"] and c["undatedTotal"] == c["total"] for c in charge["currencies"])


def test_billed_data_exported_again_unchanged_writes_no_rows(billing_sim, azurite, store):
    run(billing_sim, azurite, store, "fetch_invoices")
    before = rows_of(store)
    started = billing_sim.graph.exports_started
    run(billing_sim, azurite, store, "fetch_invoices")
    assert billing_sim.graph.exports_started == started  # stored whole (open periods: once a day): not again
    assert rows_of(store) == before
    # An amendment asks for the amended invoice again: the same data (same eTags) writes no line or spend row of it.
    target = next(i for i in listed(billing_sim) if i["documentType"] == "Invoice" and not i["amendments"])
    sim_invoices.configure(billing_sim.world, billing_sim.invoice_state, {"amend": target["id"]})
    amended = run(billing_sim, azurite, store, "fetch_invoices")
    assert billing_sim.graph.exports_started > started
    assert any(f"invoice {target['id']}: unchanged" in note for note in amended.notes), amended.notes
    after = rows_of(store)
    for name in (INVOICE_LINES, BILLED_SPEND, INVOICE_CUSTOMERS):
        mine = [r for r in after[name] if target["id"] in (r["PartitionKey"] + str(r.get("invoiceId")))]
        assert mine and mine == [
            r for r in before[name] if target["id"] in (r["PartitionKey"] + str(r.get("invoiceId")))
        ]
    credit = next(i for i in listed(billing_sim) if i.get("amendsOf") == target["id"])
    assert any(r["invoiceId"] == credit["id"] for r in after[BILLED_SPEND])  # the credit note itself is stored


def test_tie_out_passes_on_consistent_invoices_and_flags_the_planted_mismatch(billed):
    billing_sim, store, done = billed["sim"], billed["store"], billed["first"]
    mismatch = sim_invoices.describe(billing_sim.world, billing_sim.invoice_state)["mismatch"]
    assert done.status == "failed" and any(mismatch in e.subject for e in done.errors), done.summary()
    answer = get(store, "/api/v1/invoices", headers=KEY)
    check(answer, "/v1/invoices")
    body = answer.json()
    assert body["tieOutFailed"] == [mismatch]
    for item in body["items"]:
        assert item["status"] == "billed"
        assert item["tieOut"]["passed"] is (item["id"] != mismatch)
        if item["id"] == mismatch:
            assert Decimal(item["tieOut"]["difference"]) == Decimal("-1.00")
    single = get(store, f"/api/v1/invoices/{mismatch.lower()}", headers=KEY)
    check(single, "/v1/invoices/{invoice_id}")
    one = single.json()
    assert one["customers"] and all(c["tieOutPassed"] for c in one["customers"])  # the lines agree with each other
    health = get(store, "/api/health", headers=KEY).json()
    assert [f["invoiceId"] for f in health["invoices"]["tieOutFailed"]] == [mismatch]
    assert health["functions"]["fetch_invoices"]["healthy"] is False  # the run that stored it failed: the alert


def test_invoice_line_items_page_per_customer_and_only_the_partner_reads_them(billed):
    billing_sim, store = billed["sim"], billed["store"]
    invoice = next(i for i in listed(billing_sim) if i["documentType"] == "Invoice")
    one = get(store, f"/api/v1/invoices/{invoice['id']}", headers=KEY).json()
    customer = one["customers"][0]
    seen: list[dict[str, Any]] = []
    target = f"/api/v1/invoices/{invoice['id']}/lineitems?customer={customer['customerId']}&size=3"
    page = get(store, target, headers=KEY)
    check(page, "/v1/invoices/{invoice_id}/lineitems")
    while True:
        assert page.status == 200, page.body
        body = page.json()
        seen.extend(body["items"])
        if "next" not in body["links"]:
            break
        token = body["links"]["next"]["headers"][0]["value"]
        page = get(
            store,
            f"/api/v1/invoices/{invoice['id']}/lineitems?seek_operation=Next",
            headers={**KEY, "MS-ContinuationToken": token},
        )
    assert len(seen) == customer["lines"] + customer["usageLines"] > 3
    assert {line["CustomerId"].lower() for line in seen} == {customer["customerId"]}
    assert get(store, "/api/v1/invoices/G000000000", headers=KEY).status == 404
    assert get(store, "/api/v1/invoices/not*an*id", headers=KEY).status in (400, 404)


def test_a_crash_mid_ingest_serves_the_old_state_whole_and_the_rerun_converges(
    billing_sim, azurite, store, other_store, monkeypatch
):
    monkeypatch.setattr(ingest, "CHECKPOINT_LINES", 40)
    real_submit = TableStore._submit
    calls = {"n": 0}

    def crash_after_a_few(self, table, batch, mode=None):
        if table.table_name.endswith(INVOICE_LINES):
            calls["n"] += 1
            if calls["n"] > 3:
                raise ConnectionAbortedError("the instance was recycled")
        return real_submit(self, table, batch) if mode is None else real_submit(self, table, batch, mode)

    monkeypatch.setattr(TableStore, "_submit", crash_after_a_few)
    crashed = run(billing_sim, azurite, store, "fetch_invoices")
    monkeypatch.setattr(TableStore, "_submit", real_submit)
    assert crashed.status == "failed"
    served = get(store, "/api/v1/invoices", headers=KEY).json()["items"]
    hit = [i for i in served if i["status"] == "pending"]
    assert hit  # the invoice the crash hit is not served billed: no mix of lines
    assert not list(store.all_rows(BILLED_SPEND)) or all(
        r["invoiceId"] not in {i["id"] for i in hit} for r in store.all_rows(BILLED_SPEND)
    )
    run(billing_sim, azurite, store, "fetch_invoices")
    run(billing_sim, azurite, other_store, "fetch_invoices")
    mine, clean = rows_of(store), rows_of(other_store)
    for name in (INVOICE_LINES, INVOICE_CUSTOMERS, BILLED_SPEND):
        assert [_without_keys(r) for r in mine[name]] == [_without_keys(r) for r in clean[name]], name
    assert [_without_keys(r) for r in mine[INVOICES]] == [_without_keys(r) for r in clean[INVOICES]]


def _without_keys(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("billedAt",)}


def test_a_malformed_invoice_and_malformed_lines_are_quarantined_and_the_rest_is_stored(billing_sim, azurite, store):
    billing_sim.graph.configure({"badLines": True})
    done = run(billing_sim, azurite, store, "fetch_invoices")
    assert done.counts()["quarantined"] > 0
    body = get(store, "/api/v1/invoices", headers=KEY).json()
    assert all(
        i["status"] == "billed" and i["quarantinedLines"] > 0 for i in body["items"] if i["documentType"] == "Invoice"
    )


def test_the_open_periods_charges_show_before_their_invoice_as_estimates(billed):
    billing_sim, store = billed["sim"], billed["store"]
    expected: dict[tuple[str, str, str], Decimal] = {}
    for currency in sorted({c.currency for c in billing_sim.world.customers()}):
        for line in reconciliation.unbilled_lines(billing_sim.world, currency, "current", billing_sim.graph.options):
            kind = "reservation" if line["ReservationOrderId"] else "licence"
            kind = "marketplace" if line["PublisherName"] == "Contoso SaaS Ltd" else kind
            if line["ChargeStartDate"][:7] == "2026-11":
                key = (line["CustomerId"].lower(), currency, kind)
                expected[key] = add([expected.get(key, 0), line["Subtotal"]])
    assert expected
    for (customer_id, currency, kind), total in expected.items():
        totals = month(store, customer_id, "2026-11").currencies[currency]
        assert Decimal(totals.by_kind[kind]) == total, (customer_id, kind)
        assert totals.status == "estimated" and not totals.invoice_ids and totals.estimate is None


def test_an_ingest_cut_by_the_run_budget_goes_on_run_after_run_and_converges(
    billing_sim, azurite, store, other_store, monkeypatch
):
    monkeypatch.setattr(ingest, "CHECKPOINT_LINES", 25)
    ticks = {"n": 0.0}

    def clock() -> float:  # time, for these runs, is looks at the clock: a budget of 40 cuts an ingest mid-blob
        ticks["n"] += 1
        return ticks["n"]

    settings = Settings.from_env(env_of(billing_sim, azurite, store))
    runs = []
    for _ in range(40):
        found = run_job("fetch_invoices", settings, store, NOW, clock=clock, budget=40)
        runs.append(found)
        if not found.counts()["pending"]:
            break
    assert len(runs) > 2 and not runs[-1].counts()["pending"]  # cut, then resumed, then done
    cut = [r for r in runs if any("cursor" in note or "left for the next run" in note for note in r.notes)]
    assert cut
    run(billing_sim, azurite, other_store, "fetch_invoices")  # a clean run
    mine, clean = rows_of(store), rows_of(other_store)
    for name in (INVOICE_CUSTOMERS, BILLED_SPEND):
        assert mine[name] == clean[name], name
    lines = [r for r in mine[INVOICE_LINES] if not r["RowKey"].startswith("~")]
    assert lines == [r for r in clean[INVOICE_LINES] if not r["RowKey"].startswith("~")]
    pointers = {r["RowKey"]: (r.get("billedVersion"), r.get("tieOut")) for r in mine[INVOICES]}
    assert pointers == {r["RowKey"]: (r.get("billedVersion"), r.get("tieOut")) for r in clean[INVOICES]}
