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
from decimal import Decimal, localcontext
from typing import Any, TypeVar

from shared import jsonutil
from shared.api import continuation, queries, rendering
from shared.api.context import Content
from shared.api.errors import CODE_NOT_COVERED, ApiError, no_rated_usage
from shared.pricing.amounts import EXACT
from shared.rated.chunks import texts_of as chunk_texts
from shared.table_store import TableStore
from shared.tables import DayView, RatedCustomerPeriod, RatedPointer, SubscriptionKind

CODE_SNAPSHOT_REPLACED = 900410
# The export's ``full`` attribute set, in Microsoft's documented order: every field a line can carry (a ``basic``
# export leaves some empty).
LINE_ITEM_COLUMNS = (
    "PartnerId",
    "PartnerName",
    "CustomerId",
    "CustomerName",
    "CustomerDomainName",
    "CustomerCountry",
    "MpnId",
    "Tier2MpnId",
    "InvoiceNumber",
    "ProductId",
    "SkuId",
    "AvailabilityId",
    "SkuName",
    "ProductName",
    "PublisherName",
    "PublisherId",
    "SubscriptionId",
    "SubscriptionDescription",
    "ChargeStartDate",
    "ChargeEndDate",
    "UsageDate",
    "MeterType",
    "MeterCategory",
    "MeterId",
    "MeterSubCategory",
    "MeterName",
    "MeterRegion",
    "Unit",
    "ResourceLocation",
    "ConsumedService",
    "ResourceGroup",
    "ResourceURI",
    "ChargeType",
    "UnitPrice",
    "Quantity",
    "UnitType",
    "BillingPreTaxTotal",
    "BillingCurrency",
    "PricingPreTaxTotal",
    "PricingCurrency",
    "ServiceInfo1",
    "ServiceInfo2",
    "Tags",
    "AdditionalInfo",
    "EffectiveUnitPrice",
    "PCToBCExchangeRate",
    "PCToBCExchangeRateDate",
    "EntitlementId",
    "EntitlementDescription",
    "PartnerEarnedCreditPercentage",
    "CreditPercentage",
    "CreditType",
    "BenefitOrderID",
    "BenefitID",
    "BenefitType",
)
DAILY_COLUMNS = (
    "customerId",
    "entitlementId",
    "usageDate",
    "currencyCode",
    "billingPreTaxTotal",
    "lineCount",
    "subscriptionCount",
)
# A scoped caller's (shown prices): its price of each day instead of the billed pre-tax total.
PRICED_DAILY_COLUMNS = (
    "customerId",
    "entitlementId",
    "usageDate",
    "currencyCode",
    "price",
    "priceComplete",
    "lineCount",
    "subscriptionCount",
)
DayPrice = Callable[[RatedPointer, str, DayView], Decimal | None]  # a scoped caller's price of a stored day


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

Period = TypeVar("Period", RatedPointer, RatedCustomerPeriod)


def _touching(rows: Iterable[Period], days: DayRange) -> list[Period]:
    """The rows of the months a range touches, by period and currency."""
    return sorted((row for row in rows if days.touches(row.period)), key=lambda r: (r.period, r.currency))


def snapshots(store: TableStore, currencies: Iterable[str]) -> list[dict[str, Any]]:
    """The export streams of these currencies: which snapshot is stored and when it was last checked."""
    wanted = {c.upper() for c in currencies}
    out = [stream.snapshot() for stream in queries.export_streams(store) if stream.currency in wanted]
    return sorted(out, key=lambda s: (str(s["currencyCode"]), str(s["billingPeriod"])))


def _period_view(pointer: RatedPointer, price: DayPrice | None = None) -> dict[str, Any]:
    money = {"billingPreTaxTotal": Decimal(pointer.billing_pre_tax_total)}
    if price is not None:
        money = _priced_total([(pointer, day, view) for day, view in pointer.days.items()], price)
    return {
        "period": pointer.period,
        "currencyCode": pointer.currency,
        "lineCount": pointer.line_count,
        **money,
        "storedAt": pointer.stored_at,
        "snapshotETag": pointer.snapshot_etag,
        "snapshotCreatedAt": pointer.snapshot_created_at,
    }


