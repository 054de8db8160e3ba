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
from shared.api import continuation, queries, rendering
from shared.api.context import Content
from shared.api.errors import ApiError, no_rated_usage
from shared.table_store import TableStore
from shared.tables import slice_days

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


def day_range(first: date | None, last: date | None, now: datetime) -> DayRange:
    """``from`` and ``to`` (inclusive); by default the current UTC month to today, or the month of ``to``.

    A range whose end is before its start holds nothing (an empty answer, as the utilization route). No range is
    too long: a read costs one query of the customer's pointer rows, whatever the range.
    """
    today = now.astimezone(timezone.utc).date()
    end = today if last is None else last
    start = end.replace(day=1) if first is None else first
    return DayRange(start, end)


# -- reads ---------------------------------------------------------------------------------------------------


def _touching(rows: Iterable[dict[str, Any]], days: DayRange) -> list[dict[str, Any]]:
    """The rows of the months a range touches."""
    return [row for row in rows if days.touches(row.get("period"))]


SNAPSHOT_FIELDS = ("billingPeriod", "currencyCode", "snapshotETag", "snapshotCreatedAt", "ingestedAt", "checkedAt")


def snapshots(store: TableStore, currencies: Iterable[str]) -> list[dict[str, Any]]:
    """The export streams of these currencies: which snapshot is stored and when it was last checked."""
    wanted = {c.upper() for c in currencies}
    out = [
        {name: row.get(name) for name in SNAPSHOT_FIELDS}
        for row in queries.export_streams(store)
        if str(row.get("currencyCode", "")).upper() in wanted
    ]
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


def _content(body: dict[str, Any], items: list[dict[str, Any]] | None, rows: Iterable[Mapping[str, Any]]) -> Content:
    """The answer: the JSON body, its items again for CSV, and when the newest of its rows was stored."""
    csv_raws = None if items is None else [jsonutil.dumps(item) for item in items]
    return Content(jsonutil.dumps(body).encode("utf-8"), csv_raws=csv_raws, last_modified=_stored(rows))


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


def _by_period(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda r: (str(r["period"]), str(r["currencyCode"])))


def _days(rows: Iterable[Mapping[str, Any]], days: DayRange, *, counted: bool = False) -> list[dict[str, Any]]:
    """The daily items of the rows' days in the range, by day and currency."""
    items = [
        _daily_item(day, str(row["currencyCode"]), view, int(view.get("subscriptions", 0)) if counted else None)
        for row in rows
        for day, view in slice_days(row).items()
        if days.holds(day)
    ]
    return sorted(items, key=lambda i: (i["usageDate"], i["currencyCode"]))


def _range(days: DayRange) -> dict[str, str]:
    return {"from": days.first.isoformat(), "to": days.last.isoformat()}


def entitlement_daily_cost(store: TableStore, customer_id: str, entitlement_id: str, days: DayRange) -> Content:
    """One Azure subscription's cost per day."""
    pointers = queries.rated_pointers(store, customer_id, entitlement_id)
    rows = _by_period(row for row in _touching(pointers, days) if slice_days(row))
    if not rows and not pointers:
        raise no_rated_usage(customer_id, entitlement_id)
    items = _days(rows, days)
    path = f"{rendering.customer_path(customer_id)}/azureentitlements/{entitlement_id}"
    body = {
        "customerId": customer_id,
        **(_names(rows[0]) if rows else {"entitlementId": entitlement_id}),
        "customerName": rows[0].get("customerName") if rows else None,
        **_range(days),
        "totalCount": len(items),
        "items": items,
        "periods": [_period_view(row) for row in rows],
        "snapshots": snapshots(store, {str(row["currencyCode"]) for row in rows}),
        "links": {
            "self": rendering.link(rendering.query_uri(path + "/dailycost", _range(days))),
            "lineItems": rendering.link(rendering.query_uri(path + "/lineitems", _range(days))),
        },
        "attributes": {"objectType": "DailyCost"},
    }
    return _content(body, items, rows)


