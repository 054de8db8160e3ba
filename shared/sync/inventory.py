"""The customers and subscriptions to sync, discovered from Partner Center and cached in tables."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import jsonutil
from shared.keys import make_key
from shared.partner_center import PartnerCenterClient, PartnerCenterError
from shared.settings import Settings
from shared.sync.records import BadRecord, optional_text, require_id
from shared.sync.runs import SyncRun
from shared.sync.workers import for_each
from shared.table_store import TableStore
from shared.timeutil import parse_time

log = logging.getLogger(__name__)

CUSTOMERS = "Customers"
SUBSCRIPTIONS = "Subscriptions"
STATE = "SyncState"
LEGACY_OFFER = "MS-AZR-0145P"
AZURE_PLAN_PREFIX = "DZH318Z0BPS6"


@dataclass(frozen=True)
class Subscription:
    """A subscription worth syncing, as the inventory knows it."""

    customer_id: str
    subscription_id: str
    kind: str  # legacy | azure_plan | other
    offer_id: str
    status: str

    @property
    def key(self) -> str:
        """The partition key of this subscription's data rows."""
        return make_key(self.customer_id, self.subscription_id)

    @property
    def label(self) -> str:
        """How logs and run records name it."""
        return f"customer {self.customer_id} subscription {self.subscription_id}"


def subscription_kind(offer_id: str) -> str:
    """legacy (MS-AZR-0145P), azure_plan (DZH318Z0BPS6:...), or other (licences and the rest)."""
    offer = offer_id.upper()
    if offer == LEGACY_OFFER:
        return "legacy"
    if offer.startswith(AZURE_PLAN_PREFIX):
        return "azure_plan"
    return "other"


def subscription_row(customer_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The inventory row of one subscription; status and offer kept as strings, unknown values too."""
    if not isinstance(record, Mapping):
        raise BadRecord("subscription is not a JSON object")
    subscription_id = require_id(record, "id")
    offer_id = optional_text(record, "offerId") or ""
    return {
        "PartitionKey": make_key(customer_id),
        "RowKey": make_key(subscription_id),
        "customerId": customer_id,
        "subscriptionId": subscription_id,
        "offerId": offer_id,
        "offerName": optional_text(record, "offerName"),
        "friendlyName": optional_text(record, "friendlyName"),
        "status": optional_text(record, "status"),
        "billingType": optional_text(record, "billingType"),
        "kind": subscription_kind(offer_id),
        "raw": jsonutil.dumps(record),
    }


def wanted(settings: Settings, customer_id: str) -> bool:
    """Allow and deny lists of customer ids (allow empty = all)."""
    if settings.customer_allow_list and customer_id not in settings.customer_allow_list:
        return False
    return customer_id not in settings.customer_deny_list


def load_subscriptions(
    client: PartnerCenterClient, store: TableStore, settings: Settings, run: SyncRun, *, now: datetime
) -> list[Subscription]:
    """The inventory, refreshed from Partner Center when older than INVENTORY_REFRESH_HOURS."""
    meta = store.get(STATE, "inventory", "meta")
    refreshed_at = parse_time(meta["refreshedAt"]) if meta and meta.get("refreshedAt") else None
    if refreshed_at is None or now - refreshed_at >= timedelta(hours=settings.inventory_refresh_hours):
        refresh_inventory(client, store, settings, run, now=now)
    subscriptions = []
    for row in store.query(SUBSCRIPTIONS, "RowKey ne @empty", {"empty": ""}):
        if wanted(settings, row["customerId"]):
            subscriptions.append(
                Subscription(
                    customer_id=row["customerId"],
                    subscription_id=row["subscriptionId"],
                    kind=row.get("kind", "other"),
                    offer_id=row.get("offerId", ""),
                    status=row.get("status") or "",
                )
            )
    return subscriptions


def refresh_inventory(
    client: PartnerCenterClient, store: TableStore, settings: Settings, run: SyncRun, *, now: datetime
) -> None:
    """Re-read customers and subscriptions. Only a refresh that read everything removes what disappeared."""
    customers: list[dict[str, Any]] = []
    for page in client.customers():
        for record in page.items:
            try:
                customer_id = require_id(record, "id")
            except BadRecord as exc:
                run.quarantine(source="customers", raw=record, reason=str(exc))
                continue
            if wanted(settings, customer_id):
                name = (record.get("companyProfile") or {}).get("companyName") if isinstance(record, dict) else None
                customers.append({"id": customer_id, "name": name, "raw": record})

    seen: set[tuple[str, str]] = set()
    customer_rows: list[dict[str, Any]] = []
    failures_before = len(run.errors)

    def refresh_customer(customer: dict[str, Any]) -> bool:
        customer_id = customer["id"]
        row = {
            "PartitionKey": "customer",
            "RowKey": make_key(customer_id),
            "customerId": customer_id,
            "companyName": customer["name"],
            "raw": jsonutil.dumps(customer["raw"]),
            "relationship": "ok",
        }
        rows = []
        try:
            for page in client.subscriptions(customer_id):
                for record in page.items:
                    try:
                        rows.append(subscription_row(customer_id, record))
                    except BadRecord as exc:
                        run.quarantine(source=f"customers/{customer_id}/subscriptions", raw=record, reason=str(exc))
        except PartnerCenterError as exc:
            if not exc.is_no_relationship:
                raise
            run.skip(
                f"customer {customer_id}",
                f"no relationship with this customer (403/20002, request_id={exc.request_id})",
            )
            row.update(relationship="forbidden", errorCode=exc.code)
        store.upsert(SUBSCRIPTIONS, rows)
        customer_rows.append(row)  # one partition: written together after the loop
        seen.update((r["PartitionKey"], r["RowKey"]) for r in rows)
        seen.add(("customer", make_key(customer_id)))
        return True

    _, pending = for_each(
        run, customers, refresh_customer, concurrency=settings.sync_concurrency, name=lambda c: f"customer {c['id']}"
    )
    store.upsert(CUSTOMERS, customer_rows)
    if pending or len(run.errors) > failures_before:
        log.warning("inventory refresh incomplete; keeping earlier rows and refreshing again next run")
        return
    for table, query_filter in ((SUBSCRIPTIONS, "RowKey ne @empty"), (CUSTOMERS, "PartitionKey eq 'customer'")):
        for row in list(store.query(table, query_filter, {"empty": ""}, select=["PartitionKey", "RowKey"])):
            if (row["PartitionKey"], row["RowKey"]) not in seen:
                store.delete(table, row["PartitionKey"], row["RowKey"])
    store.upsert_one(STATE, {"PartitionKey": "inventory", "RowKey": "meta", "refreshedAt": now.isoformat()})
