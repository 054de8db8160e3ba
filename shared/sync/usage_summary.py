"""fetch_usage_summary: each Azure subscription's usage summary, latest and one per billing period."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared import jsonutil
from shared.partner_center import PartnerCenterClient, PartnerCenterError
from shared.settings import Settings
from shared.sync.inventory import Subscription, load_subscriptions
from shared.sync.records import BadRecord, optional_number, optional_text, required_time
from shared.sync.runs import SyncRun
from shared.sync.state import StateWriter, load_states, stalest_first
from shared.sync.workers import for_each
from shared.table_store import TableStore

TABLE = "UsageSummaries"
STATE_PARTITION = "usage_summary"
AZURE_KINDS = ("legacy", "azure_plan")


def summary_properties(sub: Subscription, record: Mapping[str, Any]) -> dict[str, Any]:
    """Row properties of one SubscriptionUsageSummary; raises BadRecord with the reason."""
    required_time(record, "billingStartDate")
    required_time(record, "billingEndDate")
    return {
        "customerId": sub.customer_id,
        "subscriptionId": sub.subscription_id,
        "raw": jsonutil.dumps(record),
        "billingStartDate": record["billingStartDate"],
        "billingEndDate": record["billingEndDate"],
        "totalCost": optional_number(record, "totalCost"),
        "usdTotalCost": optional_number(record, "usdTotalCost"),
        "currencyCode": optional_text(record, "currencyCode"),
        "currencyLocale": optional_text(record, "currencyLocale"),
        "lastModifiedDate": optional_text(record, "lastModifiedDate"),
    }


def period_key(billing_start: str) -> str:
    """``period-YYYY-MM-DD``: the date of the period's start as Partner Center wrote it (its local date)."""
    return "period-" + billing_start[:10]


def sync_usage_summaries(
    client: PartnerCenterClient, store: TableStore, settings: Settings, run: SyncRun, *, now: datetime
) -> None:
    """Fetch every legacy and Azure plan subscription's summary, stalest first, within the time budget."""
    subscriptions = [s for s in load_subscriptions(client, store, settings, run, now=now) if s.kind in AZURE_KINDS]
    states = load_states(store, STATE_PARTITION)
    successes = StateWriter(store, STATE_PARTITION)

    def sync_one(sub: Subscription) -> bool:
        try:
            record = client.usage_summary(sub.customer_id, sub.subscription_id)
        except PartnerCenterError as exc:
            if exc.is_no_relationship:
                run.skip(sub.label, "no relationship with this customer (403/20002)")
                return True
            raise
        try:
            properties = summary_properties(sub, record)
        except BadRecord as exc:
            run.quarantine(source=f"{sub.customer_id}/{sub.subscription_id}/usagesummary", raw=record, reason=str(exc))
            return True
        rows = [
            {"PartitionKey": sub.key, "RowKey": "latest", **properties},
            {"PartitionKey": sub.key, "RowKey": period_key(properties["billingStartDate"]), **properties},
        ]
        run.add(rows=store.upsert(TABLE, rows))
        successes.save(sub.key, lastSuccessAt=now.isoformat())
        return True

    with successes:  # sends what is queued however the run ends
        done, pending = for_each(
            run,
            stalest_first(subscriptions, states, "lastSuccessAt"),
            sync_one,
            concurrency=settings.sync_concurrency,
            name=lambda s: s.label,
        )
    run.add(done=done, pending=pending)
