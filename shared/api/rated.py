"""The Azure plan daily cost routes: what the Graph billing export says each customer's Azure subscriptions cost.

Paths sit under the customer, beside Partner Center's own shapes: Partner Center calls an Azure subscription
under an Azure plan an *Azure entitlement* (``/customers/{c}/subscriptions/{plan}/azureEntitlements``), and its
id is the Azure subscription GUID a customer sees in the Azure portal. A portal knows that GUID without knowing
the plan's Partner Center subscription id, so the routes take it directly:

- ``customers/{c}/dailycost``: the customer's cost per day, over all its Azure subscriptions;
- ``customers/{c}/azureentitlements``: its Azure subscriptions with rated usage, what is stored for each;
- ``customers/{c}/azureentitlements/{e}/dailycost``: one Azure subscription's cost per day;
- ``customers/{c}/azureentitlements/{e}/lineitems``: its line items as the export holds them, paged.

Every answer is read through the pointer rows (``RatedSlices``): lines are served only in the versions the
pointer names, so a page never mixes two snapshots; a continuation token remembers the pointers it was minted
under and names no page once a newer snapshot replaced them (409, start again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from shared import jsonutil
from shared.api import continuation, params, queries, rendering
from shared.api.errors import CODE_NO_USAGE_DATA, ApiError, bad_request, not_found
from shared.api.messages import Request
from shared.table_store import TableStore
from shared.tables import (
    RATED_CUSTOMER_DAYS,
    RATED_LINES,
    RATED_SLICES,
    RATED_USAGE_STATE,
    SYNC_STATE,
    customer_key,
    rated_lines_partition,
    slice_days,
)

CODE_SNAPSHOT_REPLACED = 900410
LINE_ITEM_COLUMNS = (
    "UsageDate",
    "CustomerId",
    "CustomerName",
    "EntitlementId",
    "EntitlementDescription",
    "SubscriptionId",
    "MeterCategory",
    "MeterSubCategory",
    "MeterName",
    "MeterId",
    "MeterRegion",
    "ResourceGroup",
    "ResourceURI",
    "ResourceLocation",
    "ConsumedService",
    "ChargeType",
    "Unit",
    "Quantity",
    "UnitPrice",
    "EffectiveUnitPrice",
    "BillingPreTaxTotal",
    "BillingCurrency",
    "PricingPreTaxTotal",
    "PricingCurrency",
    "PCToBCExchangeRate",
    "Tier2MpnId",
    "Tags",
    "AdditionalInfo",
)
DAILY_COLUMNS = ("usageDate", "currencyCode", "billingPreTaxTotal", "lineCount", "subscriptionCount")


@dataclass(frozen=True)
class DayRange:
    """Inclusive UTC days."""

    first: date
    last: date

    def touches(self, period: Any) -> bool:
        """True when the month ``period`` (``YYYY-MM``) overlaps the range."""
        return isinstance(period, str) and self.first.isoformat()[:7] <= period <= self.last.isoformat()[:7]

    def holds(self, day: str) -> bool:
        """True when ``day`` (YYYY-MM-DD) is in the range."""
        return self.first.isoformat() <= day <= self.last.isoformat()


def _day(value: str, name: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise bad_request(f"Parameter '{name}' {value[:40]!r} is not a date written YYYY-MM-DD.") from None


def day_range(request: Request, now: datetime) -> DayRange:
    """``from`` and ``to`` (inclusive, YYYY-MM-DD); by default the current UTC month to today.

    A range whose end is before its start holds nothing (an empty answer, as the utilization route). No range is
    too long: a read costs one query of the customer's pointer rows, whatever the range.
    """
    today = now.astimezone(timezone.utc).date()
    first_text, last_text = params.single(request, "from"), params.single(request, "to")
    first = today.replace(day=1) if first_text is None else _day(first_text, "from")
    last = today if last_text is None else _day(last_text, "to")
    if first_text is None and last_text is not None:
        first = last.replace(day=1)
    return DayRange(first, last)


# -- reads ---------------------------------------------------------------------------------------------------


def _pointers(store: TableStore, customer_id: str, entitlement_id: str | None = None) -> list[dict[str, Any]]:
    """The pointer rows of a customer (or of one of its Azure subscriptions): one query, whatever the range."""
    rows = store.partition(RATED_SLICES, customer_key(customer_id))
    return [row for row in rows if entitlement_id is None or row.get("entitlementId") == entitlement_id]


def _touching(rows: Iterable[dict[str, Any]], days: DayRange) -> list[dict[str, Any]]:
    """The rows of the months a range touches."""
    return [row for row in rows if days.touches(row.get("period"))]


def snapshots(store: TableStore, currencies: Iterable[str]) -> list[dict[str, Any]]:
    """The export streams of these currencies: which snapshot is stored and when it was last checked."""
    wanted = {c.upper() for c in currencies}
    fields = ("billingPeriod", "currencyCode", "snapshotETag", "snapshotCreatedAt", "ingestedAt", "checkedAt")
    out = []
    for row in store.partition(SYNC_STATE, RATED_USAGE_STATE):
        if str(row.get("currencyCode", "")).upper() in wanted:
            out.append({name: row.get(name) for name in fields})
    return sorted(out, key=lambda s: (str(s["currencyCode"]), str(s["billingPeriod"])))


def _period_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "period": row.get("period"),
        "currencyCode": row.get("currencyCode"),
        "lineCount": row.get("lineCount"),
        "billingPreTaxTotal": Decimal(str(row.get("billingPreTaxTotal") or "0")),
        "storedAt": row.get("storedAt"),
        "snapshotETag": row.get("snapshotETag"),
        "snapshotCreatedAt": row.get("snapshotCreatedAt"),
    }


def _names(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "entitlementId": row.get("entitlementId"),
        "entitlementDescription": row.get("entitlementDescription"),
        "subscriptionId": row.get("subscriptionId"),
        "tier2MpnId": row.get("tier2MpnId") or None,
    }


def nothing_stored(customer_id: str, entitlement_id: str | None = None) -> ApiError:
    """The 404 of a customer or Azure subscription without stored rated usage."""
    subject = f"Azure subscription {entitlement_id} of customer {customer_id}" if entitlement_id else customer_id
    return not_found(
        f"No Azure plan rated usage is stored for {subject}. It appears after fetch_rated_usage stores an export "
        "that holds it (usage shows about a day after it happens); legacy MS-AZR-0145P subscriptions are served "
        "by the utilization route instead.",
        CODE_NO_USAGE_DATA,
    )


def _answer(body: dict[str, Any]) -> bytes:
    return jsonutil.dumps(body).encode("utf-8")


def _daily_item(day: str, currency: str, view: Mapping[str, Any], subscriptions: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "usageDate": day,
        "currencyCode": currency,
        "billingPreTaxTotal": Decimal(str(view.get("billingPreTaxTotal", "0"))),
        "lineCount": view.get("lines"),
    }
    if subscriptions is not None:
        item["subscriptionCount"] = subscriptions
    pricing = view.get("pricingPreTaxTotal")
    if isinstance(pricing, dict):
        item["pricingPreTaxTotals"] = [
            {"currencyCode": code or None, "amount": Decimal(str(amount))} for code, amount in pricing.items()
        ]
    return item


def entitlement_daily_cost(
    store: TableStore, customer_id: str, entitlement_id: str, days: DayRange
) -> tuple[bytes, list[str], datetime | None]:
    """One Azure subscription's cost per day (JSON), its items' JSON for CSV, and when it was stored."""
    pointers = _pointers(store, customer_id, entitlement_id)
    rows = [row for row in _touching(pointers, days) if slice_days(row)]
    if not rows and not pointers:
        raise nothing_stored(customer_id, entitlement_id)
    items = []
    for row in sorted(rows, key=lambda r: (str(r["period"]), str(r["currencyCode"]))):
        for day, view in slice_days(row).items():
            if days.holds(day):
                items.append(_daily_item(day, str(row["currencyCode"]), view))
    items.sort(key=lambda i: (i["usageDate"], i["currencyCode"]))
    path = f"{rendering.customer_path(customer_id)}/azureentitlements/{entitlement_id}"
    body = {
        "customerId": customer_id,
        **(_names(rows[0]) if rows else {"entitlementId": entitlement_id}),
        "customerName": rows[0].get("customerName") if rows else None,
        "from": days.first.isoformat(),
        "to": days.last.isoformat(),
        "totalCount": len(items),
        "items": items,
        "periods": [_period_view(row) for row in rows],
        "snapshots": snapshots(store, {str(row["currencyCode"]) for row in rows}),
        "links": _links(path, days),
        "attributes": {"objectType": "DailyCost"},
    }
    return _answer(body), [jsonutil.dumps(i) for i in items], _stored(rows)


def customer_daily_cost(
    store: TableStore, customer_id: str, days: DayRange
) -> tuple[bytes, list[str], datetime | None]:
    """A customer's cost per day over all its Azure subscriptions."""
    rows = [
        row for row in store.partition(RATED_CUSTOMER_DAYS, customer_key(customer_id)) if days.touches(row["period"])
    ]
    pointers = _pointers(store, customer_id)
    if not rows and not pointers:
        raise nothing_stored(customer_id)
    items = []
    for row in rows:
        for day, view in slice_days(row).items():
            if days.holds(day):
                items.append(_daily_item(day, str(row["currencyCode"]), view, int(view.get("subscriptions", 0))))
    items.sort(key=lambda i: (i["usageDate"], i["currencyCode"]))
    names = {str(row.get("customerName")) for row in _touching(pointers, days)}
    body = {
        "customerId": customer_id,
        "customerName": sorted(names)[0] if names else None,
        "from": days.first.isoformat(),
        "to": days.last.isoformat(),
        "totalCount": len(items),
        "items": items,
        "periods": [
            {
                "period": row.get("period"),
                "currencyCode": row.get("currencyCode"),
                "billingPreTaxTotal": Decimal(str(row.get("billingPreTaxTotal") or "0")),
                "storedAt": row.get("storedAt"),
                "snapshotETag": row.get("snapshotETag"),
            }
            for row in sorted(rows, key=lambda r: (str(r["period"]), str(r["currencyCode"])))
        ],
        "snapshots": snapshots(store, {str(row["currencyCode"]) for row in rows}),
        "links": {
            "self": rendering.link(_query(f"{rendering.customer_path(customer_id)}/dailycost", days)),
            "azureEntitlements": rendering.link(f"{rendering.customer_path(customer_id)}/azureentitlements"),
        },
        "attributes": {"objectType": "DailyCost"},
    }
    return _answer(body), [jsonutil.dumps(i) for i in items], _stored(rows)


