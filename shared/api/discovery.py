"""The discovery routes: customers and subscriptions as Partner Center returned them, with this service's view.

Each record is the JSON Partner Center sent (every field, unknown ones too); what this service adds is in one
object of its own, ``serviceAttributes``, beside the upstream fields and never mixed into them: the
relationship, the subscription kind, which data is stored for it and where to read it, how far it reaches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared import jsonutil
from shared.api import continuation, queries, rendering
from shared.api.context import Content
from shared.api.errors import CODE_NOT_COVERED, ApiError, no_relationship, unknown_customer, unknown_subscription
from shared.table_store import TableStore, written_at
from shared.tables import Relationship, SubscriptionKind, subscription_key

SERVICE_ATTRIBUTES = "serviceAttributes"
LISTING = "customers"


def with_attributes(raw: str, attributes: Mapping[str, Any]) -> str:
    """The record's JSON with ``serviceAttributes`` added (digits kept: parsed with Decimals, written back)."""
    record = jsonutil.loads(raw)
    if not isinstance(record, dict):
        return raw
    record[SERVICE_ATTRIBUTES] = attributes
    return jsonutil.dumps(record)


def only(raw: str, fields: tuple[str, ...]) -> str:
    """The record's JSON with only these fields (the rest is not the caller's to read)."""
    record = jsonutil.loads(raw)
    if not isinstance(record, dict):
        return raw
    return jsonutil.dumps({name: record[name] for name in fields if name in record})


def customer_attributes(row: Mapping[str, Any], *, billing_months: list[str] | None = None) -> dict[str, Any]:
    """What this service knows of a customer beyond its record."""
    attributes: dict[str, Any] = {
        "relationship": row.get("relationship", str(Relationship.OK)),
        "subscriptionsListedAt": row.get("subscriptionsListedAt"),
        "links": {"subscriptions": rendering.link(rendering.customer_path(row["customerId"]) + "/subscriptions")},
    }
    if row.get("errorCode"):
        attributes["errorCode"] = row["errorCode"]
    if billing_months is not None:
        attributes["billingMonths"] = billing_months
    return attributes


@dataclass(frozen=True)
class Stored:
    """What is stored for a customer's subscriptions, by subscription key: read once for all of them."""

    billing_periods: Mapping[str, list[str]]
    utilization_through: Mapping[str, str]

    @classmethod
    def of(cls, store: TableStore, customer_id: str) -> Stored:
        """Two queries, whatever the number of subscriptions."""
        return cls(queries.billing_periods(store, customer_id), queries.utilization_through(store, customer_id))


def subscription_attributes(row: Mapping[str, Any], relationship: str, stored: Stored) -> dict[str, Any]:
    """A subscription's kind, which of this service's data covers it, what is stored and where to read it."""
    customer_id, subscription_id = row["customerId"], row["subscriptionId"]
    key = subscription_key(customer_id, subscription_id)
    kind = row.get("kind", str(SubscriptionKind.OTHER))
    path = rendering.subscription_path(customer_id, subscription_id)
    summary_covered = kind in (SubscriptionKind.LEGACY, SubscriptionKind.AZURE_PLAN)
    utilization_covered = kind == SubscriptionKind.LEGACY
    return {
        "kind": kind,
        "relationship": relationship,
        "usageSummary": {
            "covered": summary_covered,
            "billingPeriods": stored.billing_periods.get(key, []) if summary_covered else [],
            "link": rendering.link(path + "/usagesummary") if summary_covered else None,
        },
        "utilization": {
            "covered": utilization_covered,
            "storedThrough": stored.utilization_through.get(key) if utilization_covered else None,
            "link": rendering.link(path + "/utilizations/azure") if utilization_covered else None,
        },
        "ratedUsage": {
            "covered": kind == SubscriptionKind.AZURE_PLAN,
            "link": rendering.link(rendering.customer_path(customer_id) + "/azureentitlements")
            if kind == SubscriptionKind.AZURE_PLAN
            else None,
        },
    }


def _customer_or_404(store: TableStore, customer_id: str) -> dict[str, Any]:
    row = queries.customer_row(store, customer_id)
    if row is None:
        raise unknown_customer(customer_id)
    return row


def _readable_customer(store: TableStore, customer_id: str) -> tuple[dict[str, Any], str]:
    """A known customer whose subscriptions may be read, and its relationship; 404 unknown, 403/20002 forbidden."""
    row = _customer_or_404(store, customer_id)
    relationship = str(row.get("relationship", Relationship.OK))
    if relationship == Relationship.FORBIDDEN:
        raise no_relationship(customer_id)
    return row, relationship


