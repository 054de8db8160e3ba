"""Records as Partner Center sends them, stored through the timer functions' own row builders (``shared.tables``),
and a small way to call the API in-process.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from shared import jsonutil, tables
from shared.api import Request, Response, handle
from shared.api.messages import strip_prefix
from shared.settings import Settings
from shared.table_store import TableStore
from shared.timeutil import floor_to

CUSTOMER = "A0A0A0A0-BBBB-CCCC-DDDD-E1E1E1E1E1E1"  # upper case on purpose: the API lower-cases ids
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
OTHER_SUBSCRIPTION = "66666666-7777-8888-9999-000000000000"
UNKNOWN_CUSTOMER = "ffffffff-ffff-ffff-ffff-ffffffffffff"
PACIFIC = timezone(timedelta(hours=-8))
DAY = datetime(2024, 3, 1, tzinfo=PACIFIC)  # 2024-03-01T08:00:00Z: first usage day of the utilization data
MONEY = Decimal("120.5682999999995904716")
QUANTITY = Decimal("0.0416666666666666666667")
_counter = itertools.count(1)


# -- records as Partner Center sends them -------------------------------------------------------------------


def usage_record(customer_id: str, *, total: Decimal = MONEY, name: str = "Modern Azure Customer SE") -> dict:
    """A CustomerMonthlyUsageRecord (Azure plan shape)."""
    return {
        "budget": {"amount": 20, "attributes": {"objectType": "SpendingBudget"}},
        "percentUsed": Decimal("602.84"),
        "isUpgraded": True,
        "resourceId": customer_id,
        "id": customer_id,
        "resourceName": name,
        "name": name,
        "totalCost": total,
        "currencyCode": "SEK",
        "usdTotalCost": Decimal("12.39999999999999985235"),
        "lastModifiedDate": "2019-09-17T17:08:11.1433333+00:00",
        "attributes": {"objectType": "CustomerMonthlyUsageRecord"},
    }


def usage_summary(*, start: str = "2019-08-28T00:00:00-07:00", total: Decimal = Decimal("22.861172")) -> dict:
    """A SubscriptionUsageSummary (legacy shape, as documented)."""
    return {
        "resourceId": SUBSCRIPTION.upper(),
        "resourceName": "Microsoft Azure",
        "billingStartDate": start,
        "billingEndDate": "2019-09-27T00:00:00-07:00",
        "totalCost": total,
        "currencyLocale": "fr-FR",
        "lastModifiedDate": "2019-09-01T23:04:41.193+00:00",
        "links": {"self": {"uri": "/customers/x/subscriptions/y/usagesummary", "method": "GET", "headers": []}},
        "attributes": {"objectType": "SubscriptionUsageSummary"},
    }


def utilization_record(
    usage_start: datetime,
    *,
    meter: str = "8767aeb3-6909-4db2-9927-3f51e9e9085e",
    quantity: Decimal = QUANTITY,
    resource_uri: str | None = None,
    hours: int = 24,
) -> dict:
    """An AzureUtilizationRecord with instanceData, times written in Pacific time as upstream often does."""
    start = usage_start.astimezone(PACIFIC)
    uri = resource_uri or f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/vm/vm1"
    return {
        "usageStartTime": start.isoformat(),
        "usageEndTime": (start + timedelta(hours=hours)).isoformat(),
        "resource": {
            "id": meter,
            "name": "Standard IO - Page Blob/Disk (GB)",
            "category": "Storage",
            "subcategory": "Locally Redundant",
            "region": "West Europe",
        },
        "quantity": quantity,
        "unit": "GB",
        "infoFields": {},
        "instanceData": {
            "resourceUri": uri,
            "location": "westeurope",
            "partNumber": "N9H-00402",
            "orderNumber": "ord-1",
            "tags": {"env": '=HYPERLINK("x")'},
            "additionalInfo": {},
        },
        "attributes": {"objectType": "AzureUtilizationRecord"},
    }


# -- rows, by the timer functions' own row builders (shared.tables) -------------------------------------------


def write_usage_records(store: TableStore, records: Iterable[Mapping[str, Any]], *, month: str = "2024-05") -> None:
    """Rows in ``latest`` and in the billing month, as fetch_usage_records writes them."""
    store.upsert(tables.USAGE_RECORDS, [row for record in records for row in tables.usage_record_rows(record, month)])


def write_usage_summary(
    store: TableStore, customer_id: str, subscription_id: str, record: Mapping[str, Any], *, latest: bool = True
) -> None:
    """The ``latest`` row (optionally) and the ``period-YYYY-MM-DD`` row of one summary."""
    store.upsert(tables.USAGE_SUMMARIES, tables.usage_summary_rows(customer_id, subscription_id, record, latest=latest))


def write_utilization(
    store: TableStore, customer_id: str, subscription_id: str, records: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Rows of records reported in the aligned day after their usage started; returns the rows."""
    rows = []
    for record in records:
        window = floor_to(datetime.fromisoformat(record["usageStartTime"]), 24) + timedelta(days=1)
        rows.append(tables.utilization_row(customer_id, subscription_id, record, window, window + timedelta(days=1)))
    store.upsert(tables.UTILIZATION, rows)
    return rows


def many_utilization_records(count: int, *, first_day: datetime, meters: int = 25) -> list[dict]:
    """``count`` daily records: ``meters`` meters a day from ``first_day`` on, quantities with long digits."""
    records = []
    for index in range(count):
        day, meter = divmod(index, meters)
        quantity = Decimal(f"{index}.{index:04d}000000000000000001")
        records.append(
            utilization_record(
                first_day + timedelta(days=day),
                meter=f"00000000-0000-0000-0000-{meter:012d}",
                quantity=quantity,
                resource_uri=f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/disks/d{meter}",
            )
        )
    return records