def entitlements(
    store: TableStore, customer_id: str, keep: Callable[[str], bool] | None = None
) -> tuple[bytes, datetime | None]:
    """The customer's Azure subscriptions with rated usage (those ``keep`` accepts), each with its stored periods."""
    rows = [
        row
        for row in _pointers(store, customer_id)
        if slice_days(row) and (keep is None or keep(str(row["entitlementId"])))
    ]
    if not rows:
        raise nothing_stored(customer_id)
    by_entitlement: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_entitlement.setdefault(str(row["entitlementId"]), []).append(row)
    items = []
    for entitlement_id, group in sorted(by_entitlement.items()):
        newest = max(group, key=lambda r: str(r["period"]))
        path = f"{rendering.customer_path(customer_id)}/azureentitlements/{entitlement_id}"
        items.append(
            {
                **_names(newest),
                "customerId": customer_id,
                "customerName": newest.get("customerName"),
                "periods": [
                    _period_view(r) for r in sorted(group, key=lambda r: (str(r["period"]), str(r["currencyCode"])))
                ],
                "links": {
                    "dailyCost": rendering.link(path + "/dailycost"),
                    "lineItems": rendering.link(path + "/lineitems"),
                },
            }
        )
    body = {
        "totalCount": len(items),
        "items": items,
        "snapshots": snapshots(store, {str(row["currencyCode"]) for row in rows}),
        "links": {"self": rendering.link(f"{rendering.customer_path(customer_id)}/azureentitlements")},
        "attributes": {"objectType": "Collection"},
    }
    return _answer(body), _stored(rows)


