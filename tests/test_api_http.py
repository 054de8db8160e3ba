"""Cross-cutting HTTP behaviour: routing, methods, formats, ETags, error shape, no internals leaked."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import cast

import pytest
from azure.data.tables import TableClient

from shared import jsonutil
from shared.api import handle
from shared.api.etag import etag_of
from shared.table_store import TableStore
from tests.api_data import (
    CUSTOMER,
    DAY,
    SUBSCRIPTION,
    get,
    request_for,
    settings_for,
    sub_path,
    usage_record,
    usage_summary,
    utilization_record,
    write_usage_records,
    write_usage_summary,
    write_utilization,
)

ROUTES = [
    "/api/v1/customers/usagerecords",
    sub_path() + "/usagesummary",
    sub_path() + "/utilizations/azure?start_time=2024-01-01T00:00:00Z&end_time=2025-01-01T00:00:00Z",
    "/api/health",
    "/api/openapi.json",
]


@pytest.fixture
def filled(store):
    write_usage_records(store, [usage_record(CUSTOMER)])
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    return store


@pytest.mark.parametrize("target", ROUTES)
def test_every_200_has_a_strong_etag_of_its_body_and_if_none_match_answers_304(filled, target):
    first = get(filled, target)
    if target.endswith("health"):
        assert first.status == 503  # no runs recorded: still no ETag needed, checked below with runs
        return
    assert first.status == 200
    assert first.headers["ETag"] == etag_of(first.body)
    assert not first.headers["ETag"].startswith("W/")
    again = get(filled, target, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    assert again.headers["ETag"] == first.headers["ETag"]


def test_if_none_match_accepts_lists_weak_forms_and_star(filled):
    target = ROUTES[0]
    tag = get(filled, target).headers["ETag"]
    assert get(filled, target, headers={"If-None-Match": f'"other", W/{tag}'}).status == 304
    assert get(filled, target, headers={"If-None-Match": "*"}).status == 304
    assert get(filled, target, headers={"If-None-Match": '"stale"'}).status == 200


def test_csv_and_json_of_the_same_rows_have_different_etags(filled):
    json_tag = get(filled, ROUTES[0]).headers["ETag"]
    csv_tag = get(filled, ROUTES[0] + "?format=csv").headers["ETag"]
    assert json_tag != csv_tag
    assert get(filled, ROUTES[0], headers={"Accept": "text/csv"}).headers["ETag"] == csv_tag


def test_a_changed_row_changes_the_etag(filled):
    before = get(filled, ROUTES[0]).headers["ETag"]
    write_usage_records(filled, [usage_record(CUSTOMER, name="Renamed")])
    assert get(filled, ROUTES[0], headers={"If-None-Match": before}).status == 200


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        ("text/csv", True),
        ("text/csv, */*", True),
        ("application/json", False),
        ("application/json, text/csv;q=0.5", False),
        ("text/csv;q=0.9, application/json;q=0.1", True),
        ("text/csv;q=0", False),
        ("*/*", False),
        ("text/csv;q=nan", False),
        ("", False),
    ],
)
def test_accept_header_picks_csv_only_when_preferred(filled, accept, csv):
    response = get(filled, ROUTES[0], headers={"Accept": accept})
    assert response.headers["Content-Type"].startswith("text/csv" if csv else "application/json")
    assert response.headers["Vary"] == "Accept"


def test_format_parameter_wins_over_accept_and_others_are_400(filled):
    assert (
        get(filled, ROUTES[0] + "?format=json", headers={"Accept": "text/csv"})
        .headers["Content-Type"]
        .startswith("application/json")
    )
    assert get(filled, ROUTES[0] + "?format=CSV").headers["Content-Type"].startswith("text/csv")
    for bad in ("xml", "csv;", "jsonp"):
        response = get(filled, ROUTES[0] + f"?format={bad}")
        assert response.status == 400 and "format" in response.json()["description"]
    assert get(filled, "/api/openapi.json?format=csv").status == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"])
def test_other_methods_are_405_with_allow(filled, method):
    response = get(filled, ROUTES[0], method=method)
    assert response.status == 405
    assert response.headers["Allow"] == "GET"
    assert response.json()["code"] == 900405


@pytest.mark.parametrize(
    "target",
    [
        "/api/",
        "/api/v1",
        "/api/v2/customers/usagerecords",
        "/api/v1/customers/" + CUSTOMER + "/invoices",
        sub_path() + "/usagesummary/extra",
        sub_path() + "/utilizations/aws",
        "/api/admin/host/status",
    ],
)
def test_unknown_routes_are_404_in_partner_center_shape(filled, target):
    response = get(filled, target)
    assert response.status == 404
    assert set(response.json()) == {"code", "description"}


def test_paths_are_case_insensitive_and_tolerate_a_trailing_slash(filled):
    assert get(filled, "/api/V1/Customers/UsageRecords/").status == 200


def test_query_values_reach_table_storage_only_as_parameters(filled, monkeypatch):
    filters = []
    original = TableClient.query_entities

    def spy(self, query_filter, **kwargs):
        filters.append(query_filter)
        return original(self, query_filter, **kwargs)

    monkeypatch.setattr(TableClient, "query_entities", spy)
    hostile = "2024-01' or PartitionKey ne '"
    for target in [
        *ROUTES,
        f"/api/v1/customers/usagerecords?billing_month={hostile}",
        sub_path() + f"/usagesummary?billing_start={hostile}",
        sub_path("ffffffff-ffff-ffff-ffff-ffffffffffff") + "/usagesummary",
    ]:
        get(filled, target)
    assert filters
    for text in filters:
        assert "'" not in text.replace("'customer'", ""), text


def test_an_unexpected_failure_is_a_500_with_a_correlation_id_and_no_trace(filled, caplog):
    class Broken:
        prefix = filled.prefix

        def __getattr__(self, name):
            raise RuntimeError("secret internals: connection string AccountKey=abc")

    caplog.set_level(logging.ERROR)
    request = request_for("GET", ROUTES[0])
    # Deliberately not a TableStore: every attribute the handler reaches for fails.
    response = handle(request, cast(TableStore, Broken()), settings_for(filled))
    assert response.status == 500
    body = jsonutil.loads(response.body)
    assert body["code"] == 900500 and body["correlationId"] in body["description"]
    assert b"secret" not in response.body and b"Traceback" not in response.body
    assert response.headers["MS-CorrelationId"] == body["correlationId"]
    assert body["correlationId"] in caplog.text and "secret internals" in caplog.text


def test_a_repeated_parameter_is_400(filled):
    response = get(filled, "/api/v1/customers/usagerecords?billing_month=2024-05&billing_month=2024-04")
    assert response.status == 400 and "once" in response.json()["description"]


def test_an_unknown_query_parameter_is_400_naming_it_and_what_the_route_takes(filled):
    target = sub_path() + "/utilizations/azure?fromm=2026-11-01&start_time=2024-01-01T00:00:00Z"
    response = get(filled, target)
    assert response.status == 400
    description = response.json()["description"]
    assert "'fromm'" in description and "start_time" in description and "end_time" in description


def test_the_function_key_and_format_are_accepted_on_every_route(filled):
    assert get(filled, "/api/v1/customers/usagerecords?code=key&format=json").status == 200
    assert get(filled, "/api/openapi.json?code=key").status == 200


def test_data_answers_say_when_their_data_was_fetched_and_honour_if_modified_since(filled):
    for target in ROUTES[:3]:
        response = get(filled, target)
        stamp = response.headers["Last-Modified"]
        fetched = parsedate_to_datetime(stamp)
        assert abs((datetime.now(timezone.utc) - fetched).total_seconds()) < 3600, target
        assert get(filled, target, headers={"If-Modified-Since": stamp}).status == 304
        earlier = format_datetime(fetched - timedelta(seconds=1), usegmt=True)
        assert get(filled, target, headers={"If-Modified-Since": earlier}).status == 200
        # If-None-Match wins: a stale ETag with a current date is a 200 (RFC 9110).
        both = {"If-None-Match": '"stale"', "If-Modified-Since": stamp}
        assert get(filled, target, headers=both).status == 200
        assert get(filled, target, headers={"If-Modified-Since": "not a date"}).status == 200
