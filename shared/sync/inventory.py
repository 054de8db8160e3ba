"""The customers and subscriptions to sync: discovered from Partner Center, cached in tables.

Two explicit steps: ``refresh_if_due`` (a job calls it first; it calls Partner Center and writes the inventory
tables, within its own share of the run's budget) and ``load_subscriptions`` (reads the tables, nothing else).

A refresh always makes progress and costs only what changes can need:
- the customers listing (``GET /v1/customers``, 500 a page) is read when it is older than
  INVENTORY_REFRESH_HOURS; a complete listing removes the customers that left (and their subscriptions);
- a customer's subscriptions (``GET /v1/customers/{id}/subscriptions``, one call) are listed when the customer
  is new, and otherwise once its last listing is older than INVENTORY_SUBSCRIPTIONS_HOURS, stalest first;
- each customer's listing is stored as soon as it is read (``subscriptionsListedAt`` on its Customers row), so
  a refresh cut short by its budget share resumes with the customers still due, never from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from shared.partner_center import PartnerCenterClient, PartnerCenterError
from shared.records import BadRecord, require_id
from shared.settings import Settings
from shared.spend.refresh import mark
from shared.sync.context import RunContext
from shared.sync.runs import SyncRun
from shared.sync.state import StateWriter
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


def _age(value: Any, now: datetime) -> timedelta | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return now - parse_time(value)
    except ValueError:
        return None


def refresh_if_due(ctx: RunContext) -> None:
    """Bring the inventory up to date as far as its budget share allows; a failure is the run's, not fatal."""
    client, store, settings, run, now = ctx.partner_center, ctx.store, ctx.settings, ctx.run, ctx.now
    out_of_time = run.budget_share(REFRESH_BUDGET_SHARE)
    customers: Mapping[str, Mapping[str, Any]] = {row["RowKey"]: row for row in store.all_rows(CUSTOMERS)}
    meta = store.get(SYNC_STATE, INVENTORY_STATE, INVENTORY_META) or {}
    listing_age = _age(meta.get("refreshedAt"), now)
    try:
        if listing_age is None or listing_age >= timedelta(hours=settings.inventory_refresh_hours):
            customers = _refresh_customers(client, store, settings, run, customers, now=now)
    except PartnerCenterError as exc:
        run.fail("inventory: customers listing", exc)  # the stored inventory is used as it is
    due = _due(customers, settings, now)
    if not due:
        return
    # Each customer's listing time goes out with up to 100 others (within 30 s, and when the step ends).
    with StateWriter(store, CUSTOMER_PARTITION, table=CUSTOMERS, mode=UpdateMode.REPLACE) as listed:
        done, pending = for_each(
            run,
            due,
            lambda row: _list_subscriptions(client, store, run, row, listed, now=now),
            concurrency=settings.sync_concurrency,
            name=lambda row: f"customer {row['customerId']}",
            out_of_time=out_of_time,
        )
    if pending:
        run.note(
            f"inventory: listed the subscriptions of {done} of {len(due)} customers due within its share of "
            "the time budget; the next run continues with the rest, stalest first"
        )


def _due(customers: Mapping[str, Mapping[str, Any]], settings: Settings, now: datetime) -> list[Mapping[str, Any]]:
    """Customers whose subscriptions need listing: never listed first, then the stalest past the age limit."""
    limit = timedelta(hours=settings.inventory_subscriptions_hours)
    due = []
    for row in customers.values():
        age = _age(row.get("subscriptionsListedAt"), now)
        if (age is None or age >= limit) and wanted(settings, row["customerId"]):
            due.append(row)
    return sorted(due, key=lambda row: (row.get("subscriptionsListedAt") or "", row["RowKey"]))


