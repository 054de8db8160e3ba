"""The Azure plan daily-cost and line-item routes, on rows a real fetch_rated_usage run stored."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from devhost.simulator.billing import entitlement_ids
from devhost.simulator.billing import lines as world_lines
from tests.api_data import get
from tests.rated_support import CURRENCIES, NOW, expected_totals, sync

BASE = "/api/v1/customers"


@pytest.fixture
def synced(billing_sim, azurite, store):
    run = sync(billing_sim, azurite, store)
    assert run.status == "succeeded", run.summary()
    customer = billing_sim.world.customer(0)
    plan = billing_sim.world.subscription_ids(customer.id, "azure_plan")[0]
    return customer.id, entitlement_ids(billing_sim.world, plan, 1)[0], plan


def test_an_azure_subscriptions_daily_cost_is_its_lines_summed_with_its_freshness(billing_sim, store, synced):
    customer_id, entitlement_id, plan = synced
    response = get(
        store,
        f"{BASE}/{customer_id}/azureentitlements/{entitlement_id}/dailycost?from=2026-10-25&to=2026-11-19",
        now=NOW,
    )
    assert response.status == 200, response.body
    body = response.json()
    expected = {
        d: t
        for (c, e, d), t in expected_totals(billing_sim).items()
        if e == entitlement_id and "2026-10-25" <= d <= "2026-11-19"
    }
    assert {i["usageDate"]: i["billingPreTaxTotal"] for i in body["items"]} == expected
    assert all(isinstance(i["billingPreTaxTotal"], Decimal) for i in body["items"])  # a JSON number, every digit
    assert body["subscriptionId"] == plan and body["entitlementDescription"]
    assert {p["period"] for p in body["periods"]} == {"2026-10", "2026-11"}
    assert {(s["billingPeriod"], s["currencyCode"]) for s in body["snapshots"]} == {("current", "GBP"), ("last", "GBP")}
    assert all(s["snapshotETag"] and s["checkedAt"] for s in body["snapshots"])
    assert response.headers["Last-Modified"]
    again = get(
        store,
        f"{BASE}/{customer_id}/azureentitlements/{entitlement_id}/dailycost?from=2026-10-25&to=2026-11-19",
        headers={"If-None-Match": response.headers["ETag"]},
        now=NOW,
    )
    assert again.status == 304


def test_a_customers_daily_cost_sums_its_subscriptions_and_offers_csv(billing_sim, store, synced):
    customer_id = billing_sim.world.customer(1).id  # two Azure subscriptions under its plan
    body = get(store, f"{BASE}/{customer_id}/dailycost?from=2026-11-01&to=2026-11-30", now=NOW).json()
    expected: dict[str, Decimal] = {}
    for (c, _e, d), total in expected_totals(billing_sim).items():
        if c == customer_id and d.startswith("2026-11"):
            expected[d] = expected.get(d, Decimal(0)) + total
    assert {i["usageDate"]: i["billingPreTaxTotal"] for i in body["items"]} == expected
    assert {i["subscriptionCount"] for i in body["items"]} == {2}
    text = get(store, f"{BASE}/{customer_id}/dailycost?format=csv", now=NOW).body.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and {r["usageDate"] for r in rows} == {d for d in expected if d <= "2026-11-20"}
    assert Decimal(rows[0]["billingPreTaxTotal"]) == expected[rows[0]["usageDate"]]


def test_line_items_page_through_every_line_of_the_range_once(billing_sim, store, synced):
    customer_id, entitlement_id, _ = synced
    target = f"{BASE}/{customer_id}/azureentitlements/{entitlement_id}/lineitems?from=2026-11-01&to=2026-11-07&size=7"
    seen = []
    page = get(store, target, now=NOW)
    while True:
        assert page.status == 200, page.body
        body = page.json()
        seen += body["items"]
        if "next" not in body["links"]:
            break
        token = page.headers["MS-ContinuationToken"]
        page = get(
            store,
            f"{BASE}/{customer_id}/azureentitlements/{entitlement_id}/lineitems?seek_operation=Next",
            headers={"MS-ContinuationToken": token},
            now=NOW,
        )
    expected = [
        ln
        for c in CURRENCIES.split(",")
        for ln in world_lines(billing_sim.world, "current", c, billing_sim.graph.options)
        if ln["EntitlementId"] == entitlement_id and ln["UsageDate"][:10] <= "2026-11-07"
    ]
    assert len(seen) == len(expected) and sorted(ln["BillingPreTaxTotal"] for ln in seen) == sorted(
        ln["BillingPreTaxTotal"] for ln in expected
    )
    csv_text = get(store, target + "&format=csv", now=NOW).body.decode()
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    exported = {key for line in expected for key in line}
    assert exported <= set(rows[0]), exported - set(rows[0])  # every field a line carries has its column
    assert {row["UsageDate"][:10] for row in rows} <= {ln["UsageDate"][:10] for ln in expected}


def test_a_page_after_a_new_snapshot_is_a_409_not_a_mix(billing_sim, azurite, store, synced):
    customer_id, entitlement_id, _ = synced
    first = get(
        store,
        f"{BASE}/{customer_id}/azureentitlements/{entitlement_id}/lineitems?from=2026-11-01&to=2026-11-10&size=5",
        now=NOW,
    )
    token = first.headers["MS-ContinuationToken"]
    billing_sim.graph.configure({"rerate": {"2026-11-04": "2"}})
    sync(billing_sim, azurite, store)
    second = get(
        store, f"{BASE}/{customer_id}/azureentitlements/{entitlement_id}/lineitems?continuation_token={token}", now=NOW
    )
    assert second.status == 409 and second.json()["code"] == 900410


@pytest.mark.parametrize(
    "target",
    [
        "/{c}/dailycost?from=2026-13-01",
        "/{c}/azureentitlements/not-a-guid/dailycost",
        "/{c}/azureentitlements/{e}/lineitems?size=0",
    ],
)
def test_bad_requests_are_400_with_a_message(billing_sim, store, synced, target):
    customer_id, entitlement_id, _ = synced
    response = get(store, BASE + target.format(c=customer_id, e=entitlement_id), now=NOW)
    assert response.status == 400 and response.json()["description"]


def test_a_range_ending_before_it_starts_holds_nothing_and_a_long_one_is_one_read(billing_sim, store, synced):
    customer_id, entitlement_id, _ = synced
    empty = get(store, f"{BASE}/{customer_id}/dailycost?from=2026-11-10&to=2026-11-01", now=NOW)
    assert empty.status == 200 and empty.json()["items"] == []
    wide = get(
        store,
        f"{BASE}/{customer_id}/azureentitlements/{entitlement_id}/dailycost?from=2000-01-01&to=2099-12-31",
        now=NOW,
    )
    assert wide.status == 200 and {p["period"] for p in wide.json()["periods"]} == {"2026-10", "2026-11"}


def test_unknown_ids_and_tokens_are_404(billing_sim, store, synced):
    customer_id, entitlement_id, _ = synced
    other = "00000000-0000-4000-8000-000000000001"
    for target in (
        f"/{other}/dailycost",
        f"/{customer_id}/azureentitlements/{other}/dailycost",
        f"/{other}/azureentitlements",
    ):
        assert get(store, BASE + target, now=NOW).status == 404
    bad = get(
        store, f"{BASE}/{customer_id}/azureentitlements/{entitlement_id}/lineitems?continuation_token=abc", now=NOW
    )
    assert bad.status == 404


def test_the_entitlements_listing_links_each_azure_subscription(billing_sim, store, synced):
    customer_id = billing_sim.world.customer(1).id
    body = get(store, f"{BASE}/{customer_id}/azureentitlements", now=NOW).json()
    assert body["totalCount"] == 2 and all(i["tier2MpnId"] for i in body["items"])
    link = body["items"][0]["links"]["dailyCost"]["uri"]
    assert get(store, "/api/v1/" + link, now=NOW).status == 200


def test_the_utilization_route_of_an_azure_plan_points_to_the_daily_cost_routes(billing_sim, azurite, store, synced):
    from tests.rated_support import settings_of
    from tests.sync_support import run_job

    run_job("fetch_usage_summary", settings_of(billing_sim, azurite, store.prefix), store, NOW)  # lists the inventory
    customer_id, _, plan = synced
    response = get(store, f"{BASE}/{customer_id}/subscriptions/{plan}/utilizations/azure", now=NOW)
    assert response.status == 404 and "azureentitlements" in response.json()["description"]
    sub = get(store, f"{BASE}/{customer_id}/subscriptions/{plan}", now=NOW).json()
    assert sub["serviceAttributes"]["ratedUsage"]["covered"] is True


def test_health_shows_each_export_streams_snapshot(billing_sim, store, synced):
    report = get(store, "/api/health", now=NOW).json()
    snapshots = report["functions"]["fetch_rated_usage"]["snapshots"]
    assert {(s["billingPeriod"], s["currencyCode"]) for s in snapshots} == {
        ("current", "GBP"),
        ("last", "GBP"),
        ("current", "SEK"),
        ("last", "SEK"),
    }
    assert all(s["snapshotETag"] and s["ageSeconds"] == 0 for s in snapshots)
    assert report["functions"]["fetch_rated_usage"]["lastRun"]["status"] == "succeeded"
