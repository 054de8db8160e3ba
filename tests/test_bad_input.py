"""Malformed records from every endpoint and the inventory: each is stored faithfully or quarantined with a reason,
and every valid record of the same pages is stored (issue 11).

A loopback stand-in serves each endpoint's pages with one bad record between good ones (as raw JSON text, so
NaN, lone surrogates and wrong shapes arrive exactly as a broken service would send them); the real jobs run
against it and write to Azurite.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from werkzeug import Request, Response

from shared import jsonutil, tables
from shared.settings import Settings
from shared.tables import QUARANTINE_RAW_CHARS, customer_key, subscription_key
from tests.fakes import pc_json
from tests.sync_support import run_job, stand_in_settings

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
CUSTOMER = "c0000000-0000-0000-0000-000000000001"
OTHER_CUSTOMER = "c0000000-0000-0000-0000-000000000002"
SUBS = [f"50000000-0000-0000-0000-00000000000{n}" for n in (1, 2, 3)]
HUGE = "x" * 200_000
BIG_TAG = "t" * 70_000


def _json(value: Any) -> str:
    return json.dumps(value)


def collection(items_text: list[str], continuation: str | None = None) -> str:
    body = '{"totalCount":%d,"items":[%s]' % (len(items_text), ",".join(items_text))  # noqa: UP031
    if continuation:
        body += f',"continuationToken":"{continuation}"'
    return body + ',"attributes":{"objectType":"Collection"}}'


class StandIn:
    """Partner Center on loopback: tokens, customers, subscriptions and the three usage endpoints."""

    def __init__(self, httpserver: Any) -> None:
        self.server = httpserver
        self.customers = [_json(customer(CUSTOMER, "Contoso"))]
        self.subscriptions = {CUSTOMER: [_json(subscription(s)) for s in SUBS]}
        self.usage_records_pages = [[_json(usage_record(CUSTOMER))]]
        self.summaries = {s: _json(summary()) for s in SUBS}
        self.utilization: Callable[[str, str], list[str]] = lambda sid, start: [_json(usage(start, "meter-a"))]
        httpserver.expect_request(re.compile(r".*/oauth2/v2\.0/token")).respond_with_response(
            Response(pc_json('{"access_token":"at","expires_in":3600,"refresh_token":"rt"}'))
        )
        httpserver.expect_request(re.compile(r"^/v1/.*")).respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        path = request.path.removeprefix("/v1/")
        parts = path.split("/")
        if path == "customers":
            text = collection(self.customers)
        elif path == "customers/usagerecords":
            page = int(request.headers.get("MS-ContinuationToken") or 0)
            more = str(page + 1) if page + 1 < len(self.usage_records_pages) else None
            text = collection(self.usage_records_pages[page], more)
        elif len(parts) == 3 and parts[2] == "subscriptions":
            text = collection(self.subscriptions.get(parts[1], []))
        elif len(parts) == 5 and parts[4] == "usagesummary":
            text = self.summaries.get(parts[3], _json(summary()))
        elif len(parts) == 6 and parts[4] == "utilizations":
            text = collection(self.utilization(parts[3], request.args["start_time"]))
        else:
            return Response(pc_json('{"code":404,"description":"no such resource"}'), status=404)
        return Response(pc_json(text), content_type="application/json")

    def settings(self, azurite: Any, prefix: str) -> Settings:
        return stand_in_settings(self.server, azurite, prefix, UTILIZATION_BACKFILL_DAYS="2", SYNC_CONCURRENCY="1")


# -- good records --------------------------------------------------------------------------------------------


def customer(customer_id: str, name: str) -> dict[str, Any]:
    return {"id": customer_id, "companyProfile": {"companyName": name}, "attributes": {"objectType": "Customer"}}


def subscription(subscription_id: str, **changes: Any) -> dict[str, Any]:
    return {"id": subscription_id, "offerId": "MS-AZR-0145P", "friendlyName": "Azure", "status": "active", **changes}


def usage_record(customer_id: str, **changes: Any) -> dict[str, Any]:
    return {"id": customer_id, "name": "Contoso", "totalCost": 1.25, "currencyCode": "EUR", **changes}


def summary(**changes: Any) -> dict[str, Any]:
    return {
        "resourceId": SUBS[0],
        "billingStartDate": "2026-11-01T00:00:00-08:00",
        "billingEndDate": "2026-11-30T00:00:00-08:00",
        "totalCost": 22.861172,
        "currencyCode": "EUR",
        **changes,
    }


def usage(window_start: str, meter: str, **changes: Any) -> dict[str, Any]:
    day = window_start[:10]
    return {
        "usageStartTime": f"{day}T00:00:00+00:00",
        "usageEndTime": f"{day}T23:59:59+00:00",
        "resource": {"id": meter, "name": "Standard IO", "category": "Storage"},
        "quantity": 0.0416666666666666666667,
        "unit": "GB",
        "instanceData": {"resourceUri": f"/subscriptions/x/disks/{meter}", "tags": {"env": "prod"}},
        **changes,
    }


# -- what is checked ------------------------------------------------------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def assert_stored_or_quarantined(store, function: str, bad_text: str, stored_raws: set[str]) -> str:
    """The bad record is either stored exactly as received or in quarantine with a reason; returns which."""
    canonical = jsonutil.dumps(jsonutil.loads(bad_text), allow_nan=True)
    if canonical in stored_raws:
        return "stored"
    rows = [r for r in store.partition(tables.QUARANTINE, function) if r["rawSha256"] == _sha(canonical)]
    assert rows, f"neither stored nor quarantined: {bad_text[:200]}"
    for row in rows:  # one per page it came in (the utilization pages of each subscription hold it)
        assert row["reason"] and row["source"] and len(row["raw"]) <= QUARANTINE_RAW_CHARS
        assert row["rawLength"] == len(canonical)
    return "quarantined"


def _raws(store, table: str, partition: str | None = None) -> set[str]:
    rows = store.all_rows(table) if partition is None else store.partition(table, partition)
    return {r["raw"] for r in rows}


# -- utilization ----------------------------------------------------------------------------------------------

W1 = "2026-11-18T00:00:00Z"  # the first of the two daily windows a first run fetches at NOW
BAD_UTILIZATION = {
    "missing start": _json({k: v for k, v in usage(W1, "bad").items() if k != "usageStartTime"}),
    "null start": _json(usage(W1, "bad", usageStartTime=None)),
    "numeric start": _json(usage(W1, "bad", usageStartTime=20261118)),
    "naive start": _json(usage(W1, "bad", usageStartTime="2026-11-18T00:00:00")),
    "start before year 1 in UTC": _json(usage(W1, "bad", usageStartTime="0001-01-01T00:00:00+01:00")),
    "end after 9999 in UTC": _json(usage(W1, "bad", usageEndTime="9999-12-31T23:59:59-01:00")),
    "word for a time": _json(usage(W1, "bad", usageStartTime="yesterday")),
    "missing resource": _json({k: v for k, v in usage(W1, "bad").items() if k != "resource"}),
    "null resource": _json(usage(W1, "bad", resource=None)),
    "resource as text": _json(usage(W1, "bad", resource="Storage")),
    "resource without id": _json(usage(W1, "bad", resource={"name": "x"})),
    "numeric meter": _json(usage(W1, "bad", resource={"id": 7})),
    "empty meter": _json(usage(W1, "bad", resource={"id": ""})),
    "missing quantity": _json({k: v for k, v in usage(W1, "bad").items() if k != "quantity"}),
    "quantity as text": _json(usage(W1, "bad", quantity="1.5")),
    "quantity as boolean": _json(usage(W1, "bad", quantity=True)),
    "null quantity": _json(usage(W1, "bad", quantity=None)),
    "NaN quantity": _json(usage(W1, "bad")).replace('"quantity": 0.0416666666666666666667', '"quantity": NaN'),
    "Infinity quantity": _json(usage(W1, "bad")).replace('"quantity": 0.0416666666666666666667', '"quantity": 1e999'),
    "30-digit negative quantity": _json(usage(W1, "bad")).replace(
        '"quantity": 0.0416666666666666666667', '"quantity": -0.000000000000000000000000000001'
    ),
    "numeric unit": _json(usage(W1, "bad", unit=5)),
    "instanceData as text": _json(usage(W1, "bad", instanceData="vm1")),
    "numeric resourceUri": _json(usage(W1, "bad", instanceData={"resourceUri": 9})),
    "70,000-character tag": _json(usage(W1, "bad", instanceData={"tags": {"big": BIG_TAG}})),
    "200,000-character name": _json(usage(W1, "bad", resource={"id": "bad", "name": HUGE})),
    "lone surrogate": _json(usage(W1, "bad")).replace('"Standard IO"', '"Standard \\ud800 IO"'),
    "NUL in a name": _json(usage(W1, "bad")).replace('"Standard IO"', '"Standard \\u0000 IO"'),
    "unknown fields": _json(usage(W1, "bad", futureField={"nested": [1, 2, {"x": None}]})),
    "a JSON array": _json([usage(W1, "bad")]),
    "a JSON string": _json("usage"),
    "null": "null",
    "a number": "42",
    "infoFields as a list": _json(usage(W1, "bad", infoFields=["a"])),
    "attributes as text": _json(usage(W1, "bad", attributes="AzureUtilizationRecord")),
    "lower-case t and z": _json(usage(W1, "bad", usageStartTime="2026-11-18t00:00:00z")),
}


@pytest.mark.parametrize("variant", sorted(BAD_UTILIZATION))
def test_a_bad_utilization_record_never_blocks_its_window_or_the_watermark(httpserver, azurite, store, variant):
    standin = StandIn(httpserver)
    bad = BAD_UTILIZATION[variant]

    def pages(subscription_id: str, start: str) -> list[str]:
        if start == W1:
            return [_json(usage(start, "meter-a")), bad, _json(usage(start, "meter-b"))]
        return [_json(usage(start, "meter-c"))]

    standin.utilization = pages
    run = run_job("fetch_utilization", standin.settings(azurite, store.prefix), store, NOW)
    assert run.status == "succeeded", (run.errors, run.notes)
    partition = subscription_key(CUSTOMER, SUBS[0])
    stored = _raws(store, tables.UTILIZATION, partition)
    goods = {jsonutil.dumps(jsonutil.loads(_json(usage(W1, m)))) for m in ("meter-a", "meter-b")}
    assert goods <= stored and any('"meter-c"' in raw for raw in stored)
    assert_stored_or_quarantined(store, "fetch_utilization", bad, stored)
    state = store.get(tables.SYNC_STATE, tables.UTILIZATION_STATE, partition)
    assert state["doneThrough"] == "2026-11-20T00:00:00Z"  # the window with the bad record is complete


# -- usage records -----------------------------------------------------------------------------------------------

BAD_USAGE_RECORDS = {
    "no id": _json({"name": "nameless", "totalCost": 5}),
    "numeric id": _json(usage_record(CUSTOMER, id=5, resourceId=None)),
    "empty id": _json(usage_record(CUSTOMER, id="", resourceId="")),
    "cost as a word": _json(usage_record(OTHER_CUSTOMER, totalCost="lots")),
    "cost as boolean": _json(usage_record(OTHER_CUSTOMER, totalCost=False)),
    "NaN cost": _json(usage_record(OTHER_CUSTOMER)).replace('"totalCost": 1.25', '"totalCost": NaN'),
    "usd cost as text": _json(usage_record(OTHER_CUSTOMER, usdTotalCost="12")),
    "budget as text": _json(usage_record(OTHER_CUSTOMER, budget="20")),
    "budget as a list": _json(usage_record(OTHER_CUSTOMER, budget=[20])),
    "modified date as a word": _json(usage_record(OTHER_CUSTOMER, lastModifiedDate="recently")),
    "modified before year 1 in UTC": _json(usage_record(OTHER_CUSTOMER, lastModifiedDate="0001-01-01T00:00:00+01:00")),
    "numeric name": _json(usage_record(OTHER_CUSTOMER, name=12)),
    "currency as a list": _json(usage_record(OTHER_CUSTOMER, currencyCode=["EUR"])),
    "percentUsed NaN as text": _json(usage_record(OTHER_CUSTOMER, percentUsed="NaN")),
    "isUpgraded as text": _json(usage_record(OTHER_CUSTOMER, isUpgraded="yes")),
    "200,000-character name": _json(usage_record(OTHER_CUSTOMER, name=HUGE)),
    "lone surrogate in the name": _json(usage_record(OTHER_CUSTOMER)).replace('"Contoso"', '"Cont\\udfffoso"'),
    "a JSON array": _json([usage_record(OTHER_CUSTOMER)]),
    "null": "null",
    "unknown nested fields": _json(usage_record(OTHER_CUSTOMER, extra={"a": [{"b": 1.000000000000000000001}]})),
    "30-digit cost": _json(usage_record(OTHER_CUSTOMER)).replace(
        '"totalCost": 1.25', '"totalCost": 123456789012345.123456789012345'
    ),
    "attributes as text": _json(usage_record(OTHER_CUSTOMER, attributes="x")),
}


@pytest.mark.parametrize("variant", sorted(BAD_USAGE_RECORDS))
def test_a_bad_usage_record_never_blocks_the_pages_after_it(httpserver, azurite, store, variant):
    standin = StandIn(httpserver)
    bad = BAD_USAGE_RECORDS[variant]
    third = "c0000000-0000-0000-0000-000000000003"
    standin.usage_records_pages = [[_json(usage_record(CUSTOMER)), bad], [_json(usage_record(third))]]
    run = run_job("fetch_usage_records", standin.settings(azurite, store.prefix), store, NOW)
    assert run.status == "succeeded", run.errors
    latest = _raws(store, tables.USAGE_RECORDS, tables.LATEST)
    assert {jsonutil.dumps(usage_record(CUSTOMER)), jsonutil.dumps(usage_record(third))} <= latest
    assert store.get(tables.USAGE_RECORDS, "2026-11", customer_key(third)) is not None
    assert_stored_or_quarantined(store, "fetch_usage_records", bad, latest)


# -- usage summaries ---------------------------------------------------------------------------------------------

BAD_SUMMARIES = {
    "a JSON array": _json([summary()]),
    "a collection of two": collection([_json(summary()), _json(summary())]),
    "an empty collection": collection([]),
    "no billing start": _json({k: v for k, v in summary().items() if k != "billingStartDate"}),
    "billing start as a word": _json(summary(billingStartDate="soon")),
    "billing end after 9999 in UTC": _json(summary(billingEndDate="9999-12-31T23:59:59-01:00")),
    "cost as text": _json(summary(totalCost="22.86")),
    "numeric currency": _json(summary(currencyCode=978)),
    "links as text": _json(summary(links="self")),
    "a JSON string": _json("summary"),
    "70,000-character field": _json(summary(note=BIG_TAG)),
    "lone surrogate": _json(summary(resourceName="Azure")).replace('"Azure"', '"Az\\ud83dure"'),
}


@pytest.mark.parametrize("variant", sorted(BAD_SUMMARIES))
def test_a_bad_usage_summary_is_quarantined_and_the_other_subscriptions_stored(httpserver, azurite, store, variant):
    standin = StandIn(httpserver)
    bad = BAD_SUMMARIES[variant]
    standin.summaries[SUBS[1]] = bad
    run = run_job("fetch_usage_summary", standin.settings(azurite, store.prefix), store, NOW)
    assert run.status == "succeeded", run.errors
    for good in (SUBS[0], SUBS[2]):
        row = store.get(tables.USAGE_SUMMARIES, subscription_key(CUSTOMER, good), tables.LATEST)
        assert row["raw"] == jsonutil.dumps(summary())
    stored = _raws(store, tables.USAGE_SUMMARIES, subscription_key(CUSTOMER, SUBS[1]))
    assert assert_stored_or_quarantined(store, "fetch_usage_summary", bad, stored) == "quarantined"


# -- the inventory ------------------------------------------------------------------------------------------------

BAD_SUBSCRIPTIONS = {
    "no id": _json({"offerId": "MS-AZR-0145P"}),
    "numeric id": _json(subscription(7)),  # type: ignore[arg-type]  # deliberately not a string: the bad input
    "a JSON string": _json("subscription"),
    "numeric offer": _json(subscription("50000000-0000-0000-0000-000000000009", offerId=145)),
    "an unknown status": _json(subscription("50000000-0000-0000-0000-000000000009", status="Frozen")),
    "200,000-character name": _json(subscription("50000000-0000-0000-0000-000000000009", friendlyName=HUGE)),
    "lone surrogate": _json(subscription("50000000-0000-0000-0000-000000000009", friendlyName="A")).replace(
        '"A"', '"\\udc00"'
    ),
}
BAD_CUSTOMERS = {
    "no id": _json({"companyProfile": {"companyName": "Nameless"}}),
    "numeric id": _json({"id": 3}),
    "profile as text": _json({"id": OTHER_CUSTOMER, "companyProfile": "Fabrikam"}),
    "200,000-character company name": _json(customer(OTHER_CUSTOMER, HUGE)),
    "lone surrogate in the company name": _json(customer(OTHER_CUSTOMER, "F")).replace('"F"', '"\\ud800"'),
}


@pytest.mark.parametrize("variant", sorted(BAD_SUBSCRIPTIONS))
def test_a_bad_subscription_is_kept_apart_and_its_neighbours_are_synced(httpserver, azurite, store, variant):
    standin = StandIn(httpserver)
    bad = BAD_SUBSCRIPTIONS[variant]
    standin.subscriptions[CUSTOMER] = [_json(subscription(SUBS[0])), bad, _json(subscription(SUBS[2]))]
    run = run_job("fetch_usage_summary", standin.settings(azurite, store.prefix), store, NOW)
    assert run.status == "succeeded", run.errors
    stored = _raws(store, tables.SUBSCRIPTIONS, customer_key(CUSTOMER))
    assert {jsonutil.dumps(subscription(SUBS[0])), jsonutil.dumps(subscription(SUBS[2]))} <= stored
    assert_stored_or_quarantined(store, "fetch_usage_summary", bad, stored)
    for good in (SUBS[0], SUBS[2]):
        assert store.get(tables.USAGE_SUMMARIES, subscription_key(CUSTOMER, good), tables.LATEST) is not None


@pytest.mark.parametrize("variant", sorted(BAD_CUSTOMERS))
def test_a_bad_customer_is_kept_apart_and_the_others_are_synced(httpserver, azurite, store, variant):
    standin = StandIn(httpserver)
    bad = BAD_CUSTOMERS[variant]
    third = "c0000000-0000-0000-0000-000000000003"
    standin.customers = [_json(customer(CUSTOMER, "Contoso")), bad, _json(customer(third, "Tailspin"))]
    standin.subscriptions[third] = [_json(subscription("60000000-0000-0000-0000-000000000001"))]
    standin.subscriptions[OTHER_CUSTOMER] = [_json(subscription("60000000-0000-0000-0000-000000000002"))]
    run = run_job("fetch_usage_summary", standin.settings(azurite, store.prefix), store, NOW)
    assert run.status == "succeeded", run.errors
    customers = _raws(store, tables.CUSTOMERS)
    assert {jsonutil.dumps(customer(CUSTOMER, "Contoso")), jsonutil.dumps(customer(third, "Tailspin"))} <= customers
    assert_stored_or_quarantined(store, "fetch_usage_summary", bad, customers)
    assert store.get(tables.USAGE_SUMMARIES, subscription_key(third, "60000000-0000-0000-0000-000000000001"), "latest")


# -- envelope objects sent as null: stored as received, never quarantined (issue 20) --------------------------------


def _null_utilization(standin: StandIn) -> tuple[str, str]:
    record = _json(usage(W1, "meter-n", attributes=None, infoFields=None, instanceData=None))
    standin.utilization = lambda sid, start: [record] if start == W1 else [_json(usage(start, "meter-c"))]
    return record, tables.UTILIZATION


def _null_usage_record(standin: StandIn) -> tuple[str, str]:
    record = _json(usage_record(CUSTOMER, attributes=None, budget=None, customerSpendingBudget=None))
    standin.usage_records_pages = [[record]]
    return record, tables.USAGE_RECORDS


def _null_summary(standin: StandIn) -> tuple[str, str]:
    record = _json(summary(attributes=None, links=None))
    standin.summaries = {s: record for s in SUBS}
    return record, tables.USAGE_SUMMARIES


@pytest.mark.parametrize(
    ("function", "serve"),
    [
        ("fetch_utilization", _null_utilization),
        ("fetch_usage_records", _null_usage_record),
        ("fetch_usage_summary", _null_summary),
    ],
)
def test_a_record_whose_envelope_objects_are_null_is_stored_as_received(httpserver, azurite, store, function, serve):
    standin = StandIn(httpserver)
    record, table = serve(standin)
    run = run_job(function, standin.settings(azurite, store.prefix), store, NOW)
    assert run.status == "succeeded" and run.counters["quarantined"] == 0, run.errors
    assert assert_stored_or_quarantined(store, function, record, _raws(store, table)) == "stored"
