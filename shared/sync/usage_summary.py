"""fetch_usage_summary: each Azure subscription's usage summary, latest and one per billing period."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.records import BadRecord
from shared.spend.project import months_between
from shared.spend.refresh import mark
from shared.sync import inventory
from shared.sync.context import RunContext
from shared.sync.each_subscription import Coverage, sync_each_subscription
from shared.sync.state import StateWriter
from shared.tables import (
    LATEST,
    USAGE_SUMMARIES,
    USAGE_SUMMARY_STATE,
    Subscription,
    SubscriptionKind,
    usage_summary_rows,
)

COVERAGE = Coverage(kinds=frozenset({SubscriptionKind.LEGACY, SubscriptionKind.AZURE_PLAN}))


def sync_usage_summaries(ctx: RunContext) -> None:
    """Fetch every legacy and Azure plan subscription's summary, stalest first, within the time budget."""
    inventory.refresh_if_due(ctx)
    client, store, run, now = ctx.partner_center, ctx.store, ctx.run, ctx.now

    def sync_one(sub: Subscription, state: Mapping[str, Any], saved: StateWriter) -> bool:
        record = client.usage_summary(sub.customer_id, sub.subscription_id)
        try:
            rows = [
                store.check(USAGE_SUMMARIES, r)
                for r in usage_summary_rows(sub.customer_id, sub.subscription_id, record)
            ]
        except BadRecord as exc:  # unmappable, or a row the store cannot hold
            run.quarantine(source=f"{sub.customer_id}/{sub.subscription_id}/usagesummary", raw=record, reason=str(exc))
            return True
        before = store.get(USAGE_SUMMARIES, sub.key, LATEST)
        run.add(rows=store.upsert(USAGE_SUMMARIES, rows, on_refused=run.quarantine_refused))
        if before is None or before.get("raw") != rows[0]["raw"]:
            start = str(rows[0]["billingStartDate"])[:7]
            mark(store, [sub.customer_id], months_between(start + "-01", now.date().isoformat()))
        saved.save(sub.key, lastSuccessAt=now.isoformat())
        return True

    sync_each_subscription(
        ctx,
        coverage=COVERAGE,
        state_partition=USAGE_SUMMARY_STATE,
        staleness_field="lastSuccessAt",
        work=sync_one,
    )