def customer_daily_cost(store: TableStore, customer_id: str, days: DayRange) -> Content:
    """A customer's cost per day over all its Azure subscriptions."""
    rows = _by_period(row for row in queries.rated_customer_periods(store, customer_id) if days.touches(row["period"]))
    pointers = queries.rated_pointers(store, customer_id)
    if not rows and not pointers:
        raise no_rated_usage(customer_id)
    items = _days(rows, days, counted=True)
    names = {str(row.get("customerName")) for row in _touching(pointers, days)}
    path = rendering.customer_path(customer_id)
    body = {
        "customerId": customer_id,
        "customerName": sorted(names)[0] if names else None,
        **_range(days),
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
            for row in rows
        ],
        "snapshots": snapshots(store, {str(row["currencyCode"]) for row in rows}),
        "links": {
            "self": rendering.link(rendering.query_uri(path + "/dailycost", _range(days))),
            "azureEntitlements": rendering.link(path + "/azureentitlements"),
        },
        "attributes": {"objectType": "DailyCost"},
    }
    return _content(body, items, rows)


def entitlements(store: TableStore, customer_id: str, keep: Callable[[str], bool] | None = None) -> Content:
    """The customer's Azure subscriptions with rated usage (those ``keep`` accepts), each with its stored periods."""
    rows = [
        row
        for row in queries.rated_pointers(store, customer_id)
        if slice_days(row) and (keep is None or keep(str(row["entitlementId"])))
    ]
    if not rows:
        raise no_rated_usage(customer_id)
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
                "periods": [_period_view(r) for r in _by_period(group)],
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
        "links": rendering.page_links(f"{rendering.customer_path(customer_id)}/azureentitlements", None),
        "attributes": {"objectType": "Collection"},
    }
    return _content(body, None, rows)


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
    """A digest of the pointers a page is served under: a new snapshot of any of them changes it."""
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: str(r["RowKey"])):
        digest.update(str(row["RowKey"]).encode() + b"\0" + str(row.get("days") or "").encode() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class LineItemPage:
    """One page of line items: their texts as stored, the same with documented names for CSV, where it is."""

    query: continuation.LineItemsQuery
    texts: list[str]
    csv_raws: list[str]
    path: str
    next_token: str | None
    written: datetime | None


def line_items(
    store: TableStore, customer_id: str, entitlement_id: str, first: tuple[DayRange, int] | continuation.LineItemsQuery
) -> LineItemPage:
    """A page of one Azure subscription's line items in the versions its pointers name: page 1 of a day range and
    size, or the page a continuation's query names (409 when those pointers changed since page 1)."""
    pointers = queries.rated_pointers(store, customer_id, entitlement_id)
    if isinstance(first, continuation.LineItemsQuery):
        query = first
        days = DayRange(date.fromisoformat(query.first), date.fromisoformat(query.last))
        rows = _touching(pointers, days)
    else:
        days, size = first
        rows = _touching(pointers, days)
        query = continuation.LineItemsQuery(days.first.isoformat(), days.last.isoformat(), size, _stamp(rows))
    if query.after is not None and _stamp(rows) != query.stamp:
        raise ApiError(
            409,
            CODE_SNAPSHOT_REPLACED,
            "A newer snapshot of this Azure subscription's rated usage was stored after page 1 was served; "
            "pages of two snapshots would not add up, so start again from page 1.",
        )
    if not any(slice_days(row) for row in rows) and not pointers:
        raise no_rated_usage(customer_id, entitlement_id)
    served = {
        (day, str(row["currencyCode"]).upper(), view.get("version"))
        for row in rows
        for day, view in slice_days(row).items()
        if days.holds(day)
    }
    entities, more = queries.rated_lines_page(
        store,
        customer_id,
        entitlement_id,
        query.first,
        (days.last + timedelta(days=1)).isoformat(),
        after=query.after,
        size=query.size,
        keep=lambda entity: _version_of(entity["RowKey"]) in served,  # not superseded, nor being written
    )
    texts = [entity["line"] for entity in entities]
    next_token = (
        continuation.encode_line_items(customer_id, entitlement_id, query, entities[-1]["RowKey"]) if more else None
    )
    path = f"{rendering.customer_path(customer_id)}/azureentitlements/{entitlement_id}/lineitems"
    return LineItemPage(query, texts, [_canonical(text) for text in texts], path, next_token, _stored(rows))


def _version_of(row_key: str) -> tuple[str, str, str] | None:
    parts = row_key.split("|")
    return (parts[0], parts[1], parts[2]) if len(parts) == 4 else None


def _canonical(text: str) -> str:
    """A line with its members under the documented (PascalCase) names, for the CSV's fixed columns."""
    record = jsonutil.loads(text)
    if not isinstance(record, dict):
        return text
    lowered = {column.lower(): column for column in LINE_ITEM_COLUMNS}
    return jsonutil.dumps({lowered.get(str(k).lower(), k): v for k, v in record.items()})
