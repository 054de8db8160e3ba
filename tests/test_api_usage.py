"""usagerecords and usagesummary: Partner Center's shapes, records as stored, every digit kept."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.api_data import (
    CUSTOMER,
    OTHER_SUBSCRIPTION,
    SUBSCRIPTION,
    UNKNOWN_CUSTOMER,
    get,
    sub_path,
    usage_record,
    usage_summary,
    write_subscription,
    write_usage_records,
    write_usage_summary,
)

SECOND_CUSTOMER = "d3d3d3d3-eeee-ffff-aaaa-b4b4b4b4b4b4"


def test_usage_records_are_a_collection_of_the_records_as_received(store):
    records = [usage_record(CUSTOMER), usage_record(SECOND_CUSTOMER, name="Modern Azure Customer UK")]
    write_usage_records(store, records)
    response = get(store, "/api/v1/customers/usagerecords")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["totalCount"] == 2
    assert body["links"] == {"self": {"uri": "customers/usagerecords", "method": "GET", "headers": []}}
    assert body["attributes"] == {"objectType": "Collection"}
    assert {item["id"] for item in body["items"]} == {CUSTOMER, SECOND_CUSTOMER}


def test_usage_record_money_keeps_every_digit_in_the_body_text(store):
    write_usage_records(store, [usage_record(CUSTOMER)])
    text = get(store, "/api/v1/customers/usagerecords").body.decode()
    assert '"totalCost":120.5682999999995904716' in text
    assert '"usdTotalCost":12.39999999999999985235' in text


def test_usage_records_without_any_stored_is_an_empty_collection(store):
    body = get(store, "/api/v1/customers/usagerecords").json()
    assert body["totalCount"] == 0 and body["items"] == []


def test_billing_month_serves_that_months_partition(store):
    write_usage_records(store, [usage_record(CUSTOMER)], month="2024-04")
    write_usage_records(store, [usage_record(CUSTOMER), usage_record(SECOND_CUSTOMER)], month="2024-05")
    body = get(store, "/api/v1/customers/usagerecords?billing_month=2024-04").json()
    assert [item["id"] for item in body["items"]] == [CUSTOMER]
    assert body["links"]["self"]["uri"] == "customers/usagerecords?billing_month=2024-04"


def test_a_month_with_nothing_stored_is_404(store):
    write_usage_records(store, [usage_record(CUSTOMER)], month="2024-05")
    response = get(store, "/api/v1/customers/usagerecords?billing_month=2023-01")
    assert response.status == 404
    assert "2023-01" in response.json()["description"]


@pytest.mark.parametrize(
    "month", ["2024-13", "2024-00", "2024-5", "24-05", "2024-05-01", "x' or 1 eq 1", "\uff12\uff10\uff12\uff14-05"]
)
def test_a_malformed_billing_month_is_400(store, month):
    response = get(store, "/api/v1/customers/usagerecords?" + f"billing_month={month}")
    assert response.status == 400
    assert set(response.json()) == {"code", "description"}
    assert "billing_month" in response.json()["description"]


def test_usage_summary_serves_the_stored_text_verbatim(store):
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary(total=Decimal("28.82860766744404945074")))
    response = get(store, sub_path() + "/usagesummary")
    assert response.status == 200
    stored = store.get("UsageSummaries", f"{CUSTOMER.lower()}|{SUBSCRIPTION}", "latest")["raw"]
    assert response.body.decode() == stored
    assert '"totalCost":28.82860766744404945074' in stored


def test_usage_summary_ids_are_case_insensitive(store):
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    assert get(store, sub_path(CUSTOMER.lower(), SUBSCRIPTION.upper()) + "/usagesummary").status == 200


@pytest.mark.parametrize("start", ["2019-07-28", "2019-07-28T00:00:00-07:00", "2019-07-28T07:00:00Z"])
def test_billing_start_serves_a_stored_past_period_by_its_date_as_written(store, start):
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary(start="2019-07-28T00:00:00-07:00"), latest=False)
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary(start="2019-08-28T00:00:00-07:00"))
    response = get(store, sub_path() + f"/usagesummary?billing_start={start.replace('+', '%2B')}")
    assert response.status == 200
    assert response.json()["billingStartDate"] == "2019-07-28T00:00:00-07:00"


def test_billing_start_of_a_period_not_stored_is_404_with_the_date(store):
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    response = get(store, sub_path() + "/usagesummary?billing_start=2018-01-28")
    assert response.status == 404
    assert "2018-01-28" in response.json()["description"]


@pytest.mark.parametrize("start", ["2019-02-30", "2019-7-28", "yesterday", "2019-07-28Tnoon", "2019-07-28 "])
def test_a_malformed_billing_start_is_400(store, start):
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    response = get(store, sub_path() + f"/usagesummary?billing_start={start}")
    if start.strip() == "2019-07-28":  # surrounding blanks are trimmed
        assert response.status == 404
    else:
        assert response.status == 400


def test_known_subscription_without_a_summary_yet_is_404_saying_so(store):
    write_subscription(store, CUSTOMER, SUBSCRIPTION)
    response = get(store, sub_path() + "/usagesummary")
    assert response.status == 404
    assert response.json()["code"] == 3000
    assert "no usage summary is stored yet" in response.json()["description"].lower()


def test_unknown_customer_is_404(store):
    write_subscription(store, CUSTOMER, SUBSCRIPTION)
    response = get(store, sub_path(UNKNOWN_CUSTOMER) + "/usagesummary")
    assert response.status == 404
    assert "customer" in response.json()["description"].lower()


def test_unknown_subscription_of_a_known_customer_is_404_with_partner_centers_code(store):
    write_subscription(store, CUSTOMER, SUBSCRIPTION)
    response = get(store, sub_path(CUSTOMER, OTHER_SUBSCRIPTION) + "/usagesummary")
    assert response.status == 404
    assert response.json()["code"] == 20003


@pytest.mark.parametrize(
    "customer",
    [
        "x' or PartitionKey ne '",
        "not-a-guid",
        "a0a0a0a0bbbbccccdddde1e1e1e1e1e1",
        "{a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1}",
    ],
)
def test_ids_that_are_not_guids_are_400_before_any_table_is_read(store, customer):
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    queries_before = store.stats.queries
    response = get(store, sub_path(customer.replace("'", "%27").replace(" ", "%20")) + "/usagesummary")
    assert response.status == 400
    assert "customer id" in response.json()["description"]
    assert store.stats.queries == queries_before


def test_usage_records_as_csv_have_dotted_columns_and_exact_digits(store):
    write_usage_records(store, [usage_record(CUSTOMER)])
    response = get(store, "/api/v1/customers/usagerecords", headers={"Accept": "text/csv"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    lines = response.body.decode().splitlines()
    header = lines[0].split(",")
    assert header[:5] == ["id", "resourceId", "name", "resourceName", "totalCost"]
    assert "budget.amount" in header and "attributes.objectType" in header
    row = dict(zip(header, lines[1].split(","), strict=True))
    assert row["totalCost"] == "120.5682999999995904716"
    assert row["isUpgraded"] == "true"
    assert row["budget.amount"] == "20"


def test_usage_summary_as_csv_is_one_row(store):
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    lines = get(store, sub_path() + "/usagesummary?format=csv").body.decode().splitlines()
    assert len(lines) == 2
    assert "22.861172" in lines[1].split(",")


def test_json_error_bodies_parse_as_plain_json(store):
    body = get(store, "/api/v1/customers/usagerecords?billing_month=bad").body
    assert not body.startswith(b"\xef\xbb\xbf")
    assert json.loads(body)["code"] == 900400
