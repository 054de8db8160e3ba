"""utilizations/azure: usage-time selection as a RowKey range, Partner Center paging, exact quantities."""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from azure.data.tables import TableServiceClient

from shared.api import continuation, csv_format
from shared.table_store import TableStore
from tests.api_data import (
    CUSTOMER,
    DAY,
    OTHER_SUBSCRIPTION,
    QUANTITY,
    SUBSCRIPTION,
    UNKNOWN_CUSTOMER,
    get,
    many_utilization_records,
    settings_for,
    sub_path,
    utilization_record,
    write_subscription,
    write_utilization,
)
from tests.stores import drop_tables

URL = sub_path() + "/utilizations/azure"
WIDE = "start_time=2024-01-01T00:00:00Z&end_time=2025-01-01T00:00:00Z"


def _follow(store, first_target):
    """Every page, following links.next with its header as a Partner Center client does."""
    pages = []
    response = get(store, first_target)
    while True:
        assert response.status == 200, response.body
        page = response.json()
        pages.append(page)
        following = page["links"].get("next")
        if following is None:
            return pages
        headers = {h["key"]: h["value"] for h in following["headers"]}
        response = get(store, "/api/v1/" + following["uri"], headers=headers)


@pytest.fixture(scope="module")
def big_store(azurite):
    """2 500 records of one subscription (25 meters a day over 100 days), written once for the read-only tests."""
    requests: list[str] = []
    service = TableServiceClient.from_connection_string(
        azurite.connection_string, raw_request_hook=lambda r: requests.append(r.http_request.url)
    )
    store = TableStore(service, prefix="t" + uuid.uuid4().hex[:12])
    records = many_utilization_records(2500, first_day=DAY)
    rows = write_utilization(store, CUSTOMER, SUBSCRIPTION, records)
    yield store, records, rows, requests
    drop_tables(store)


@pytest.fixture
def big(big_store):
    return big_store[1], big_store[2]


@pytest.fixture
def store_2500(big_store):
    return big_store[0]


def test_paging_serves_every_record_once_in_usage_time_order(store_2500, big):
    records, _ = big
    pages = _follow(store_2500, f"{URL}?{WIDE}")
    assert [p["totalCount"] for p in pages] == [1000, 1000, 500]
    assert all(len(p["items"]) == p["totalCount"] for p in pages)
    served = [item for p in pages for item in p["items"]]
    key = lambda r: (r["usageStartTime"], r["resource"]["id"])  # noqa: E731
    assert sorted(map(key, served)) == sorted(map(key, records))
    assert len({key(r) for r in served}) == 2500
    starts = [datetime.fromisoformat(r["usageStartTime"]) for r in served]
    assert starts == sorted(starts)


def test_next_link_has_partner_centers_exact_shape(store_2500):
    page = get(store_2500, f"{URL}?{WIDE}").json()
    following = page["links"]["next"]
    assert following["uri"] == (
        f"customers/{CUSTOMER.lower()}/subscriptions/{SUBSCRIPTION}/utilizations/azure?seek_operation=Next"
    )
    assert following["method"] == "GET"
    assert [h["key"] for h in following["headers"]] == ["MS-ContinuationToken"]


def test_every_record_is_the_stored_text_digit_for_digit(store_2500, big):
    _, rows = big
    served_text = ""
    response = get(store_2500, f"{URL}?{WIDE}")
    while True:
        served_text += response.body.decode()
        following = response.json()["links"].get("next")
        if not following:
            break
        response = get(store_2500, f"{URL}?continuation_token={following['headers'][0]['value']}")
    for row in rows:
        assert row["raw"] in served_text
    assert '"quantity":7.0007000000000000000001' in served_text


def test_a_full_page_costs_one_table_request(big_store):
    store, _, _, requests = big_store
    get(store, f"{URL}?{WIDE}")  # the table client exists from here on
    for target in (f"{URL}?{WIDE}", f"{URL}?{WIDE}&format=csv", f"{URL}?{WIDE}&show_details=false"):
        requests.clear()
        response = get(store, target)
        assert response.status == 200
        assert len(requests) == 1, requests
        assert "top=1000" in requests[0].replace("%24", "$")


def test_selection_is_by_usage_start_in_half_open_utc_range(store):
    records = [utilization_record(DAY + timedelta(days=d)) for d in range(4)]  # 08:00Z on Mar 1..4
    write_utilization(store, CUSTOMER, SUBSCRIPTION, records)
    # [2024-03-02T08:00Z, 2024-03-04T08:00Z) written with two different offsets
    target = f"{URL}?start_time=2024-03-02T00:00:00-08:00&end_time=2024-03-04T09:00:00%2B01:00"
    body = get(store, target).json()
    assert [r["usageStartTime"] for r in body["items"]] == [records[1]["usageStartTime"], records[2]["usageStartTime"]]


