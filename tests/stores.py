"""The app's TableStore with what only tests need: request counts, and dropping a test's own tables."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from shared.table_store import ServicePage, TableStore


@dataclass
class StoreStats:
    """Transactions sent, entities written and query pages read."""

    transactions: int = 0
    entities_written: int = 0
    queries: int = 0
    by_table: Counter[str] = field(default_factory=Counter)  # entities written per table (full name)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class CountingStore(TableStore):
    """A real TableStore on Azurite that also counts its requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = StoreStats()

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        written = super()._submit(table, batch, mode)
        self.stats.add(transactions=1, entities_written=len(batch))
        with self.stats._lock:
            self.stats.by_table[table.table_name.removeprefix(self.prefix)] += len(batch)
        return written

    def get(self, name: str, partition_key: str, row_key: str) -> dict[str, Any] | None:
        self.stats.add(queries=1)
        return super().get(name, partition_key, row_key)

    def query_pages(self, *args: Any, **kwargs: Any) -> Iterator[ServicePage]:
        for page in super().query_pages(*args, **kwargs):
            self.stats.add(queries=1)
            yield page

    def delete(self, name: str, partition_key: str, row_key: str) -> None:
        super().delete(name, partition_key, row_key)
        self.stats.add(transactions=1)


def drop_tables(store: TableStore) -> None:
    """Delete every table under the store's prefix."""
    service = store._service
    for table in list(service.list_tables()):
        if table.name.startswith(store.prefix):
            service.delete_table(table.name)
