"""fetch_utilization: legacy subscriptions' Azure utilization, by aligned reported-time windows.

Partner Center selects utilization by when usage was *reported*, and the same meter, instance and day
can come back in two reported windows with partial quantities. So windows are contiguous, aligned and
never overlap, a row's identity includes its window, and a watermark per subscription (``doneThrough``)
moves only past a window whose every page was stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared import jsonutil
from shared.keys import digest
from shared.partner_center import DataNotReady, PartnerCenterClient, PartnerCenterError
from shared.settings import MAX_BACKFILL_DAYS, Settings
from shared.sync.inventory import Subscription, load_subscriptions
from shared.sync.records import BadRecord, optional_text, required_number, required_time
from shared.sync.runs import SyncRun
from shared.sync.state import StateWriter, load_states, stalest_first
from shared.sync.workers import for_each
from shared.table_store import BatchWriter, TableStore
from shared.timeutil import floor_to, parse_time, utc_text

log = logging.getLogger(__name__)

TABLE = "Utilization"
STATE_PARTITION = "utilization"
PAGE_SIZE = 1000


def windows_to_fetch(
    done_through: datetime | None, *, now: datetime, settings: Settings
) -> list[tuple[datetime, datetime]]:
    """The aligned windows after the watermark that ended at least UTILIZATION_LAG_HOURS ago.

    The first run starts UTILIZATION_BACKFILL_DAYS back; nothing starts earlier than the ~90 days the
    service keeps, so a long-idle subscription resumes at the oldest data still available.
    """
    width = timedelta(hours=settings.utilization_window_hours)
    last_end = floor_to(now - timedelta(hours=settings.utilization_lag_hours), settings.utilization_window_hours)
    oldest = floor_to(now - timedelta(days=MAX_BACKFILL_DAYS), settings.utilization_window_hours)
    if done_through is None:
        start = floor_to(now - timedelta(days=settings.utilization_backfill_days), settings.utilization_window_hours)
    else:
        start = max(done_through, oldest)
    windows = []
    while start + width <= last_end:
        windows.append((start, start + width))
        start += width
    return windows


def utilization_row(
    sub: Subscription, record: Mapping[str, Any], window_start: datetime, window_end: datetime
) -> dict[str, Any]:
    """One AzureUtilizationRecord as a row whose identity is (window, meter, instance, usage start, end)."""
    if not isinstance(record, Mapping):
        raise BadRecord("record is not a JSON object")
    usage_start = required_time(record, "usageStartTime")
    usage_end = required_time(record, "usageEndTime")
    resource = record.get("resource")
    meter_id = resource.get("id") if isinstance(resource, Mapping) else None
    if not isinstance(meter_id, str) or not meter_id:
        raise BadRecord("missing resource.id (meter)")
    quantity = required_number(record, "quantity")
    instance = record.get("instanceData")
    resource_uri = instance.get("resourceUri") if isinstance(instance, Mapping) else None
    start_text = utc_text(usage_start)
    identity = digest(meter_id.lower(), (resource_uri or "").lower(), start_text, utc_text(usage_end))
    return {
        "PartitionKey": sub.key,
        "RowKey": f"{start_text}|{window_start.strftime('%Y%m%dT%H%MZ')}|{identity}",
        "customerId": sub.customer_id,
        "subscriptionId": sub.subscription_id,
        "raw": jsonutil.dumps(record),
        "usageStartUtc": start_text,
        "usageEndUtc": utc_text(usage_end),
        "windowStart": utc_text(window_start),
        "windowEnd": utc_text(window_end),
        "meterId": meter_id,
        "resourceUri": resource_uri,
        "quantity": quantity,
        "unit": optional_text(record, "unit"),
    }


def fetch_window(
    client: PartnerCenterClient,
    writer: BatchWriter,
    settings: Settings,
    run: SyncRun,
    sub: Subscription,
    window: tuple[datetime, datetime],
) -> None:
    """Every page of one window, each handed to the writer as it arrives. Raises if a page could not be read."""
    start, end = window
    seen: dict[str, int] = {}
    for page in client.utilization(
        sub.customer_id,
        sub.subscription_id,
        start=start,
        end=end,
        granularity=settings.utilization_granularity,
        show_details=settings.utilization_show_details,
        size=PAGE_SIZE,
    ):
        for index, record in enumerate(page.items):
            try:
                row = utilization_row(sub, record, start, end)
            except BadRecord as exc:
                source = f"{sub.customer_id}/{sub.subscription_id}/{utc_text(start)}/page-{page.number}/item-{index}"
                run.quarantine(source=source, raw=record, reason=str(exc))
                continue
            # Two records with one identity in one window (rare; infoFields differ): keep both, numbered
            # in the order received, which is deterministic for a given window.
            repeat = seen.get(row["RowKey"], 0)
            seen[row["RowKey"]] = repeat + 1
            if repeat:
                row["RowKey"] += f"~{repeat}"
            writer.add(row)


def sync_utilization(
    client: PartnerCenterClient, store: TableStore, settings: Settings, run: SyncRun, *, now: datetime
) -> None:
    """Bring every legacy subscription's watermark as close to now as the data and the time budget allow."""
    subscriptions = []
    for sub in load_subscriptions(client, store, settings, run, now=now):
        if sub.kind == "legacy":
            subscriptions.append(sub)
        elif sub.kind == "azure_plan":
            run.skip(sub.label, "Azure plan subscription: the utilization endpoint covers legacy MS-AZR-0145P only")
    states = load_states(store, STATE_PARTITION)
    watermarks = StateWriter(store, STATE_PARTITION)

    def sync_one(sub: Subscription) -> bool:
        state = states.get(sub.key, {})
        done_through = parse_time(state["doneThrough"]) if state.get("doneThrough") else None
        # One writer for all of a subscription's windows: rows of small windows share transactions, and
        # the watermark is written once, after the rows it covers were sent.
        writer = store.writer(TABLE)
        stored_through = None
        finished = True
        try:
            for window in windows_to_fetch(done_through, now=now, settings=settings):
                if run.out_of_time():
                    finished = False
                    break
                try:
                    fetch_window(client, writer, settings, run, sub, window)
                except DataNotReady:
                    log.info("%s: window %s not ready (204); left for the next run", sub.label, utc_text(window[0]))
                    finished = False
                    break
                except PartnerCenterError as exc:
                    if exc.is_no_relationship:
                        run.skip(sub.label, "no relationship with this customer (403/20002)")
                        break
                    raise
                stored_through = window[1]
        finally:
            if not writer.failed:
                writer.flush()
            run.add(rows=writer.written)
            # A batch that failed held rows of windows read in full: the watermark must not pass them.
            if stored_through is not None and not writer.failed:
                watermarks.save(sub.key, doneThrough=utc_text(stored_through))
        return finished

    with watermarks:  # sends what is queued however the run ends
        done, pending = for_each(
            run,
            stalest_first(subscriptions, states, "doneThrough"),
            sync_one,
            concurrency=settings.sync_concurrency,
            name=lambda s: s.label,
        )
    run.add(done=done, pending=pending)
