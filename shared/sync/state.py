"""Per-subscription sync state (watermarks, last success) and stalest-first ordering."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from azure.data.tables import UpdateMode

from shared.table_store import MAX_BATCH_OPERATIONS, TableStore
from shared.tables import SYNC_STATE, Subscription, state_row

STATE_FLUSH_SECONDS = 30.0


def load_states(store: TableStore, partition: str) -> dict[str, dict[str, Any]]:
    """Every state row of one job, by subscription key (one query)."""
    return {row["RowKey"]: row for row in store.partition(SYNC_STATE, partition)}


def stalest_first(
    subscriptions: Iterable[Subscription], states: dict[str, dict[str, Any]], field: str
) -> list[Subscription]:
    """Never-synced subscriptions first, then by the oldest ``field`` (an ISO UTC time), ties by key."""

    def age(sub: Subscription) -> tuple[int, str, str]:
        value = states.get(sub.key, {}).get(field)
        return (0, "", sub.key) if not value else (1, value, sub.key)

    return sorted(subscriptions, key=age)


class StateWriter:
    """Merges a job's subscription state rows in shared transactions: one per 100 subscriptions, not one each.

    Rows go out when 100 are waiting, when the oldest has waited ``flush_seconds``, and on ``flush`` (the
    ``with`` block's end, however it ends). A process killed before that loses only these markers of
    progress, never data: the next run fetches those subscriptions again and writes the same rows.
    Safe to call from the run's worker threads. ``table`` and ``mode`` serve other progress rows the same way
    (the inventory's customers, replaced whole).
    """

    def __init__(
        self,
        store: TableStore,
        partition: str,
        *,
        table: str = SYNC_STATE,
        mode: UpdateMode = UpdateMode.MERGE,
        flush_seconds: float = STATE_FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = store.writer(table, mode=mode)
        self._partition = partition
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._oldest = 0.0  # when the first row now buffered was queued
        self._lock = threading.Lock()

    def save(self, key: str, **fields: Any) -> None:
        """Queue a merge of ``fields`` into one subscription's state row."""
        with self._lock:
            self._writer.add(state_row(self._partition, key, **fields))
            now = self._clock()
            if self._writer.pending == 1:
                self._oldest = now
            if self._writer.pending >= MAX_BATCH_OPERATIONS or now - self._oldest >= self._flush_seconds:
                self._writer.flush()

    def flush(self) -> None:
        """Send every queued merge."""
        with self._lock:
            self._writer.flush()

    def __enter__(self) -> StateWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.flush()