def test_fractional_seconds_round_the_range_correctly(store):
    records = [utilization_record(DAY), utilization_record(DAY + timedelta(seconds=1))]
    write_utilization(store, CUSTOMER, SUBSCRIPTION, records)
    body = get(store, f"{URL}?start_time=2024-03-01T08:00:00.5Z&end_time=2024-03-01T08:00:01.5Z").json()
    assert [r["usageStartTime"] for r in body["items"]] == [records[1]["usageStartTime"]]


def test_an_unencoded_plus_in_the_offset_is_understood(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    body = get(store, f"{URL}?start_time=2024-03-01T09:00:00+01:00&end_time=2024-03-01T09:00:01+01:00").json()
    assert body["totalCount"] == 1


def test_show_details_false_drops_instance_data_and_keeps_digits(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    response = get(store, f"{URL}?{WIDE}&show_details=false")
    item = response.json()["items"][0]
    assert "instanceData" not in item
    assert item["quantity"] == QUANTITY
    assert '"quantity":0.0416666666666666666667' in response.body.decode()


def test_show_details_survives_into_the_next_page(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY + timedelta(days=d)) for d in range(3)])
    pages = _follow(store, f"{URL}?{WIDE}&size=2&show_details=FALSE")
    assert [p["totalCount"] for p in pages] == [2, 1]
    assert all("instanceData" not in item for p in pages for item in p["items"])


def test_the_stored_granularity_is_served_and_the_other_is_404(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    assert get(store, f"{URL}?{WIDE}&granularity=daily").status == 200
    response = get(store, f"{URL}?{WIDE}&granularity=hourly")  # schema-valid, but not stored here
    assert response.status == 404 and "daily" in response.json()["description"]
    hourly = settings_for(store, utilization_granularity="hourly")
    assert get(store, f"{URL}?{WIDE}&granularity=Hourly", settings=hourly).status == 200
    assert get(store, f"{URL}?{WIDE}&granularity=weekly").status == 400


@pytest.mark.parametrize("size", ["0", "1001", "-1", "1.5", "ten", "1e3", "+5", "\u0665"])
def test_size_out_of_range_or_not_an_integer_is_400(store, size):
    response = get(store, f"{URL}?{WIDE}&size={size.replace('+', '%2B')}")
    assert response.status == 400
    assert "size" in response.json()["description"]


@pytest.mark.parametrize(
    "query",
    [
        "start_time=2024-03-01T00:00:00&end_time=2024-03-02T00:00:00Z",
        "start_time=2024-03-01&end_time=2024-03-02T00:00:00Z",
        "start_time=yesterday&end_time=2024-03-02T00:00:00Z",
        "start_time=2024-03-01T00:00:00Z&start_time=2024-03-01T00:00:00Z&end_time=2024-03-02T00:00:00Z",
        "start_time=&end_time=2024-03-02T00:00:00Z",
        f"{WIDE}&show_details=maybe",
        f"{WIDE}&size=",
    ],
)
def test_bad_times_and_flags_are_400(store, query):
    write_subscription(store, CUSTOMER, SUBSCRIPTION)
    response = get(store, f"{URL}?{query}")
    assert response.status == 400, response.body
    assert set(response.json()) == {"code", "description"}


def test_the_range_defaults_to_the_current_utc_month_to_date(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY + timedelta(days=d)) for d in range(3)])
    now = datetime(2024, 3, 2, 15, 30, tzinfo=timezone.utc)
    body = get(store, URL, now=now).json()
    assert (
        body["links"]["self"]["uri"]
        .split("?")[1]
        .startswith("start_time=2024-03-01T00%3A00%3A00Z&end_time=2024-03-03T00%3A00%3A00Z")
    )
    assert body["totalCount"] == 2  # the third day's usage starts after today
    only_end = get(store, f"{URL}?end_time=2024-03-02T08:00:00Z", now=now).json()
    assert only_end["totalCount"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "start_time=2024-03-02T00:00:00Z&end_time=2024-03-01T00:00:00Z",
        "start_time=2024-03-01T00:00:00Z&end_time=2024-03-01T00:00:00Z",
        "start_time=0001-01-01T00:00:00%2B01:00&end_time=0001-01-01T00:00:00%2B02:00",
        "start_time=9999-12-31T23:59:59.5-01:00&end_time=9999-12-31T23:59:59.9-02:00",
    ],
)
def test_an_empty_or_out_of_range_range_holds_no_records(store, query):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    response = get(store, f"{URL}?{query}")
    assert response.status == 200 and response.json()["totalCount"] == 0


def test_the_token_also_works_as_a_query_parameter(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY + timedelta(days=d)) for d in range(3)])
    first = get(store, f"{URL}?{WIDE}&size=2")
    token = first.headers["MS-ContinuationToken"]
    assert first.json()["links"]["next"]["headers"][0]["value"] == token
    second = get(store, f"{URL}?continuation_token={token}")
    assert second.status == 200 and second.json()["totalCount"] == 1
    assert "next" not in second.json()["links"] and "MS-ContinuationToken" not in second.headers