def _names(pointer: RatedPointer) -> dict[str, Any]:
    return {
        "entitlementId": pointer.entitlement_id,
        "entitlementDescription": pointer.entitlement_description,
        "subscriptionId": pointer.subscription_id,
        "tier2MpnId": pointer.tier2_mpn_id or None,
    }


def _content(
    body: dict[str, Any],
    items: list[dict[str, Any]] | None,
    rows: Iterable[RatedPointer | RatedCustomerPeriod],
    ids: Mapping[str, str] | None = None,
) -> Content:
    """The answer: the JSON body, its items again for CSV (each with ``ids``: whose they are), and when the newest
    of its rows was stored."""
    csv_raws = None if items is None else [jsonutil.dumps({**(ids or {}), **item}) for item in items]
    return Content(jsonutil.dumps(body).encode("utf-8"), csv_raws=csv_raws, last_modified=_stored(rows))


def _item(day: str, currency: str, total: str, lines: int) -> dict[str, Any]:
    return {"usageDate": day, "currencyCode": currency, "billingPreTaxTotal": Decimal(total), "lineCount": lines}


def _priced_total(figures: Iterable[tuple[RatedPointer, str, DayView]], price: DayPrice) -> dict[str, Any]:
    """The price of these days (a scoped caller's, instead of their cost), and whether each had one."""
    total, complete = Decimal(0), True
    with localcontext(EXACT):
        for pointer, day, view in figures:
            found = price(pointer, day, view)
            complete = complete and found is not None
            total += found or 0
    return {"price": total, "priceComplete": complete}


def _priced_days(pointers: Iterable[RatedPointer], days: DayRange, price: DayPrice) -> list[dict[str, Any]]:
    """Daily items at a scoped caller's price (over the Azure subscriptions given), and no cost."""
    grouped: dict[tuple[str, str], list[tuple[RatedPointer, str, DayView]]] = {}
    for pointer in pointers:
        for day, view in pointer.days.items():
            if days.holds(day):
                grouped.setdefault((day, pointer.currency), []).append((pointer, day, view))
    items = [
        {
            "usageDate": day,
            "currencyCode": currency,
            **_priced_total(figures, price),
            "lineCount": sum(view.lines for _, _, view in figures),
            "subscriptionCount": len(figures),
        }
        for (day, currency), figures in grouped.items()
    ]
    return sorted(items, key=lambda i: (i["usageDate"], i["currencyCode"]))


def _entitlement_days(pointers: Iterable[RatedPointer], days: DayRange) -> list[dict[str, Any]]:
    """An Azure subscription's daily items in the range, with the pricing-currency totals."""
    items = []
    for pointer in pointers:
        for day, view in pointer.days.items():
            if days.holds(day):
                item = _item(day, pointer.currency, view.billing_pre_tax_total, view.lines)
                item["pricingPreTaxTotals"] = [
                    {"currencyCode": code or None, "amount": Decimal(amount)}
                    for code, amount in view.pricing_pre_tax_total.items()
                ]
                items.append(item)
    return sorted(items, key=lambda i: (i["usageDate"], i["currencyCode"]))


def _customer_days(periods: Iterable[RatedCustomerPeriod], days: DayRange) -> list[dict[str, Any]]:
    """A customer's daily items in the range, with the count of its Azure subscriptions charged that day."""
    items = [
        {**_item(day, period.currency, view.billing_pre_tax_total, view.lines), "subscriptionCount": view.subscriptions}
        for period in periods
        for day, view in period.days.items()
        if days.holds(day)
    ]
    return sorted(items, key=lambda i: (i["usageDate"], i["currencyCode"]))


def _range(days: DayRange) -> dict[str, str]:
    return {"from": days.first.isoformat(), "to": days.last.isoformat()}


def _no_azure_subscription(store: TableStore, customer_id: str, entitlement_id: str) -> ApiError:
    """The 404 of an Azure subscription without rated usage; when the id is the customer's Azure *plan* (its
    Partner Center subscription id), the answer says so and where its Azure subscriptions are listed."""
    row = queries.subscription_row(store, customer_id, entitlement_id)
    if row is not None and row.get("kind") == SubscriptionKind.AZURE_PLAN:
        return ApiError(
            404,
            CODE_NOT_COVERED,
            f"{entitlement_id} is customer {customer_id}'s Azure plan (its Partner Center subscription id), not an "
            "Azure subscription id: the Azure subscriptions under the plan, each with its own daily cost and line "
            f"items, are listed at /api/v1/{rendering.customer_path(customer_id)}/azureentitlements.",
        )
    return no_rated_usage(customer_id, entitlement_id)