def _refresh_customers(
    client: PartnerCenterClient,
    store: TableStore,
    settings: Settings,
    run: SyncRun,
    known: Mapping[str, Mapping[str, Any]],
    *,
    now: datetime,
) -> dict[str, Mapping[str, Any]]:
    """Read the whole customers listing; store new and changed customers, remove those that left."""
    listed: dict[str, Mapping[str, Any]] = {}
    rows = []
    for page in client.customers():
        for record in page.items:
            try:
                customer_id = require_id(record, "id")
            except BadRecord as exc:
                run.quarantine(source="customers", raw=record, reason=str(exc))
                continue
            if not wanted(settings, customer_id):
                continue
            key = customer_key(customer_id)
            earlier = known.get(key, {})
            # What the subscriptions listing learnt (relationship, when it ran) is kept from the stored row.
            row = customer_row(
                customer_id,
                record,
                relationship=Relationship(earlier.get("relationship", Relationship.OK)),
                error_code=earlier.get("errorCode"),
            )
            row["subscriptionsListedAt"] = earlier.get("subscriptionsListedAt")
            try:
                rows.append(store.check(CUSTOMERS, row))
            except UnstorableEntity as exc:
                run.quarantine(source=f"customers/{customer_id}", raw=record, reason=str(exc))
                if earlier:
                    listed[key] = earlier  # its stored row stays
                continue
            listed[key] = row
    store.upsert(CUSTOMERS, rows, on_refused=run.quarantine_refused)
    for key, gone in known.items():
        if key not in listed:
            _remove_customer(store, key, gone)
    store.upsert_one(SYNC_STATE, state_row(INVENTORY_STATE, INVENTORY_META, refreshedAt=now.isoformat()))
    return listed


def _remove_customer(store: TableStore, key: str, row: Mapping[str, Any]) -> None:
    log.info("customer %s is no longer listed; removing it and its subscriptions", row.get("customerId"))
    for sub in list(store.partition(SUBSCRIPTIONS, key, select=["PartitionKey", "RowKey"])):
        store.delete(SUBSCRIPTIONS, sub["PartitionKey"], sub["RowKey"])
    store.delete(CUSTOMERS, row["PartitionKey"], row["RowKey"])


def _list_subscriptions(
    client: PartnerCenterClient,
    store: TableStore,
    run: SyncRun,
    customer: Mapping[str, Any],
    listed: StateWriter,
    *,
    now: datetime,
) -> bool:
    """One customer's subscriptions, stored with the time they were listed; vanished ones removed."""
    customer_id = customer["customerId"]
    relationship, error_code = Relationship.OK, None
    rows = []
    try:
        for page in client.subscriptions(customer_id):
            for item in page.items:
                try:
                    rows.append(store.check(SUBSCRIPTIONS, subscription_row(customer_id, item)))
                except BadRecord as exc:  # unmappable, or a row the store cannot hold
                    run.quarantine(source=f"customers/{customer_id}/subscriptions", raw=item, reason=str(exc))
    except PartnerCenterError as exc:
        if not exc.is_no_relationship:
            raise
        run.skip(
            f"customer {customer_id}", f"no relationship with this customer (403/20002, request_id={exc.request_id})"
        )
        relationship, error_code = Relationship.FORBIDDEN, exc.code
    stored = list(store.partition(SUBSCRIPTIONS, customer["RowKey"], select=["PartitionKey", "RowKey", "raw"]))
    store.upsert(SUBSCRIPTIONS, rows, on_refused=run.quarantine_refused)
    seen = {row["RowKey"] for row in rows}
    for old in stored:
        if old["RowKey"] not in seen:
            store.delete(SUBSCRIPTIONS, old["PartitionKey"], old["RowKey"])
    before = {old["RowKey"]: old.get("raw") for old in stored}
    if before != {row["RowKey"]: row["raw"] for row in rows} or customer.get("relationship") != str(relationship):
        mark(store, [customer_id], [now.strftime("%Y-%m")])  # what its spend covers, and why not, changed
    fields = {k: v for k, v in customer.items() if k not in ("PartitionKey", "RowKey")}
    fields.update(relationship=str(relationship), errorCode=error_code, subscriptionsListedAt=now.isoformat())
    listed.save(customer["RowKey"], **fields)
    return True