def _token(**changes):
    query = continuation.UtilizationQuery(
        customer_id=CUSTOMER.lower(),
        subscription_id=SUBSCRIPTION,
        start_key="2024-01-01T00:00:00Z",
        end_key="2025-01-01T00:00:00Z",
        size=2,
        show_details=True,
    )
    payload = json.loads(base64.urlsafe_b64decode(continuation.encode(query, "2024-03-01T08:00:00Z|x|y") + "=="))
    payload.update(changes)
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "Zm9v",  # "foo"
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        "A" * 5000,
        _token(c=UNKNOWN_CUSTOMER),
        _token(s=OTHER_SUBSCRIPTION),
        _token(n=5000),
        _token(n=True),
        _token(d="yes"),
        _token(v=2),
        _token(k="2023-01-01T00:00:00Z|before-start"),
        _token(k="2026-01-01T00:00:00Z|after-end"),
        _token(k="2024-03-01T08:00:00Z' or RowKey ne '\x00"),
        _token(st="2024-13-01T00:00:00Z"),
        _token(extra=1),
    ],
)
def test_garbage_or_forged_tokens_name_no_page_404(store, token):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    response = get(store, f"{URL}?seek_operation=Next", headers={"MS-ContinuationToken": token})
    assert response.status == 404
    assert "continuation token" in response.json()["description"]


def test_a_well_formed_token_of_this_subscription_is_honoured(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY + timedelta(days=d)) for d in range(3)])
    response = get(store, f"{URL}?seek_operation=Next", headers={"MS-ContinuationToken": _token()})
    assert [r["usageStartTime"] for r in response.json()["items"]] == [
        (DAY + timedelta(days=1)).isoformat(),
        (DAY + timedelta(days=2)).isoformat(),
    ]


def test_seek_next_without_a_token_is_404_and_a_stray_header_is_ignored(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    assert get(store, f"{URL}?seek_operation=Next").status == 404
    assert get(store, f"{URL}?seek_operation=Previous", headers={"MS-ContinuationToken": _token()}).status == 400
    response = get(store, f"{URL}?{WIDE}", headers={"MS-ContinuationToken": "garbage"})
    assert response.status == 200 and response.json()["totalCount"] == 1


def test_unknown_subscription_is_404_and_a_known_one_without_data_in_range_is_empty(store):
    write_subscription(store, CUSTOMER, SUBSCRIPTION)
    assert get(store, f"{URL}?{WIDE}").json()["totalCount"] == 0
    other = sub_path(CUSTOMER, OTHER_SUBSCRIPTION) + "/utilizations/azure"
    assert get(store, f"{other}?{WIDE}").json()["code"] == 20003
    unknown = sub_path(UNKNOWN_CUSTOMER, SUBSCRIPTION) + "/utilizations/azure"
    response = get(store, f"{unknown}?{WIDE}")
    assert response.status == 404 and "Customer" in response.json()["description"]


def test_data_rows_make_a_subscription_known_before_the_inventory_does(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY)])
    response = get(store, f"{URL}?start_time=2020-01-01T00:00:00Z&end_time=2020-01-02T00:00:00Z")
    assert response.status == 200 and response.json()["totalCount"] == 0


def test_utilization_as_csv(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY, quantity=Decimal("1E-7"))])
    response = get(store, f"{URL}?{WIDE}&format=csv")
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.body.decode())))
    assert list(rows[0])[:4] == ["usageStartTime", "usageEndTime", "resource.id", "resource.name"]
    assert rows[0]["quantity"] == "1E-7"
    assert rows[0]["instanceData.resourceUri"].startswith("/subscriptions/")
    assert rows[0]["instanceData.tags"] == '{"env":"=HYPERLINK(\\"x\\")"}'  # JSON: a spreadsheet does not run it
    assert rows[0]["infoFields"] == "{}"


def test_csv_pages_have_the_same_documented_header_whatever_their_records_hold(store):
    plain = utilization_record(DAY)
    del plain["instanceData"]
    rich = {**utilization_record(DAY + timedelta(days=1)), "futureField": 1, "resource": {"id": "m", "x": "y"}}
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [plain, rich])
    first = get(store, f"{URL}?{WIDE}&size=1&format=csv")
    second = get(store, f"{URL}?continuation_token={first.headers['MS-ContinuationToken']}&format=csv")
    headers = [response.body.decode().splitlines()[0] for response in (first, second)]
    assert headers[0] == headers[1] == ",".join(csv_format.UTILIZATION_COLUMNS)
    assert next(csv.DictReader(io.StringIO(first.body.decode())))["instanceData.resourceUri"] == ""


def test_csv_pages_carry_the_token_in_a_response_header(store):
    write_utilization(store, CUSTOMER, SUBSCRIPTION, [utilization_record(DAY + timedelta(days=d)) for d in range(3)])
    first = get(store, f"{URL}?{WIDE}&size=2", headers={"Accept": "text/csv"})
    token = first.headers["MS-ContinuationToken"]
    second = get(store, f"{URL}?continuation_token={token}&format=csv")
    assert len(second.body.decode().splitlines()) == 2
