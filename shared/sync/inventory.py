"""The customers and subscriptions to sync: discovered from Partner Center, cached in tables.

Two explicit steps: ``refresh_if_due`` (a job calls it first; it calls Partner Center and writes the inventory
tables, within its own share of the run's budget) and ``load_subscriptions`` (reads the tables, nothing else).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.partner_center import PartnerCenterClient, PartnerCenterError
from shared.records import BadRecord, require_id
from shared.settings import Settings
from shared.sync.runs import SyncRun
from shared.sync.workers import for_each
from shared.table_store import TableStore, UnstorableEntity
from shared.tables import (
    CUSTOMER_PARTITION,
    CUSTOMERS,
    INVENTORY_META,
    INVENTORY_STATE,
    SUBSCRIPTIONS,
    SYNC_STATE,
    Relationship,
    Subscription,
    customer_key,
    customer_row,
    state_row,
    subscription_row,
)
from shared.timeutil import parse_time

log = logging.getLogger(__name__)

# The part of the run's budget left at its start that a refresh may use; the rest is the job's own work.
REFRESH_BUDGET_SHARE = 0.5


def wanted(settings: Settings, customer_id: str) -> bool:
    """Allow and deny lists of customer ids (allow empty = all)."""
    if settings.customer_allow_list and customer_id not in settings.customer_allow_list:
        return False
    return customer_id not in settings.customer_deny_list


def load_subscriptions(store: TableStore, settings: Settings) -> list[Subscription]:
    """Every subscription of the stored inventory whose customer is wanted."""
    return [Subscription.from_row(row) for row in store.all_rows(SUBSCRIPTIONS) if wanted(settings, row["customerId"])]


def refresh_if_due(
    client: PartnerCenterClient, store: TableStore, settings: Settings, run: SyncRun, *, now: datetime
) -> None:
    """Re-read the inventory from Partner Center when it is older than INVENTORY_REFRESH_HOURS."""
    meta = store.get(SYNC_STATE, INVENTORY_STATE, INVENTORY_META)
    refreshed_at = parse_time(meta["refreshedAt"]) if meta and meta.get("refreshedAt") else None
    if refreshed_at is None or now - refreshed_at >= timedelta(hours=settings.inventory_refresh_hours):
        refresh_inventory(client, store, settings, run, now=now)


def _list_customers(client: PartnerCenterClient, settings: Settings, run: SyncRun) -> list[tuple[str, Any]]:
    customers = []
    for page in client.customers():
        for record in page.items:
            try:
                customer_id = require_id(record, "id")
            except BadRecord as exc:
                run.quarantine(source="customers", raw=record, reason=str(exc))
                continue
            if wanted(settings, customer_id):
                customers.append((customer_id, record))
    return customers


def refresh_inventory(
    client: PartnerCenterClient, store: TableStore, settings: Settings, run: SyncRun, *, now: datetime
) -> None:
    """Re-read customers and subscriptions. Only a refresh that read everything removes what disappeared."""
    customers = _list_customers(client, settings, run)
    seen: set[tuple[str, str]] = set()
    customer_rows: list[dict[str, Any]] = []
    failures_before = len(run.errors)

    def refresh_customer(customer: tuple[str, Any]) -> bool:
        customer_id, record = customer
        relationship, error_code = Relationship.OK, None
        rows = []
        try:
            for page in client.subscriptions(customer_id):
                for item in page.items:
                    try:
                        rows.append(store.check(SUBSCRIPTIONS, subscription_row(customer_id, item)))
                    except (BadRecord, UnstorableEntity) as exc:
                        run.quarantine(source=f"customers/{customer_id}/subscriptions", raw=item, reason=str(exc))
        except PartnerCenterError as exc:
            if not exc.is_no_relationship:
                raise
            run.skip(
                f"customer {customer_id}",
                f"no relationship with this customer (403/20002, request_id={exc.request_id})",
            )
            relationship, error_code = Relationship.FORBIDDEN, exc.code
        store.upsert(SUBSCRIPTIONS, rows, on_refused=run.quarantine_refused)
        try:
            row = customer_row(customer_id, record, relationship=relationship, error_code=error_code)
            customer_rows.append(store.check(CUSTOMERS, row))
        except UnstorableEntity as exc:  # its subscriptions are kept; the record is in quarantine
            run.quarantine(source=f"customers/{customer_id}", raw=record, reason=str(exc))
        seen.update((r["PartitionKey"], r["RowKey"]) for r in rows)
        seen.add((CUSTOMER_PARTITION, customer_key(customer_id)))
        return True

    _, pending = for_each(
        run,
        customers,
        refresh_customer,
        concurrency=settings.sync_concurrency,
        name=lambda c: f"customer {c[0]}",
        out_of_time=run.budget_share(REFRESH_BUDGET_SHARE),
    )
    store.upsert(
        CUSTOMERS, customer_rows, on_refused=run.quarantine_refused
    )  # one partition: written together after the loop
    if pending or len(run.errors) > failures_before:
        log.warning("inventory refresh incomplete; keeping earlier rows and refreshing again next run")
        return
    for table in (SUBSCRIPTIONS, CUSTOMERS):
        for row in list(store.all_rows(table, select=["PartitionKey", "RowKey"])):
            if (row["PartitionKey"], row["RowKey"]) not in seen:
                store.delete(table, row["PartitionKey"], row["RowKey"])
    store.upsert_one(SYNC_STATE, state_row(INVENTORY_STATE, INVENTORY_META, refreshedAt=now.isoformat()))
