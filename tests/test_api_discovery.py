"""Discovery routes: customers and subscriptions in Partner Center's shapes, with this service's view apart."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared import tables
from tests.api_data import (
    CUSTOMER,
    DAY,
    OTHER_SUBSCRIPTION,
    SUBSCRIPTION,
    UNKNOWN_CUSTOMER,
    get,
    sub_path,
    usage_record,
    usage_summary,
    utilization_record,
    write_subscription,
    write_usage_records,
    write_usage_summary,
    write_utilization,
)

CUSTOMERS = [f"0000000{n}-0000-0000-0000-000000000000" for n in range(1, 4)]
PLAN = "22222222-2222-2222-2222-222222222222"
LICENCE = "33333333-3333-3333-3333-333333333333"


def _customer(store, customer_id, *, relationship="ok", **extra):
    record = {"id": customer_id, "companyProfile": {"companyName": f"Company {customer_id[7]}"}, **extra}
    relation = tables.Relationship(relationship)
    error = "20002" if relationship == "forbidden" else None
    store.upsert(tables.CUSTOMERS, [tables.customer_row(customer_id, record, relationship=relation, error_code=error)])
    return record


@pytest.fixture
def known(store):
    write_subscription(store, CUSTOMER, SUBSCRIPTION)
    for sid, offer in ((PLAN, "DZH318Z0BPS6:0001"), (LICENCE, "031C9E47-4802-4248-838E-778FB1D2CC05")):
        record = {"id": sid, "offerId": offer, "status": "active"}
        store.upsert(tables.SUBSCRIPTIONS, [tables.subscription_row(CUSTOMER, record)])
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    write_usage_records(store, [usage_record(CUSTOMER)], month="2024-05")
    return store


def test_customers_are_listed_as_received_with_the_service_s_own_attributes_apart(store):
    records = [_customer(store, c, futureField={"x": Decimal("1.000000000000000000001")}) for c in CUSTOMERS]
    body = get(store, "/api/v1/customers").json()
    assert body["totalCount"] == 3 and body["attributes"] == {"objectType": "Collection"}
    for record, item in zip(records, body["items"], strict=True):
        attributes = item.pop("serviceAttributes")
        assert item == record  # every upstream field, unknown ones too, every digit
        assert attributes["relationship"] == "ok"
        assert attributes["links"]["subscriptions"]["uri"] == f"customers/{record['id']}/subscriptions"


def test_customers_page_like_partner_center(store):
    for customer_id in CUSTOMERS:
        _customer(store, customer_id)
    seen, response = [], get(store, "/api/v1/customers?size=1")
    while True:
        assert response.status == 200
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        following = page["links"].get("next")
        if following is None:
            break
        assert following["uri"] == "customers?seek_operation=Next"
        headers = {h["key"]: h["value"] for h in following["headers"]}
        assert response.headers["MS-ContinuationToken"] == headers["MS-ContinuationToken"]
        response = get(store, "/api/v1/" + following["uri"], headers=headers)
    assert seen == CUSTOMERS
    assert get(store, "/api/v1/customers?seek_operation=Next", headers={"MS-ContinuationToken": "x"}).status == 404
    assert get(store, "/api/v1/customers?size=0").status == 400


def test_one_customer_with_its_stored_billing_months_and_a_304(known):
    response = get(known, f"/api/v1/customers/{CUSTOMER}")
    body = response.json()
    assert response.status == 200 and body["id"] == CUSTOMER.lower()
    assert body["serviceAttributes"]["billingMonths"] == ["2024-05"]
    assert (
        get(known, f"/api/v1/customers/{CUSTOMER}", headers={"If-None-Match": response.headers["ETag"]}).status == 304
    )
    assert get(known, f"/api/v1/customers/{UNKNOWN_CUSTOMER}").status == 404
    assert get(known, "/api/v1/customers/not-a-guid").status == 400


def test_subscriptions_say_their_kind_and_which_data_covers_them(known):
    body = get(known, f"/api/v1/customers/{CUSTOMER}/subscriptions").json()
    by_id = {item["id"]: item["serviceAttributes"] for item in body["items"]}
    legacy, plan, licence = by_id[SUBSCRIPTION], by_id[PLAN], by_id[LICENCE]
    assert legacy["kind"] == "legacy" and legacy["utilization"]["covered"] and legacy["usageSummary"]["covered"]
    assert legacy["usageSummary"]["billingPeriods"] == ["2019-08-28"]
    assert legacy["utilization"]["link"]["uri"].endswith(f"{SUBSCRIPTION}/utilizations/azure")
    assert plan["kind"] == "azure_plan" and plan["usageSummary"]["covered"] and not plan["utilization"]["covered"]
    assert (
        licence["kind"] == "other" and not licence["usageSummary"]["covered"] and licence["utilization"]["link"] is None
    )
    one = get(known, sub_path(CUSTOMER, PLAN)).json()
    assert one["offerId"] == "DZH318Z0BPS6:0001" and one["serviceAttributes"]["kind"] == "azure_plan"
    missing = get(known, sub_path(CUSTOMER, OTHER_SUBSCRIPTION))
    assert missing.status == 404 and missing.json()["code"] == 20003


def test_a_forbidden_customer_is_marked_everywhere_and_its_routes_say_why(known):
    forbidden = CUSTOMERS[0]
    _customer(known, forbidden, relationship="forbidden")
    write_usage_records(known, [usage_record(CUSTOMER), usage_record(forbidden)])
    items = get(known, "/api/v1/customers/usagerecords").json()["items"]
    records = {r["id"].lower(): r["serviceAttributes"]["relationship"] for r in items}
    assert records == {CUSTOMER.lower(): "ok", forbidden: "forbidden"}
    listed = {c["id"]: c["serviceAttributes"] for c in get(known, "/api/v1/customers").json()["items"]}
    assert listed[forbidden]["relationship"] == "forbidden" and listed[forbidden]["errorCode"] == "20002"
    for target in (
        f"/api/v1/customers/{forbidden}/subscriptions",
        sub_path(forbidden, SUBSCRIPTION),
        sub_path(forbidden, SUBSCRIPTION) + "/usagesummary",
        sub_path(forbidden, SUBSCRIPTION) + "/utilizations/azure",
    ):
        response = get(known, target)
        assert response.status == 403, target
        assert response.json()["code"] == 20002 and "relationship" in response.json()["description"]


def test_routes_that_do_not_cover_a_subscription_say_so_and_point_to_the_one_that_does(known):
    plan = get(known, sub_path(CUSTOMER, PLAN) + "/utilizations/azure")
    assert plan.status == 404 and plan.json()["code"] == 900409
    assert f"{sub_path(CUSTOMER, PLAN).lower()}/usagesummary" in plan.json()["description"].lower()
    licence = get(known, sub_path(CUSTOMER, LICENCE) + "/usagesummary")
    assert licence.status == 404 and licence.json()["code"] == 900409
    assert "appears" not in licence.json()["description"] and "no Azure usage" in licence.json()["description"]
    write_utilization(known, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    legacy = get(
        known, sub_path() + "/utilizations/azure?start_time=2024-01-01T00:00:00Z&end_time=2025-01-01T00:00:00Z"
    )
    assert legacy.status == 200 and legacy.json()["totalCount"] == 1


def test_an_empty_parameter_is_400_but_a_token_of_spaces_is_just_no_token(store):
    _customer(store, CUSTOMERS[0])
    assert get(store, "/api/v1/customers?continuation_token=").status == 400
    assert get(store, "/api/v1/customers?continuation_token=%20%20").status == 200
    assert get(store, "/api/v1/customers?seek_operation=Next&continuation_token=%20").status == 404
    assert get(store, "/api/v1/customers?size=%20").status == 400