def entitlement_daily_cost(
    store: TableStore, customer_id: str, entitlement_id: str, days: DayRange, price: DayPrice | None = None
) -> Content:
    """One Azure subscription's cost per day (``price``: a scoped caller's price per day instead)."""
    pointers = queries.rated_pointers(store, customer_id, entitlement_id)
    rows = [pointer for pointer in _touching(pointers, days) if pointer.days]
    if not rows and not pointers:
        raise _no_azure_subscription(store, customer_id, entitlement_id)
    if price is None:
        items = _entitlement_days(rows, days)
    else:
        items = [{k: v for k, v in i.items() if k != "subscriptionCount"} for i in _priced_days(rows, days, price)]
    path = f"{rendering.customer_path(customer_id)}/azureentitlements/{entitlement_id}"
    body = {
        "customerId": customer_id,
        **(_names(rows[0]) if rows else {"entitlementId": entitlement_id}),
        "customerName": rows[0].customer_name if rows else None,
        **_range(days),
        "figures": "cost" if price is None else "price",
        "totalCount": len(items),
        "items": items,
        "periods": [_period_view(row, price) for row in rows],
        "snapshots": snapshots(store, {row.currency for row in rows}),
        "links": {
            "self": rendering.link(rendering.query_uri(path + "/dailycost", _range(days))),
            "lineItems": rendering.link(rendering.query_uri(path + "/lineitems", _range(days))),
        },
        "attributes": {"objectType": "DailyCost"},
    }
    return _content(body, items, rows, {"customerId": customer_id, "entitlementId": entitlement_id})


def customer_daily_cost(store: TableStore, customer_id: str, days: DayRange, price: DayPrice | None = None) -> Content:
    """A customer's cost per day over all its Azure subscriptions (``price``: a scoped caller's price instead)."""
    rows = _touching(queries.rated_customer_periods(store, customer_id), days)
    pointers = queries.rated_pointers(store, customer_id)
    if not rows and not pointers:
        raise no_rated_usage(customer_id)
    touching = _touching(pointers, days)
    if price is not None:
        items, periods = _priced_days(touching, days, price), _priced_periods(touching, price)
        currencies = {p.currency for p in pointers}
    else:
        items = _customer_days(rows, days)
        periods = [
            {
                "period": row.period,
                "currencyCode": row.currency,
                "billingPreTaxTotal": Decimal(row.billing_pre_tax_total),
                "storedAt": row.stored_at,
                "snapshotETag": row.snapshot_etag,
            }
            for row in rows
        ]
        currencies = {row.currency for row in rows}
    names = {str(pointer.customer_name) for pointer in touching}
    path = rendering.customer_path(customer_id)
    body = {
        "customerId": customer_id,
        "customerName": sorted(names)[0] if names else None,
        **_range(days),
        "figures": "cost" if price is None else "price",
        "totalCount": len(items),
        "items": items,
        "periods": periods,
        "snapshots": snapshots(store, currencies),
        "links": {
            "self": rendering.link(rendering.query_uri(path + "/dailycost", _range(days))),
            "azureEntitlements": rendering.link(path + "/azureentitlements"),
        },
        "attributes": {"objectType": "DailyCost"},
    }
    return _content(body, items, rows if price is None else touching, {"customerId": customer_id})


def _priced_periods(pointers: list[RatedPointer], price: DayPrice) -> list[dict[str, Any]]:
    """A customer's stored months at a scoped caller's price, over its Azure subscriptions."""
    grouped: dict[tuple[str, str], list[RatedPointer]] = {}
    for pointer in pointers:
        grouped.setdefault((pointer.period, pointer.currency), []).append(pointer)
    return [
        {
            "period": period,
            "currencyCode": currency,
            **_priced_total([(p, day, view) for p in group for day, view in p.days.items()], price),
            "storedAt": max((p.stored_at for p in group if p.stored_at), default=None),
        }
        for (period, currency), group in sorted(grouped.items())
    ]


