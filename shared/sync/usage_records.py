"""fetch_usage_records: every customer's monthly usage record, latest and one snapshot per month."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared import jsonutil
from shared.keys import make_key
from shared.partner_center import PartnerCenterClient
from shared.sync.records import BadRecord, optional_number, optional_text, optional_time, require_id
from shared.sync.runs import SyncRun
from shared.table_store import TableStore

log = logging.getLogger(__name__)

TABLE = "UsageRecords"
LATEST = "latest"


def usage_record_properties(record: Mapping[str, Any], billing_month: str) -> dict[str, Any]:
    """Row properties of one CustomerMonthlyUsageRecord; raises BadRecord with the reason."""
    if not isinstance(record, Mapping):
        raise BadRecord("record is not a JSON object")
    customer_id = require_id(record, "id", "resourceId")
    optional_time(record, "lastModifiedDate")
    budget = record.get("budget")
    if budget is not None and not isinstance(budget, Mapping):
        raise BadRecord("budget is not an object")
    return {
        "customerId": customer_id,
        "billingMonth": billing_month,
        "raw": jsonutil.dumps(record),
        "totalCost": optional_number(record, "totalCost"),
        "usdTotalCost": optional_number(record, "usdTotalCost"),
        "currencyCode": optional_text(record, "currencyCode"),
        "currencyLocale": optional_text(record, "currencyLocale"),
        "name": optional_text(record, "name") or optional_text(record, "resourceName"),
        "isUpgraded": record.get("isUpgraded") if isinstance(record.get("isUpgraded"), bool) else None,
        "lastModifiedDate": optional_text(record, "lastModifiedDate"),
    }


def sync_usage_records(client: PartnerCenterClient, store: TableStore, run: SyncRun, *, now: datetime) -> None:
    """Store every page as it arrives: the latest row per customer and this billing month's snapshot.

    The billing month is the UTC month of the fetch: upstream shows only the current period, so the last run
    of a month leaves that month's final figures. Customers that drop out of the response lose their
    ``latest`` row once a run has read every page; their monthly snapshots stay.
    """
    month = now.strftime("%Y-%m")
    seen: set[str] = set()
    for page in client.usage_records():
        rows = []
        for index, record in enumerate(page.items):
            try:
                properties = usage_record_properties(record, month)
            except BadRecord as exc:
                run.quarantine(source=f"usagerecords/page-{page.number}/item-{index}", raw=record, reason=str(exc))
                if isinstance(record, Mapping) and isinstance(record.get("id"), str):
                    seen.add(make_key(record["id"].strip().lower()))  # keep its last good row
                continue
            key = make_key(properties["customerId"])
            seen.add(key)
            rows.append({"PartitionKey": LATEST, "RowKey": key, **properties})
            rows.append({"PartitionKey": month, "RowKey": key, **properties})
        run.add(rows=store.upsert(TABLE, rows))
    stale = [e["RowKey"] for e in store.partition(TABLE, LATEST, select=["RowKey"]) if e["RowKey"] not in seen]
    for row_key in stale:
        store.delete(TABLE, LATEST, row_key)
    run.add(done=len(seen))
    if stale:
        log.info("removed %d customers no longer in usagerecords from the latest rows", len(stale))
