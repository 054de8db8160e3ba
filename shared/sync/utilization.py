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

from shared.partner_center import DataNotReady, PartnerCenterClient
from shared.records import BadRecord
from shared.settings import MAX_BACKFILL_DAYS, Settings
from shared.spend.refresh import mark
from shared.spend.rows import UTILIZATION_DAYS, month_of
from shared.spend.usage import Tally
from shared.sync import inventory
from shared.sync.context import RunContext
from shared.sync.each_subscription import Coverage, sync_each_subscription
from shared.sync.runs import SyncRun
from shared.sync.state import StateWriter
from shared.table_store import BatchWriter
from shared.tables import (
    UTILIZATION,
    UTILIZATION_STATE,
    Subscription,
    SubscriptionKind,
    utilization_row,
    window_key,
)
from shared.timeutil import floor_to, parse_time, utc_text

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
COVERAGE = Coverage(
    kinds=frozenset({SubscriptionKind.LEGACY}),
    skip_reasons={
        SubscriptionKind.AZURE_PLAN: "Azure plan subscription: the utilization endpoint covers legacy MS-AZR-0145P only"
    },
)


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


def fetch_window(
    client: PartnerCenterClient,
    writer: BatchWriter,
    settings: Settings,
    run: SyncRun,
    sub: Subscription,
    window: tuple[datetime, datetime],
) -> Tally:
    """Every page of one window, each row handed to the writer as it arrives; returns the window's usage per day
    and meter (what the spend read model prices). Raises if a page could not be read."""
    start, end = window
    seen: dict[str, int] = {}
    tally = Tally(sub.customer_id.lower(), sub.subscription_id.lower(), window_key(start))
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
                row = utilization_row(sub.customer_id, sub.subscription_id, record, start, end)
                # Two records with one identity in one window (rare; infoFields differ): keep both, numbered
                # in the order received, which is deterministic for a given window.
                repeat = seen.get(row["RowKey"], 0)
                seen[row["RowKey"]] = repeat + 1
                if repeat:
                    row["RowKey"] += f"~{repeat}"
                writer.add(row)  # checks what the service would refuse before queueing
                tally.add(row["RowKey"][:10], record, row["quantity"])  # a RowKey starts with the usage start (UTC)
            except BadRecord as exc:  # unmappable, or a row the store cannot hold
                source = f"{sub.customer_id}/{sub.subscription_id}/{utc_text(start)}/page-{page.number}/item-{index}"
                run.quarantine(source=source, raw=record, reason=str(exc))
    return tally


def sync_utilization(ctx: RunContext) -> None:
    """Bring every legacy subscription's watermark as close to now as the data and the time budget allow."""
    inventory.refresh_if_due(ctx)
    client, store, settings, run, now = ctx.partner_center, ctx.store, ctx.settings, ctx.run, ctx.now

    def sync_one(sub: Subscription, state: Mapping[str, Any], watermarks: StateWriter) -> bool:
        done_through = parse_time(state["doneThrough"]) if state.get("doneThrough") else None
        # One writer for all of a subscription's windows: rows of small windows share transactions. The
        # watermark moves only past windows whose every row was sent.
        writer = store.writer(UTILIZATION, on_refused=run.quarantine_refused)
        stored_through = None
        finished = True
        tallies: list[Tally] = []
        try:
            for window in windows_to_fetch(done_through, now=now, settings=settings):
                if run.out_of_time():
                    finished = False
                    break
                try:
                    tallies.append(fetch_window(client, writer, settings, run, sub, window))
                except DataNotReady:
                    log.info("%s: window %s not ready (204); left for the next run", sub.label, utc_text(window[0]))
                    finished = False
                    break
                stored_through = window[1]
        finally:
            # A batch that failed held rows of windows read in full: then nothing is flushed and the
            # watermark stays where it was.
            if not writer.failed:
                writer.flush()
            run.add(rows=writer.written)
            if stored_through is not None and not writer.failed:
                # The windows read in full: their usage days and their months' marks, then the watermark past
                # them (a crash in between fetches the windows again, replacing the same rows).
                days = [day for tally in tallies for day in tally.days()]
                store.upsert(UTILIZATION_DAYS, [day.row() for day in days])
                mark(store, [sub.customer_id], {month_of(day.day) for day in days})
                watermarks.save(sub.key, doneThrough=utc_text(stored_through))
        return finished

    sync_each_subscription(
        ctx,
        coverage=COVERAGE,
        state_partition=UTILIZATION_STATE,
        staleness_field="doneThrough",
        work=sync_one,
    )
