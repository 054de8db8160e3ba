"""Azure Table Storage access: batched upserts by partition, size checks, parameterised queries."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.paging import PageIterator
from azure.data.tables import TableClient, TableEntity, TableServiceClient, UpdateMode

from shared import table_batch
from shared.identity import azure_credential
from shared.records import BadRecord
from shared.retry import DONE, Outcome, RetryPolicy
from shared.settings import Settings, SettingsError

log = logging.getLogger(__name__)

MAX_BATCH_OPERATIONS = 100
MAX_BATCH_BYTES = 4 * 1024 * 1024 - 64 * 1024  # 4 MiB per transaction, less room for the envelope
MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTY_BYTES = 64 * 1024
MAX_PROPERTIES = 252
# azure-core does not retry a POSTed batch whose connection dropped; these are upserts (whole-row replaces or
# property merges), so sending the same batch again is safe. Statuses are left to the SDK's own pipeline.
WRITE_RETRY = RetryPolicy(
    max_attempts=3,
    backoff_base=0.2,
    backoff_max=1.0,
    not_ready_attempts=0,
    refresh_token_on_401=False,
    retry_statuses=frozenset(),
)


class UnstorableEntity(BadRecord):
    """Table Storage would refuse this entity; raised before anything is sent. The message is the reason.

    A BadRecord: a record whose row the store cannot hold is quarantined like one that cannot be mapped."""


class EntityTooLarge(UnstorableEntity):
    """An entity breaks a Table Storage size limit."""


# Called with an entity the service refused (400) and the reason; without one, a refusal raises.
Refused = Callable[[Mapping[str, Any], str], None]


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return 4 + len(value.encode("utf-16-le"))
    if isinstance(value, bytes):
        return 4 + len(value)
    if isinstance(value, bool):
        return 1
    return 8


def entity_size(entity: Mapping[str, Any]) -> int:
    """Stored size of an entity by the service's published formula (UTF-16 strings)."""
    size = 4
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            size += len(str(value).encode("utf-16-le"))
        else:
            size += 8 + len(name.encode("utf-16-le")) + _value_size(value)
    return size


def prepare_entity(table: str, entity: Mapping[str, Any]) -> dict[str, Any]:
    """Decimals as strings (every digit kept), None dropped; what the service would refuse raises with the reason.

    Checked: text UTF-8 cannot encode (a lone surrogate), each property's 64 KiB, 252 properties, 1 MiB.
    """
    return sized_entity(table, entity)[0]


