"""Per-subscription sync state (watermarks, last success) and stalest-first ordering."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.sync.inventory import Subscription
from shared.table_store import TableStore

STATE = "SyncState"


def load_states(store: TableStore, partition: str) -> dict[str, dict[str, Any]]:
    """Every state row of one job, by subscription key (one query)."""
    return {row["RowKey"]: row for row in store.partition(STATE, partition)}


def stalest_first(
    subscriptions: Iterable[Subscription], states: dict[str, dict[str, Any]], field: str
) -> list[Subscription]:
    """Never-synced subscriptions first, then by the oldest ``field`` (an ISO UTC time), ties by key."""

    def age(sub: Subscription) -> tuple[int, str, str]:
        value = states.get(sub.key, {}).get(field)
        return (0, "", sub.key) if not value else (1, value, sub.key)

    return sorted(subscriptions, key=age)


def save_state(store: TableStore, partition: str, key: str, **fields: Any) -> None:
    """Merge fields into a subscription's state row."""
    store.merge_one(STATE, {"PartitionKey": partition, "RowKey": key, **fields})
