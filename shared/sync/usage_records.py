"""fetch_usage_records: every customer's monthly usage record, latest and one snapshot per month."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from shared.records import BadRecord
from shared.spend.refresh import mark
from shared.sync.context import RunContext
from shared.tables import LATEST, USAGE_RECORDS, customer_key, usage_record_rows

log = logging.getLogger(__name__)


def sync_usage_records(ctx: RunContext) -> None:
    """Store every page as it arrives: the latest row per customer and this billing month's snapshot.

    The billing month is the UTC month of the fetch: upstream shows only the current period, so the last run
    of a month leaves that month's final figures. Customers that drop out of the response lose their
    ``latest`` row once a run has read every page; their monthly snapshots stay. ``done`` counts customers.
    """
    client, store, run = ctx.partner_center, ctx.store, ctx.run
    month = ctx.now.strftime("%Y-%m")
    stored = {row["RowKey"]: row.get("raw") for row in store.partition(USAGE_RECORDS, month, select=["RowKey", "raw"])}
    changed: list[str] = []
    seen: set[str] = set()
    writer = store.writer(USAGE_RECORDS, on_refused=run.quarantine_refused)
    for page in client.usage_records():
        for index, record in enumerate(page.items):
            try:
                record_rows = [store.check(USAGE_RECORDS, row) for row in usage_record_rows(record, month)]
            except BadRecord as exc:  # unmappable, or a row the store cannot hold
                run.quarantine(source=f"usagerecords/page-{page.number}/item-{index}", raw=record, reason=str(exc))
                if isinstance(record, Mapping) and isinstance(record.get("id"), str):
                    seen.add(customer_key(record["id"].strip()))  # keep its last good row
                continue
            seen.add(record_rows[0]["RowKey"])
            if stored.get(record_rows[0]["RowKey"]) != record_rows[0]["raw"]:
                changed.append(record_rows[0]["customerId"])
            for row in record_rows:
                writer.add(row)
        writer.flush()  # each page stored before the next is read
        mark(store, changed, [month])  # the spend shows the record's total and budget beside its own
        changed.clear()
    run.add(rows=writer.written)
    stale = [e["RowKey"] for e in store.partition(USAGE_RECORDS, LATEST, select=["RowKey"]) if e["RowKey"] not in seen]
    for row_key in stale:
        store.delete(USAGE_RECORDS, LATEST, row_key)
    run.add(done=len(seen))
    if stale:
        log.info("removed %d customers no longer in usagerecords from the latest rows", len(stale))