def sized_entity(table: str, entity: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """``prepare_entity`` and the entity's stored size (``entity_size``), summed in the same single pass."""
    prepared: dict[str, Any] = {}
    size = 4
    for name, value in entity.items():
        if value is None:
            continue
        if isinstance(value, Decimal):
            value = str(value)
        try:
            value_bytes = _value_size(value) - 4  # UTF-16, as the service counts; a lone surrogate cannot encode
        except UnicodeEncodeError as exc:
            raise UnstorableEntity(
                f"property {name!r} holds text that cannot be encoded (a lone surrogate at character {exc.start})"
            ) from None
        if value_bytes > MAX_PROPERTY_BYTES:
            raise EntityTooLarge(
                f"property {name!r} of entity ({entity.get('PartitionKey')!r}, {entity.get('RowKey')!r}) "
                f"in table {table} is {value_bytes} bytes; Table Storage allows {MAX_PROPERTY_BYTES}"
            )
        prepared[name] = value
        if name in ("PartitionKey", "RowKey"):
            size += value_bytes
        else:
            size += 8 + 2 * len(name) + value_bytes + 4  # names are ASCII: two UTF-16 bytes a character
    if len(prepared) - 2 > MAX_PROPERTIES:
        raise EntityTooLarge(f"entity in table {table} has {len(prepared) - 2} properties; the limit is 252")
    if size > MAX_ENTITY_BYTES:
        raise EntityTooLarge(
            f"entity ({entity.get('PartitionKey')!r}, {entity.get('RowKey')!r}) in table {table} is {size} bytes; "
            f"Table Storage allows {MAX_ENTITY_BYTES}"
        )
    return prepared, size


def written_at(entity: Mapping[str, Any]) -> datetime | None:
    """When the service last wrote an entity read from it (its Timestamp), or None when unknown."""
    metadata = getattr(entity, "metadata", None)
    stamp = metadata.get("timestamp") if isinstance(metadata, Mapping) else None
    return stamp if isinstance(stamp, datetime) else None


@dataclass(frozen=True)
class ServicePage:
    """One response of a table query: its entities, and whether the service handed back a continuation."""

    entities: list[dict[str, Any]]
    more: bool


class TableStore:
    """All tables of the app, by short name (``Utilization``), under one prefix."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = "pc",
        retry: RetryPolicy = WRITE_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._service = service
        self.prefix = prefix
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()
        self._retry = retry
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: Settings) -> TableStore:
        """Connection string (Azurite) or table service URI with a managed identity (Azure)."""
        if settings.storage_connection_string:
            service = TableServiceClient.from_connection_string(settings.storage_connection_string)
        elif settings.table_service_uri:
            service = TableServiceClient(
                endpoint=settings.table_service_uri, credential=azure_credential(settings.storage_client_id)
            )
        else:
            raise SettingsError("set USAGE_STORAGE__tableServiceUri (Azure) or USAGE_STORAGE (Azurite)")
        return cls(service, prefix=settings.table_prefix)

    def table_name(self, name: str) -> str:
        """The full table name for a short name."""
        return self.prefix + name

    def table(self, name: str) -> TableClient:
        """The client of one table, created on first use."""
        client = self._clients.get(name)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                full = self.table_name(name)
                try:
                    self._service.create_table(full)
                    log.info("created table %s", full)
                except ResourceExistsError:
                    pass
                client = self._service.get_table_client(full)
                self._clients[name] = client
        return client

    def check(self, name: str, entity: Mapping[str, Any]) -> dict[str, Any]:
        """The entity as it would be sent; UnstorableEntity says why the service would refuse it."""
        return prepare_entity(self.table_name(name), entity)

    def upsert(self, name: str, entities: Iterable[Mapping[str, Any]], *, on_refused: Refused | None = None) -> int:
        """Upsert (replace) entities in transactions of at most 100 per partition; returns rows written."""
        writer = self.writer(name, on_refused=on_refused)
        for entity in entities:
            writer.add(entity)
        return writer.flush()

    def writer(
        self, name: str, *, mode: UpdateMode = UpdateMode.REPLACE, on_refused: Refused | None = None
    ) -> BatchWriter:
        """A writer that sends full transactions as rows come and the rest on ``flush``.

        ``mode`` REPLACE (the default) writes whole rows; MERGE sets only the properties given. ``on_refused``
        is handed each row the service refuses (400) with the reason, and the other rows are written.
        """
        return BatchWriter(self, name, mode=mode, on_refused=on_refused)

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        dropped: list[BaseException] = []

        def send() -> tuple[int | None, Outcome]:
            try:
                if len(batch) == 1:
                    table.upsert_entity(batch[0], mode=mode)
                else:
                    table_batch.submit(table, table_batch.operations_of(batch, mode))
            except (ServiceRequestError, ServiceResponseError) as exc:
                dropped[:] = [exc]
                return None, Outcome.of_error(exc)
            return len(batch), DONE

        # No deadline: the run's last writes (state, run record) are what the margin before the timeout is for.
        final = self._retry.run(send, sleep=self._sleep, describe=lambda: f"table write to {table.table_name}")
        if final.result is None:
            raise dropped[0]
        return final.result

    def upsert_one(self, name: str, entity: Mapping[str, Any]) -> None:
        """Upsert (replace) a single entity."""
        self.upsert(name, [entity])

    def merge_one(self, name: str, entity: Mapping[str, Any]) -> None:
        """Set the given properties of one entity (created if missing); its other properties stay."""
        writer = self.writer(name, mode=UpdateMode.MERGE)
        writer.add(entity)
        writer.flush()

    def get(self, name: str, partition_key: str, row_key: str) -> dict[str, Any] | None:
        """One entity (its service metadata kept: ``written_at``), or None."""
        try:
            return self.table(name).get_entity(partition_key, row_key)
        except ResourceNotFoundError:
            return None

    def query_pages(
        self,
        name: str,
        query_filter: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        select: list[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[ServicePage]:
        """The service's own pages of a parameterised query, each saying whether the service has more."""
        # by_page() is typed as a plain iterator; it is azure-core's PageIterator, which has the continuation.
        pages = cast(
            "PageIterator[TableEntity]",
            self.table(name)
            .query_entities(query_filter, parameters=dict(parameters or {}), select=select, results_per_page=page_size)
            .by_page(),
        )
        for page in pages:
            more = pages.continuation_token is not None
            yield ServicePage(list(page), more)
            if not more:
                return

    def query(
        self, name: str, query_filter: str, parameters: Mapping[str, Any] | None = None, **options: Any
    ) -> Iterator[dict[str, Any]]:
        """Entities matching an OData filter whose values are passed only as ``@parameters``; ``written_at`` works
        on them when ``Timestamp`` is selected (or nothing is).

        ``options``: ``select`` and ``page_size`` as for ``query_pages``, and ``limit`` (the most entities read).
        """
        limit: int | None = options.pop("limit", None)
        count = 0
        for page in self.query_pages(name, query_filter, parameters, **options):
            for entity in page.entities:
                yield entity
                count += 1
                if limit is not None and count >= limit:
                    return

    def partition(self, name: str, partition_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every entity of one partition, in RowKey order."""
        return self.query(name, "PartitionKey eq @pk", {"pk": partition_key}, **kwargs)

    def replace_if(self, name: str, entity: Mapping[str, Any], etag: str | None) -> str | None:
        """Replace one entity only if it is unchanged since it was read with ``etag`` (None: only if it does not
        exist yet); its new ETag, or None when another writer came first (412, or 409 for one that now exists)."""
        table = self.table(name)
        prepared = self.check(name, entity)
        try:
            if etag is None:
                answer = table.create_entity(prepared)
            else:
                answer = table.update_entity(
                    prepared, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except ResourceExistsError:
            return None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return None
            raise
        return str(answer.get("etag") or "*")

    def drop(self, name: str) -> None:
        """Delete a whole table (a missing one is fine); the next write creates it again."""
        with self._lock:
            self._clients.pop(name, None)
        self._service.delete_table(self.table_name(name))

    def table_names(self, starting: str) -> list[str]:
        """The short names of this prefix's tables that start with ``starting``."""
        full = self.table_name(starting)
        found = self._service.query_tables(
            "TableName ge @lo and TableName lt @hi", parameters={"lo": full, "hi": full + "~"}
        )
        return [table.name.removeprefix(self.prefix) for table in found]

    def delete(self, name: str, partition_key: str, row_key: str) -> None:
        """Delete one entity; a missing one is fine."""
        self.table(name).delete_entity(partition_key, row_key)

    def delete_unchanged(self, name: str, entity: Mapping[str, Any]) -> bool:
        """Delete an entity read from the service unless it was written again since (its ETag no longer
        matches); True when it is gone, False when it was kept because it changed."""
        metadata = getattr(entity, "metadata", None)
        etag = metadata.get("etag") if isinstance(metadata, Mapping) else None
        try:
            if etag:
                self.table(name).delete_entity(
                    entity["PartitionKey"], entity["RowKey"], etag=etag, match_condition=MatchConditions.IfNotModified
                )
            else:
                self.table(name).delete_entity(entity["PartitionKey"], entity["RowKey"])
        except ResourceModifiedError:
            return False
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise
            return False
        return True

    def delete_unchanged_rows(self, name: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """``delete_unchanged`` for many rows read from the service: in transactions of up to 100 per partition,
        each row's ETag its condition; a transaction refused because one row changed is retried row by row, so
        only the changed rows stay. Returns the rows deleted."""
        table = self.table(name)
        by_partition: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            by_partition.setdefault(row["PartitionKey"], []).append(row)
        deleted = 0
        for batch in (b[i : i + MAX_BATCH_OPERATIONS] for b in by_partition.values() for i in range(0, len(b), 100)):
            try:
                table_batch.submit(table, [("delete", row) for row in batch])
                deleted += len(batch)
            except HttpResponseError as exc:
                if exc.status_code not in (404, 412):
                    raise
                deleted += sum(self.delete_unchanged(name, row) for row in batch)
        return deleted

    def delete_rows(self, name: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Delete rows by key, in transactions of up to 100 per partition; rows already gone are fine."""
        table = self.table(name)
        pending: dict[str, list[str]] = {}
        deleted = 0

        def send(pk: str) -> int:
            keys = pending.pop(pk, [])
            if len(keys) > 1:
                try:
                    table_batch.submit(table, [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in keys])
                    return len(keys)
                except HttpResponseError as exc:
                    if exc.status_code != 404:
                        raise
            for rk in keys:  # one of them was gone (a rerun): the rest one by one
                table.delete_entity(pk, rk)
            return len(keys)

        for row in rows:
            keys = pending.setdefault(row["PartitionKey"], [])
            keys.append(row["RowKey"])
            if len(keys) >= MAX_BATCH_OPERATIONS:
                deleted += send(row["PartitionKey"])
        for pk in list(pending):
            deleted += send(pk)
        return deleted

    def all_rows(self, name: str, *, select: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every entity of a table, in key order."""
        for entity in self.table(name).list_entities(select=select):
            yield dict(entity)


class BatchWriter:
    """Buffers upserts per partition and sends each batch once it holds 100 rows (or ~4 MiB).

    Memory stays bounded by the partitions in flight, not by the rows written, and a long stream of rows
    for one partition costs ceil(rows / 100) transactions however it arrives.
    """

    def __init__(
        self, store: TableStore, name: str, *, mode: UpdateMode = UpdateMode.REPLACE, on_refused: Refused | None = None
    ) -> None:
        self._store = store
        self._mode = mode
        self._on_refused = on_refused
        self._name = name
        self._full_name = store.table_name(name)
        self._table = store.table(name)
        # Per partition, the rows waiting by RowKey (with their sizes): a repeated RowKey is found in O(1).
        self._pending: dict[str, dict[str, tuple[dict[str, Any], int]]] = {}
        self._bytes: dict[str, int] = {}
        self._count = 0
        self.written = 0
        self.failed = False  # a batch could not be sent: its rows are gone from the buffer

    def add(self, entity: Mapping[str, Any]) -> None:
        """Queue one upsert; sends its partition's batch first if this row would not fit."""
        prepared, size = sized_entity(self._full_name, entity)
        pk, row_key = prepared["PartitionKey"], prepared["RowKey"]
        batch = self._pending.setdefault(pk, {})
        if batch and (len(batch) >= MAX_BATCH_OPERATIONS or self._bytes[pk] + size > MAX_BATCH_BYTES):
            self._send(pk)
            batch = self._pending.setdefault(pk, {})
        earlier = batch.pop(row_key, None)
        if earlier is not None:
            # One transaction may touch a row once: fold the two as two upserts in a row would (the later
            # row wins whole when replacing; its properties win one by one when merging).
            earlier_row, earlier_size = earlier
            self._bytes[pk] -= earlier_size
            self._count -= 1
            if self._mode == UpdateMode.MERGE:
                prepared = {**earlier_row, **prepared}
                size = entity_size(prepared)
        batch[row_key] = (prepared, size)
        self._bytes[pk] = self._bytes.get(pk, 0) + size
        self._count += 1

    @property
    def pending(self) -> int:
        """Rows buffered and not sent yet."""
        return self._count

    def flush(self) -> int:
        """Send everything still buffered; returns the rows this writer has written in all."""
        for pk in list(self._pending):
            self._send(pk)
        return self.written

    def _send(self, pk: str) -> None:
        batch = [row for row, _ in self._pending.pop(pk, {}).values()]
        self._bytes.pop(pk, None)
        self._count -= len(batch)
        if batch:
            try:
                self.written += self._submit(batch)
            except Exception:
                self.failed = True
                raise

    def _submit(self, batch: list[dict[str, Any]]) -> int:
        try:
            return self._store._submit(self._table, batch, self._mode)
        except table_batch.TransactionTooLarge:
            # Sized by the service's UTF-16 formula, the body's ASCII JSON can still pass 4 MiB (non-ASCII text
            # and control characters are written as 6-byte \uXXXX escapes): nothing was sent, so the halves go
            # as two transactions.
            half = len(batch) // 2
            return self._submit(batch[:half]) + self._submit(batch[half:])
        except HttpResponseError as exc:
            if self._on_refused is None or exc.status_code != 400:
                raise
            if len(batch) == 1:
                reason = f"table {self._full_name} refused the row: {exc.reason or exc.status_code} {exc.message[:300]}"
                self._on_refused(batch[0], reason)
                return 0
        # The service refused something in this batch without saying reliably which: send its rows one by one,
        # so only the refused ones are set aside.
        return sum(self._submit([entity]) for entity in batch)