def entitlements(
    store: TableStore, customer_id: str, keep: Callable[[str], bool] | None = None, price: DayPrice | None = None
) -> Content:
    """The customer's Azure subscriptions with rated usage (those ``keep`` accepts), each with its stored periods."""
    rows = [
        pointer
        for pointer in queries.rated_pointers(store, customer_id)
        if pointer.days and (keep is None or keep(pointer.entitlement_id))
    ]
    if not rows:
        raise no_rated_usage(customer_id)
    by_entitlement: dict[str, list[RatedPointer]] = {}
    for row in rows:
        by_entitlement.setdefault(row.entitlement_id, []).append(row)
    items = []
    for entitlement_id, group in sorted(by_entitlement.items()):
        newest = max(group, key=lambda r: r.period)
        path = f"{rendering.customer_path(customer_id)}/azureentitlements/{entitlement_id}"
        items.append(
            {
                **_names(newest),
                "customerId": customer_id,
                "customerName": newest.customer_name,
                "periods": [_period_view(r, price) for r in sorted(group, key=lambda r: (r.period, r.currency))],
                "links": {
                    "dailyCost": rendering.link(path + "/dailycost"),
                    "lineItems": rendering.link(path + "/lineitems"),
                },
            }
        )
    body = {
        "totalCount": len(items),
        "items": items,
        "snapshots": snapshots(store, {row.currency for row in rows}),
        "links": rendering.page_links(f"{rendering.customer_path(customer_id)}/azureentitlements", None),
        "attributes": {"objectType": "Collection"},
    }
    return _content(body, None, rows)


def _stored(rows: Iterable[RatedPointer | RatedCustomerPeriod]) -> datetime | None:
    stamps = []
    for row in rows:
        if row.stored_at:
            try:
                stamps.append(datetime.fromisoformat(row.stored_at.replace("Z", "+00:00")))
            except ValueError:
                continue
    return max(stamps) if stamps else None


# -- line items ------------------------------------------------------------------------------------------------


def _stamp(pointers: Iterable[RatedPointer]) -> str:
    """A digest of the versions a page is served under: a new snapshot of any of them changes it."""
    digest = hashlib.sha256()
    for pointer in sorted(pointers, key=lambda p: p.row_key):
        versions = ",".join(f"{day}={view.version}" for day, view in sorted(pointer.days.items()))
        digest.update(f"{pointer.row_key}\0{versions}\0".encode())
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
            f"pages of two snapshots would not add up, so start again from page 1 (from={query.first}&"
            f"to={query.last}).",
        )
    if not any(pointer.days for pointer in rows) and not pointers:
        raise _no_azure_subscription(store, customer_id, entitlement_id)
    served = {
        (day, pointer.currency.upper(), view.version)
        for pointer in rows
        for day, view in pointer.days.items()
        if days.holds(day)
    }
    texts, position = _page_of_chunks(
        queries.rated_line_chunks(
            store,
            customer_id,
            entitlement_id,
            query.first,
            (days.last + timedelta(days=1)).isoformat(),
            after=query.after,
        ),
        served,  # not superseded, nor being written
        query.size,
    )
    next_token = (
        None if position is None else continuation.encode_line_items(customer_id, entitlement_id, query, position)
    )
    path = f"{rendering.customer_path(customer_id)}/azureentitlements/{entitlement_id}/lineitems"
    return LineItemPage(query, texts, [_canonical(text) for text in texts], path, next_token, _stored(rows))


def _page_of_chunks(
    chunks: Iterable[tuple[Mapping[str, Any], int]], served: set[tuple[str, str, str]], size: int
) -> tuple[list[str], str | None]:
    """Up to ``size`` lines of the chunk rows of served versions, in key order, from where the token left off; and
    the position after them when more lines follow (``RowKey`` after a whole chunk, ``RowKey#lines`` inside one).

    A chunk row holds many lines of one day slice (``shared.rated.chunks``), so a page can end inside one."""
    texts: list[str] = []
    last_whole: str | None = None
    for entity, skip in chunks:
        row_key = str(entity["RowKey"])
        if _version_of(row_key) not in served:
            continue
        if len(texts) == size:
            return texts, last_whole  # a served chunk follows the full page
        lines = chunk_texts(entity)[skip:]
        room = size - len(texts)
        if len(lines) > room:
            texts.extend(lines[:room])
            return texts, f"{row_key}#{skip + room}"
        texts.extend(lines)
        last_whole = row_key
    return texts, None


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