def customers(
    store: TableStore,
    size: int,
    token: str | None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Content:
    """A page of the customers, as ``GET /v1/customers`` pages: ``size``, ``links.next`` with the token header."""
    after = None
    if token is not None:
        size, after = continuation.decode_listing(token, LISTING)
    rows, more = queries.customers_page(store, after=after, size=size, keep=keep)
    raws = [with_attributes(row["raw"], customer_attributes(row)) for row in rows]
    next_token = continuation.encode_listing(LISTING, size, rows[-1]["RowKey"]) if more else None
    links = rendering.page_links(LISTING, {"size": size}, token=token, next_token=next_token)
    headers = {rendering.CONTINUATION_HEADER: next_token} if next_token else {}
    written = queries.newest(written_at(row) for row in rows)
    return Content(rendering.collection(raws, links), headers=headers, last_modified=written)


def customer(store: TableStore, customer_id: str) -> Content:
    """One customer's record, with the billing months whose usage record is stored."""
    row = _customer_or_404(store, customer_id)
    attributes = customer_attributes(row, billing_months=queries.billing_months(store, customer_id))
    return Content(with_attributes(row["raw"], attributes).encode("utf-8"), last_modified=written_at(row))


def subscriptions(store: TableStore, customer_id: str, keep: Callable[[str], bool] | None = None) -> Content:
    """A customer's subscriptions (those ``keep`` accepts); 403/20002 for a customer without a relationship."""
    customer_row, relationship = _readable_customer(store, customer_id)
    rows = [row for row in queries.subscriptions_of(store, customer_id) if keep is None or keep(row["subscriptionId"])]
    stored = Stored.of(store, customer_id)
    raws = [with_attributes(sub["raw"], subscription_attributes(sub, relationship, stored)) for sub in rows]
    body = rendering.collection(
        raws, rendering.page_links(rendering.customer_path(customer_id) + "/subscriptions", None)
    )
    return Content(body, last_modified=queries.newest([written_at(customer_row), *(written_at(sub) for sub in rows)]))


def subscription(store: TableStore, customer_id: str, subscription_id: str) -> Content:
    """One subscription's record with what this service stores for it."""
    _, relationship = _readable_customer(store, customer_id)
    row = queries.subscription_row(store, customer_id, subscription_id)
    if row is None:
        raise unknown_subscription(customer_id, subscription_id)
    attributes = subscription_attributes(row, relationship, Stored.of(store, customer_id))
    return Content(with_attributes(row["raw"], attributes).encode("utf-8"), last_modified=written_at(row))


def coverage_error(store: TableStore, customer_id: str, subscription_id: str, route: str) -> ApiError | None:
    """Why a subscription route serves nothing for this subscription (no relationship, not covered), or None."""
    customer_row = queries.customer_row(store, customer_id)
    if customer_row is not None and customer_row.get("relationship") == Relationship.FORBIDDEN:
        return no_relationship(customer_id)
    row = queries.subscription_row(store, customer_id, subscription_id)
    if row is None:
        return None
    kind = row.get("kind", str(SubscriptionKind.OTHER))
    path = "/api/v1/" + rendering.subscription_path(customer_id, subscription_id)
    if route == "utilization" and kind != SubscriptionKind.LEGACY:
        if kind == SubscriptionKind.AZURE_PLAN:
            customer_path = "/api/v1/" + rendering.customer_path(customer_id)
            pointer = (
                f"its cost per day is at {customer_path}/azureentitlements (each Azure subscription under the plan, "
                f"with .../dailycost and .../lineitems, from the Graph billing export) and {customer_path}/dailycost, "
                f"and its period to date at {path}/usagesummary"
            )
        else:
            pointer = "it has no Azure usage"
        return ApiError(
            404,
            CODE_NOT_COVERED,
            f"Subscription {subscription_id} is {_kind_text(kind)}: Partner Center's utilization endpoint covers "
            f"legacy MS-AZR-0145P subscriptions only, so none is stored; {pointer}.",
        )
    if route == "usage_summary" and kind not in (SubscriptionKind.LEGACY, SubscriptionKind.AZURE_PLAN):
        return ApiError(
            404,
            CODE_NOT_COVERED,
            f"Subscription {subscription_id} is {_kind_text(kind)} (offer {row.get('offerId') or 'unknown'}): it has "
            "no Azure usage, so Partner Center has no usage summary for it. Azure subscriptions of the customer "
            f"are listed at /api/v1/{rendering.customer_path(customer_id)}/subscriptions.",
        )
    return None


def _kind_text(kind: str) -> str:
    return {"legacy": "a legacy Azure subscription", "azure_plan": "an Azure plan subscription"}.get(
        kind, "not an Azure subscription (a licence or other offer)"
    )