def _query(path: str, days: DayRange) -> str:
    return f"{path}?from={days.first.isoformat()}&to={days.last.isoformat()}"


def _links(path: str, days: DayRange) -> dict[str, Any]:
    return {
        "self": rendering.link(_query(path + "/dailycost", days)),
        "lineItems": rendering.link(_query(path + "/lineitems", days)),
    }


def _stored(rows: Iterable[Mapping[str, Any]]) -> datetime | None:
    stamps = []
    for row in rows:
        text = row.get("storedAt")
        if isinstance(text, str) and text:
            try:
                stamps.append(datetime.fromisoformat(text.replace("Z", "+00:00")))
            except ValueError:
                continue
    return max(stamps) if stamps else None


# -- line items ------------------------------------------------------------------------------------------------


def _stamp(rows: Iterable[Mapping[str, Any]]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: str(r["RowKey"])):
        digest.update(str(row["RowKey"]).encode() + b"\0" + str(row.get("days") or "").encode() + b"\0")
    return digest.hexdigest()[:16]


def line_items(
    store: TableStore, request: Request, customer_id: str, entitlement_id: str, now: datetime, token: str | None
) -> tuple[bytes, list[str], dict[str, str], datetime | None]:
    """A page of one Azure subscription's line items in a day range, in the versions its pointers name."""
    if token is None:
        days = day_range(request, now)
        size = params.page_size(params.single(request, "size"))
        pointers = _pointers(store, customer_id, entitlement_id)
        rows = _touching(pointers, days)
        query = continuation.LineItemsQuery(days.first.isoformat(), days.last.isoformat(), size, _stamp(rows))
    else:
        query = continuation.decode_line_items(token, customer_id=customer_id, entitlement_id=entitlement_id)
        days = DayRange(date.fromisoformat(query.first), date.fromisoformat(query.last))
        pointers = _pointers(store, customer_id, entitlement_id)
        rows = _touching(pointers, days)
        if _stamp(rows) != query.stamp:
            raise ApiError(
                409,
                CODE_SNAPSHOT_REPLACED,
                "A newer snapshot of this Azure subscription's rated usage was stored after page 1 was served; "
                "pages of two snapshots would not add up, so start again from page 1.",
            )
    if not any(slice_days(row) for row in rows) and not pointers:
        raise nothing_stored(customer_id, entitlement_id)
    served = {
        (day, str(row["currencyCode"]).upper(), view.get("version"))
        for row in rows
        for day, view in slice_days(row).items()
        if days.holds(day)
    }
    entities, more = _page(store, customer_id, entitlement_id, query, served)
    texts = [entity["line"] for entity in entities]
    path = f"{rendering.customer_path(customer_id)}/azureentitlements/{entitlement_id}/lineitems"
    links: dict[str, Any] = {"self": rendering.link(f"{path}?from={query.first}&to={query.last}&size={query.size}")}
    headers = {}
    if more:
        next_token = continuation.encode_line_items(customer_id, entitlement_id, query, entities[-1]["RowKey"])
        links["next"] = rendering.link(path + "?seek_operation=Next", [(rendering.CONTINUATION_HEADER, next_token)])
        headers[rendering.CONTINUATION_HEADER] = next_token
    body = rendering.collection(texts, links)
    return body, [_canonical(text) for text in texts], headers, _stored(rows)


