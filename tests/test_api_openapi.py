"""The OpenAPI document is valid, covers every route, and real responses (from Azurite data) match it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jsonschema
import pytest
from openapi_spec_validator import validate

from shared import jsonutil
from shared.api.openapi import document
from shared.api.routes import ROUTES
from shared.sync.jobs import JOB_NAMES
from tests.api_data import (
    CUSTOMER,
    DAY,
    OTHER_SUBSCRIPTION,
    SUBSCRIPTION,
    UNKNOWN_CUSTOMER,
    check,
    get,
    many_utilization_records,
    sub_path,
    usage_record,
    usage_summary,
    write_run,
    write_subscription,
    write_usage_records,
    write_usage_summary,
    write_utilization,
)

DOC = document()
SUB = "/v1/customers/{customer_id}/subscriptions/{subscription_id}"
WIDE = "start_time=2024-01-01T00:00:00Z&end_time=2025-01-01T00:00:00Z"
NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


def test_the_document_is_valid_openapi():
    validate(dict(DOC.items()))  # a shallow copy typed as the validator's Mapping[Hashable, Any] (an invariant key)


def test_the_document_covers_exactly_the_routes_served():
    served = {"/" + "/".join(route.template) for route in ROUTES}
    assert served == set(DOC["paths"])


def test_the_served_document_is_the_document(store):
    assert get(store, "/api/openapi.json").json() == jsonutil.loads(jsonutil.dumps(DOC))


@pytest.fixture
def filled(store):
    write_subscription(store, CUSTOMER, SUBSCRIPTION)
    write_usage_records(store, [usage_record(CUSTOMER)])
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    write_utilization(store, CUSTOMER, SUBSCRIPTION, many_utilization_records(30, first_day=DAY, meters=3))
    return store


def test_real_responses_of_every_route_match_the_document(filled):
    util = sub_path() + "/utilizations/azure"
    cases = [
        ("/api/v1/customers/usagerecords", "/v1/customers/usagerecords"),
        ("/api/v1/customers/usagerecords?format=csv", "/v1/customers/usagerecords"),
        ("/api/v1/customers/usagerecords?billing_month=2024-05", "/v1/customers/usagerecords"),
        ("/api/v1/customers/usagerecords?billing_month=1999-01", "/v1/customers/usagerecords"),
        ("/api/v1/customers/usagerecords?billing_month=nope", "/v1/customers/usagerecords"),
        (sub_path() + "/usagesummary", SUB + "/usagesummary"),
        (sub_path() + "/usagesummary?format=csv", SUB + "/usagesummary"),
        (sub_path(CUSTOMER, OTHER_SUBSCRIPTION) + "/usagesummary", SUB + "/usagesummary"),
        (sub_path(UNKNOWN_CUSTOMER) + "/usagesummary", SUB + "/usagesummary"),
        (sub_path("bad") + "/usagesummary", SUB + "/usagesummary"),
        (f"{util}?{WIDE}", SUB + "/utilizations/azure"),
        (f"{util}?{WIDE}&size=7", SUB + "/utilizations/azure"),
        (f"{util}?{WIDE}&show_details=false&format=csv", SUB + "/utilizations/azure"),
        (f"{util}?{WIDE}&size=0", SUB + "/utilizations/azure"),
        (f"{util}?seek_operation=Next", SUB + "/utilizations/azure"),
        ("/api/health", "/health"),
        ("/api/openapi.json", "/openapi.json"),
        ("/api/v1/customers", "/v1/customers"),
        ("/api/v1/customers?size=1", "/v1/customers"),
        ("/api/v1/customers?size=0", "/v1/customers"),
        (f"/api/v1/customers/{CUSTOMER}", "/v1/customers/{customer_id}"),
        (f"/api/v1/customers/{UNKNOWN_CUSTOMER}", "/v1/customers/{customer_id}"),
        (f"/api/v1/customers/{CUSTOMER}/subscriptions", "/v1/customers/{customer_id}/subscriptions"),
        (sub_path(), SUB),
        (sub_path(CUSTOMER, OTHER_SUBSCRIPTION), SUB),
    ]
    seen = set()
    for target, template in cases:
        response = get(filled, target, now=NOW)
        check(response, template)
        seen.add((template, response.status))
        if response.status == 200:
            check(get(filled, target, headers={"If-None-Match": response.headers["ETag"]}, now=NOW), template)
        if "size=7" in target:
            following = response.json()["links"]["next"]
            headers = {h["key"]: h["value"] for h in following["headers"]}
            check(get(filled, "/api/v1/" + following["uri"], headers=headers), template)
    for name in JOB_NAMES:
        write_run(filled, name, started=NOW - timedelta(hours=1))
    check(get(filled, "/api/health", now=NOW), "/health")
    check(get(filled, "/api/v1/customers/usagerecords", method="POST"), "/v1/customers/usagerecords")
    assert {status for _, status in seen} >= {200, 400, 404, 503}


def test_every_collection_record_matches_its_open_record_schema(filled):
    body = get(filled, sub_path() + f"/utilizations/azure?{WIDE}").json()
    schema = {"$ref": "#/components/schemas/AzureUtilizationRecord", "components": DOC["components"]}
    for item in body["items"]:
        jsonschema.Draft202012Validator(schema).validate(item)
    assert body["totalCount"] == 30


def test_a_stored_percent_used_of_nan_text_still_conforms_and_year_0000_is_just_not_stored(store):
    write_usage_records(store, [{**usage_record(CUSTOMER), "percentUsed": "NaN"}])
    response = get(store, "/api/v1/customers/usagerecords")
    assert response.status == 200 and response.json()["items"][0]["percentUsed"] == "NaN"
    check(response, "/v1/customers/usagerecords")
    not_stored = get(store, "/api/v1/customers/usagerecords?billing_month=0000-01")
    assert not_stored.status == 404
    check(not_stored, "/v1/customers/usagerecords")
    empty = get(store, "/api/v1/customers/usagerecords?billing_month=")
    assert empty.status == 400 and "empty" in empty.json()["description"]
