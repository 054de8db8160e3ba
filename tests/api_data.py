"""Rows for the API tests, written exactly as the timer functions write them (docs/architecture.md, Tables).

Raw JSON text by ``shared.jsonutil.dumps`` (Decimals keep every digit), keys by ``shared.keys.make_key``,
customer and subscription ids lower-cased. Also a small way to call the API in-process.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from shared import jsonutil
from shared.api import Request, Response, handle
from shared.keys import digest, make_key
from shared.settings import Settings
from shared.table_store import TableStore
from shared.timeutil import floor_to, utc_text

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


# -- rows -----------------------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def write_usage_records(store: TableStore, records: Iterable[Mapping[str, Any]], *, month: str = "2024-05") -> None:
    """Rows in ``latest`` and in the billing month, as fetch_usage_records writes them."""
    rows = []
    for record in records:
        customer_id = record["id"].lower()
        properties = {
            "customerId": customer_id,
            "billingMonth": month,
            "raw": jsonutil.dumps(record),
            "totalCost": _text(record.get("totalCost")),
            "usdTotalCost": _text(record.get("usdTotalCost")),
            "currencyCode": record.get("currencyCode"),
            "currencyLocale": record.get("currencyLocale"),
            "name": record.get("name") or record.get("resourceName"),
            "isUpgraded": record.get("isUpgraded"),
            "lastModifiedDate": record.get("lastModifiedDate"),
        }
        key = make_key(customer_id)
        rows.append({"PartitionKey": "latest", "RowKey": key, **properties})
        rows.append({"PartitionKey": month, "RowKey": key, **properties})
    store.upsert("UsageRecords", rows)


def write_usage_summary(
    store: TableStore, customer_id: str, subscription_id: str, record: Mapping[str, Any], *, latest: bool = True
) -> None:
    """The ``latest`` row (optionally) and the ``period-YYYY-MM-DD`` row of one summary."""
    customer_id, subscription_id = customer_id.lower(), subscription_id.lower()
    properties = {
        "customerId": customer_id,
        "subscriptionId": subscription_id,
        "raw": jsonutil.dumps(record),
        "billingStartDate": record["billingStartDate"],
        "billingEndDate": record["billingEndDate"],
        "totalCost": _text(record.get("totalCost")),
        "usdTotalCost": _text(record.get("usdTotalCost")),
        "currencyCode": record.get("currencyCode"),
        "currencyLocale": record.get("currencyLocale"),
        "lastModifiedDate": record.get("lastModifiedDate"),
    }
    partition = make_key(customer_id, subscription_id)
    keys = ["period-" + record["billingStartDate"][:10]] + (["latest"] if latest else [])
    store.upsert("UsageSummaries", [{"PartitionKey": partition, "RowKey": k, **properties} for k in keys])


def utilization_row(
    customer_id: str, subscription_id: str, record: Mapping[str, Any], window_start: datetime, window_hours: int = 24
) -> dict[str, Any]:
    """One Utilization row: RowKey ``{usageStartUtc}|{window:%Y%m%dT%H%MZ}|{identity}``."""
    customer_id, subscription_id = customer_id.lower(), subscription_id.lower()
    usage_start = datetime.fromisoformat(record["usageStartTime"])
    usage_end = datetime.fromisoformat(record["usageEndTime"])
    meter = record["resource"]["id"]
    uri = (record.get("instanceData") or {}).get("resourceUri")
    start_text = utc_text(usage_start)
    identity = digest(meter.lower(), (uri or "").lower(), start_text, utc_text(usage_end))
    return {
        "PartitionKey": make_key(customer_id, subscription_id),
        "RowKey": f"{start_text}|{window_start.strftime('%Y%m%dT%H%MZ')}|{identity}",
        "customerId": customer_id,
        "subscriptionId": subscription_id,
        "raw": jsonutil.dumps(record),
        "usageStartUtc": start_text,
        "usageEndUtc": utc_text(usage_end),
        "windowStart": utc_text(window_start),
        "windowEnd": utc_text(window_start + timedelta(hours=window_hours)),
        "meterId": meter,
        "resourceUri": uri,
        "quantity": str(record["quantity"]),
        "unit": record.get("unit"),
    }


def write_utilization(
    store: TableStore, customer_id: str, subscription_id: str, records: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Rows of records reported in the aligned day after their usage started; returns the rows."""
    rows = []
    for record in records:
        usage_start = datetime.fromisoformat(record["usageStartTime"])
        window = floor_to(usage_start, 24) + timedelta(days=1)
        rows.append(utilization_row(customer_id, subscription_id, record, window))
    store.upsert("Utilization", rows)
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
    customer_id, subscription_id = customer_id.lower(), subscription_id.lower()
    store.upsert_one(
        "Customers",
        {
            "PartitionKey": "customer",
            "RowKey": make_key(customer_id),
            "customerId": customer_id,
            "companyName": "Contoso",
            "relationship": "ok",
            "raw": jsonutil.dumps({"id": customer_id}),
        },
    )
    store.upsert_one(
        "Subscriptions",
        {
            "PartitionKey": make_key(customer_id),
            "RowKey": make_key(subscription_id),
            "customerId": customer_id,
            "subscriptionId": subscription_id,
            "offerId": offer_id,
            "offerName": "Microsoft Azure",
            "friendlyName": "Pay-as-you-go",
            "status": "active",
            "billingType": "usage",
            "kind": "legacy" if offer_id == "MS-AZR-0145P" else "azure_plan",
            "raw": jsonutil.dumps({"id": subscription_id, "offerId": offer_id}),
        },
    )


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
    """A Runs row as SyncRun writes it (RowKey = 10**13 - start epoch ms, newest first)."""
    if finished is None and status != "running":
        finished = started + timedelta(minutes=2)
    store.upsert_one(
        "Runs",
        {
            "PartitionKey": function,
            "RowKey": f"{10**13 - int(started.timestamp() * 1000):013d}",
            "function": function,
            "runId": f"run-{next(_counter)}",
            "correlationId": "c0ffee00-0000-0000-0000-000000000000",
            "startedAt": started.isoformat(),
            "finishedAt": finished.isoformat() if finished else None,
            "status": status,
            "rows": rows,
            "pages": 1,
            "calls": 1,
            "retries": 0,
            "done": 1,
            "pending": 0,
            "quarantined": 0,
            "errorCount": len(errors or []),
            "errors": jsonutil.dumps(errors or []),
            "skipped": "[]",
        },
    )


# -- calling the API in-process ------------------------------------------------------------------------------


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
) -> Response:
    """Call the handler for ``/api/...`` as the function would."""
    request = Request.from_target(method, target, headers=headers)
    return handle(request, store, settings or settings_for(store), now)


def sub_path(customer_id: str = CUSTOMER, subscription_id: str = SUBSCRIPTION) -> str:
    """``/api/v1/customers/{c}/subscriptions/{s}``."""
    return f"/api/v1/customers/{customer_id}/subscriptions/{subscription_id}"