def _version_of(row_key: str) -> tuple[str, str, str] | None:
    parts = row_key.split("|")
    return (parts[0], parts[1], parts[2]) if len(parts) == 4 else None


def _page(
    store: TableStore,
    customer_id: str,
    entitlement_id: str,
    query: continuation.LineItemsQuery,
    served: set[tuple[str, str, Any]],
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``size`` line rows of the served versions, in key order, and whether more follow."""
    upper = (date.fromisoformat(query.last) + timedelta(days=1)).isoformat()
    parameters = {"pk": rated_lines_partition(customer_id, entitlement_id), "hi": upper}
    if query.after is None:
        query_filter = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        parameters["lo"] = query.first
    else:
        query_filter = "PartitionKey eq @pk and RowKey gt @after and RowKey lt @hi"
        parameters["after"] = query.after
    return queries.bounded_page(
        store,
        RATED_LINES,
        query_filter,
        parameters,
        size=query.size,
        keep=lambda entity: _version_of(entity["RowKey"]) in served,  # not superseded, nor being written
    )


def _canonical(text: str) -> str:
    """A line with its members under the documented (PascalCase) names, for the CSV's fixed columns."""
    record = jsonutil.loads(text)
    if not isinstance(record, dict):
        return text
    lowered = {column.lower(): column for column in LINE_ITEM_COLUMNS}
    return jsonutil.dumps({lowered.get(str(k).lower(), k): v for k, v in record.items()})