def write_subscription(
    store: TableStore, customer_id: str, subscription_id: str, *, offer_id: str = "MS-AZR-0145P"
) -> None:
    """The inventory rows of a customer and one of its subscriptions."""
    customer = {"id": customer_id.lower(), "companyProfile": {"companyName": "Contoso"}}
    subscription = {
        "id": subscription_id,
        "offerId": offer_id,
        "offerName": "Microsoft Azure",
        "friendlyName": "Pay-as-you-go",
        "status": "active",
        "billingType": "usage",
    }
    store.upsert(tables.CUSTOMERS, [tables.customer_row(customer_id, customer)])
    store.upsert(tables.SUBSCRIPTIONS, [tables.subscription_row(customer_id, subscription)])


def write_run(
    store: TableStore,
    function: str,
    *,
    started: datetime,
    status: str = "succeeded",
    finished: datetime | None = None,
    rows: int = 10,
    errors: list[dict[str, Any]] | None = None,
) -> None:
    """A Runs row as SyncRun writes it."""
    if finished is None and status != "running":
        finished = started + timedelta(minutes=2)
    counts = {"rows": rows, "pages": 1, "calls": 1, "retries": 0, "done": 1, "pending": 0, "quarantined": 0}
    row = tables.run_row(
        function=function,
        run_id=f"run-{next(_counter)}",
        correlation_id="c0ffee00-0000-0000-0000-000000000000",
        started_at=started,
        finished_at=finished,
        status=tables.RunStatus(status),
        unit="subscriptions",
        counts=counts,
        errors=errors or [],
        skipped=[],
    )
    store.upsert(tables.RUNS, [row])


# -- calling the API in-process ------------------------------------------------------------------------------


class ApiResponse(Response):
    """A response with its JSON body parsed, every digit kept."""

    def json(self) -> Any:
        return jsonutil.loads(self.body)


def request_for(method: str, target: str, *, headers: Mapping[str, str] | None = None) -> Request:
    """The request for a request target such as ``/api/v1/customers/usagerecords?billing_month=2024-05``."""
    parts = urlsplit(target)
    path = strip_prefix(unquote(parts.path), "api")
    return Request.build(method, path, query=parse_qsl(parts.query, keep_blank_values=True), headers=headers)


def settings_for(store: TableStore, **overrides: Any) -> Settings:
    """Settings of the store's tables."""
    return Settings(table_prefix=store.prefix, **overrides)


def get(
    store: TableStore,
    target: str,
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    settings: Settings | None = None,
    now: datetime | None = None,
) -> ApiResponse:
    """Call the handler for ``/api/...`` as the function would."""
    response = handle(request_for(method, target, headers=headers), store, settings or settings_for(store), now)
    return ApiResponse(status=response.status, headers=response.headers, body=response.body)


def sub_path(customer_id: str = CUSTOMER, subscription_id: str = SUBSCRIPTION) -> str:
    """``/api/v1/customers/{c}/subscriptions/{s}``."""
    return f"/api/v1/customers/{customer_id}/subscriptions/{subscription_id}"


ENTITLEMENT = "7b1f6a37-4c1d-4e59-9d5a-3a8f2c9e0b11"


def rated_line(customer_id: str, entitlement_id: str, day: str, total: str, meter: str = "D2s v3") -> str:
    """One line item of the Graph billing export, as its JSON text."""
    return jsonutil.dumps(
        {
            "CustomerId": customer_id,
            "CustomerName": "Modern Azure Customer SE",
            "EntitlementId": entitlement_id,
            "EntitlementDescription": "Production",
            "SubscriptionId": "5c8b4c3e-6a0a-4b9e-9d0d-0a9b3f5e7c21",
            "UsageDate": f"{day}T00:00:00Z",
            "MeterName": meter,
            "BillingCurrency": "EUR",
            "BillingPreTaxTotal": Decimal(total),
            "PricingCurrency": "USD",
            "PricingPreTaxTotal": Decimal(total) * Decimal("1.0843"),
        }
    )


def write_rated_usage(store: TableStore, texts: Iterable[str], *, now: datetime, currency: str = "EUR") -> None:
    """Store line items the way fetch_rated_usage does (one snapshot of the current period)."""
    from shared.graph.blobs import BlobLine
    from shared.rated.ingest import Ingest, Snapshot
    from shared.sync.runs import SyncRun

    lines = [BlobLine(text, "part-00000.json.gz", n) for n, text in enumerate(texts, start=1)]
    with SyncRun(store, "fetch_rated_usage", unit="exports") as run:
        Ingest(store, run, Snapshot("current", currency, "etag-1", now.isoformat()), now=now).ingest(lines)


# -- the OpenAPI document, checked against real answers -------------------------------------------------------


def _resolve(node: Any, document: Mapping[str, Any]) -> Any:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = document["components"][section][name]
    return node


def check(response: ApiResponse, template: str) -> None:
    """The status is documented for the operation and the body matches the documented schema."""
    import jsonschema

    from shared.api.openapi import document

    doc = document()
    responses = doc["paths"][template]["get"]["responses"]
    assert str(response.status) in responses, f"{template}: undocumented status {response.status}"
    spec = _resolve(responses[str(response.status)], doc)
    for header in spec.get("headers", {}):
        if header == "ETag" or (header == "Allow" and response.status == 405):
            assert header in response.headers
    if response.status == 304:
        assert response.body == b""
        return
    media = response.headers["Content-Type"].split(";")[0]
    assert media in spec["content"], f"{template}: undocumented media type {media}"
    if media == "application/json":
        schema = {**spec["content"][media]["schema"], "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(response.json())
