"""The commit of a staged export: each slice's versions from its chunks, the rows of changed days, then the pointer.

Slices are committed one (customer, Azure subscription) at a time in the staging index's order, and the cursor is
saved after each, so a commit stopped by the deadline resumes at the next one. For each: its pointers are read, its
staged chunks streamed in day order (only those of recorded segments count), each day's version computed exactly as
``shared.rated.versions`` says (SHA-256 over the day's sorted line digests), the lines of a day whose version changed
written as ``RatedLines`` chunks (a day staged as one chunk is written as it was staged: it already is one, in
digest order), then the pointer replaced: readers see the old snapshot or the new one, never a mix. Once a customer's
Azure subscriptions are committed, its pointers that the snapshot no longer holds are emptied and its totals
(``RatedCustomerDays``) written; at the end, customers the snapshot no longer holds at all. The lease (in the commit
row, replaced only if unchanged since read) keeps two committers from working at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from shared import jsonutil
from shared.deadline import NO_DEADLINE, Deadline
from shared.keys import under
from shared.pricing import amounts
from shared.pricing.amounts import EXACT, Amounts
from shared.rated.chunks import pack, raw_texts
from shared.rated.versions import VERSION_CHARS, Slice, SlicePlan, Snapshot, add_to_customer, plan_slice, plan_vanished
from shared.spend.refresh import mark
from shared.table_store import TableStore
from shared.tables import (
    RATED_CUSTOMER_DAYS,
    RATED_LINES,
    RATED_SLICES,
    STAGING_COMMIT,
    STAGING_INDEX,
    BlobProgress,
    CommitProgress,
    CustomerDay,
    DayView,
    RatedCustomerPeriod,
    RatedPointer,
    Superseded,
    customer_key,
    rated_customer_key,
    rated_day_prefix,
    rated_line_key,
    rated_lines_partition,
    staging_partition,
)
from shared.timeutil import utc_text


class CommitBusy(Exception):
    """Another committer holds the lease of this export's commit; it goes on (or its lease runs out)."""


def delete_versions(
    store: TableStore, customer_id: str, entitlement_id: str, currency: str, versions: tuple[Superseded, ...]
) -> int:
    """The cleanup: delete the line rows of expired versions of one Azure subscription; returns rows deleted."""
    partition = rated_lines_partition(customer_id, entitlement_id)
    deleted = 0
    for item in versions:
        prefix = f"{rated_day_prefix(item.day, currency)}{item.version}|"
        rows = store.query(
            RATED_LINES,
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": partition, "lo": prefix, "hi": prefix[:-1] + "}"},
            select=["PartitionKey", "RowKey"],
        )
        deleted += store.delete_rows(RATED_LINES, rows)
    return deleted


@dataclass
class _Day:
    """One day of a slice, from its staged chunks."""

    chunks: list[Mapping[str, Any]] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    billing: Decimal = Decimal(0)
    pricing: dict[str, Decimal] = field(default_factory=dict)
    by_category: Amounts = field(default_factory=dict)
    first: tuple[bytes, Any] | None = None  # (smallest digest, the names of its line)

    def add(self, chunk: Mapping[str, Any]) -> None:
        h = bytes(chunk["h"])
        self.chunks.append(chunk)
        self.digests.extend(h[i : i + 32] for i in range(0, len(h), 32))
        with localcontext(EXACT):
            self.billing += Decimal(str(chunk["bt"]))
            for code, total in (jsonutil.loads(chunk["pt"]) if chunk.get("pt") else {}).items():
                self.pricing[code] = self.pricing.get(code, Decimal(0)) + Decimal(str(total))
        if chunk.get("ct"):
            amounts.merge(self.by_category, amounts.of_json(jsonutil.loads(chunk["ct"])))
        else:  # staged before chunks carried categories: their cost is known, their list price is not
            amounts.add_to(self.by_category, "", Decimal(str(chunk["bt"])), None)
        if self.first is None or h[:32] < self.first[0]:
            self.first = (h[:32], chunk.get("nm"))

    def view(self) -> DayView:
        digest = hashlib.sha256(b"".join(sorted(self.digests))).hexdigest()[:VERSION_CHARS]
        pricing = {code: str(total) for code, total in sorted(self.pricing.items())}
        return DayView(digest, len(self.digests), str(self.billing), pricing, self.by_category)


def _names(value: Any) -> tuple[str | None, str | None, str | None, str | None]:
    names = jsonutil.loads(value) if isinstance(value, str) else None
    if not isinstance(names, list) or len(names) != 4:
        return (None, None, None, None)
    a, b, c, d = (None if n is None else str(n) for n in names)
    return (a, b, c, d)


class Committer:
    """Commits one staged export from where the last committer stopped (``run``)."""

    def __init__(
        self,
        store: TableStore,
        table: str,
        snapshot: Snapshot,
        blobs: list[BlobProgress],
        *,
        now: datetime,
        deadline: Deadline | None = None,
        lease_seconds: float = 600.0,
        on_rows: Callable[[int], None] | None = None,
    ) -> None:
        self.store, self.table, self.snapshot, self.now = store, table, snapshot, now
        self._on_rows = on_rows or (lambda rows: None)
        self.deadline = deadline or NO_DEADLINE
        self.lease_seconds = lease_seconds
        self.valid = {(blob.index, segment) for blob in blobs for segment, _, _ in blob.segments}
        self.periods = tuple(sorted({period for blob in blobs for period in blob.periods}))
        self.currency = snapshot.currency.upper()
        self.progress = CommitProgress(periods=self.periods)
        self._etag: str | None = None
        self._lines = store.writer(RATED_LINES)
        self.lines_written = 0

    # -- the lease and the cursor ----------------------------------------------------------------------------------

    def _acquire(self) -> None:
        row = self.store.get(self.table, STAGING_COMMIT, STAGING_COMMIT)
        etag = None
        if row is not None:
            self.progress = CommitProgress.of_row(row)
            etag = (getattr(row, "metadata", None) or {}).get("etag")
            if self.progress.lease_until and self.progress.lease_until > utc_text(self.now):
                raise CommitBusy(f"the commit is held until {self.progress.lease_until}")
        lease = utc_text(self.now + timedelta(seconds=self.lease_seconds))
        self.progress = replace(self.progress, lease_until=lease, periods=self.progress.periods or self.periods)
        self._etag = self.store.replace_if(self.table, self.progress.row(), etag)
        if self._etag is None:
            raise CommitBusy("another committer took the commit first")

    def _save(self, **changes: Any) -> None:
        self.progress = replace(self.progress, **changes)
        etag = self.store.replace_if(self.table, self.progress.row(), self._etag)
        if etag is None:
            raise CommitBusy("the commit's lease was taken over; its holder goes on")
        self._etag = etag

    def release(self) -> None:
        """Give the lease back (the next committer need not wait for it to run out)."""
        if self._etag is not None:
            self._save(lease_until=None)

    # -- the commit ------------------------------------------------------------------------------------------------

    def run(self) -> CommitProgress:
        """Commit every slice after the cursor, then what the snapshot lost; DeadlineReached (cursor saved, lease
        given back) when the deadline comes between two slices. Raises CommitBusy when another committer holds it."""
        self._acquire()
        try:
            if self.progress.final_done:
                return self.progress
            done_customer = None if self.progress.customer_done else self._customer_of(self.progress.cursor)
            for customer, entitlement in self._groups(self.progress.cursor):
                self.deadline.check("rated usage commit, between slices")
                if done_customer is not None and customer != done_customer:
                    self._finish_customer(done_customer)
                    self._save(customer_done=True)
                self._commit_group(customer, entitlement)
                self._save(cursor=staging_partition(customer, entitlement), customer_done=False)
                done_customer = customer
            if done_customer is not None:
                self._finish_customer(done_customer)
                self._save(customer_done=True)
            self.deadline.check("rated usage commit, before the customers gone")
            self._gone()
            self._save(final_done=True)
            return self.progress
        finally:
            self.release()

    def _customer_of(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        for row in self.store.query(
            self.table,
            "PartitionKey eq @pk and RowKey gt @lo",
            {"pk": STAGING_INDEX, "lo": cursor},
            select=["customerId"],
            limit=1,
        ):
            return str(row["customerId"])
        return None

    def _groups(self, cursor: str | None) -> Iterator[tuple[str, str]]:
        """(customer, Azure subscription) of the index after ``cursor``, in key order."""
        query, parameters = "PartitionKey eq @pk", {"pk": STAGING_INDEX}
        if cursor is not None:
            query += " and RowKey gt @after"
            parameters["after"] = cursor + "}"
        group: tuple[str, str] | None = None
        for row in self.store.query(self.table, query, parameters, select=["customerId", "entitlementId"]):
            key = (str(row["customerId"]), str(row["entitlementId"]))
            if key != group:
                group = key
                yield key

    def _commit_group(self, customer: str, entitlement: str) -> None:
        low, high = under(entitlement.lower())
        old: dict[str, RatedPointer] = {}
        for row in self.store.query(
            RATED_SLICES,
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": customer_key(customer), "lo": low, "hi": high},
        ):
            pointer = RatedPointer.of_row(row)
            if pointer.currency.upper() == self.currency and pointer.entitlement_id == entitlement:
                old[pointer.period] = pointer
        slices: dict[str, Slice] = {}
        partition = rated_lines_partition(customer, entitlement)
        for day_name, day in self._days(customer, entitlement):
            view = day.view()
            period = day_name[:7]
            piece = slices.get(period)
            if piece is None:
                names = _names(day.first[1] if day.first else None)
                piece = slices[period] = Slice(customer, entitlement, period, names)
            piece.days[day_name] = view
            before = old.get(period)
            if before is None or day_name not in before.days or before.days[day_name].version != view.version:
                self._write_day(partition, day_name, view, day)
        self._lines.flush()  # every row of the new versions is stored before a pointer names them
        for period in sorted(slices):
            new = slices[period].pointer(self.snapshot, self.now)
            plan = plan_slice(old.get(period), new, self.now)
            self.progress = replace(
                self.progress, slices=self.progress.slices + 1, lines=self.progress.lines + new.line_count
            )
            if self._apply(plan, new):
                self.progress = replace(self.progress, slices_written=self.progress.slices_written + 1)

    def _days(self, customer: str, entitlement: str) -> Iterator[tuple[str, _Day]]:
        """Each day of one Azure subscription's staged chunks (of recorded segments), in day order."""
        name, day = "", _Day()
        for chunk in self.store.partition(self.table, staging_partition(customer, entitlement)):
            day_name, blob, segment, _ = str(chunk["RowKey"]).split("|")
            if (int(blob), segment) not in self.valid:
                continue  # a try that was never recorded, or lost to another
            if day_name != name:
                if day.chunks:
                    yield name, day
                name, day = day_name, _Day()
            day.add(chunk)
        if day.chunks:
            yield name, day

    def _write_day(self, partition: str, day_name: str, view: DayView, day: _Day) -> None:
        if len(day.chunks) == 1:  # staged as one chunk of the whole day, in digest order: the row it becomes
            only = day.chunks[0]
            rows = [{"n": only["n"], **({"line": only["line"]} if only.get("line") is not None else {"z": only["z"]})}]
        else:
            pairs: list[tuple[bytes, bytes]] = []
            for chunk in day.chunks:
                h = bytes(chunk["h"])
                pairs.extend(zip((h[i : i + 32] for i in range(0, len(h), 32)), raw_texts(chunk), strict=True))
            pairs.sort(key=lambda pair: pair[0])
            rows = [chunk.properties() for chunk in pack([text for _, text in pairs])]
        at = 0
        for properties in rows:
            key = rated_line_key(day_name, self.currency, view.version, at)
            self._lines.add({"PartitionKey": partition, "RowKey": key, **properties})
            at += int(properties["n"])
        self.lines_written += view.lines
        self._on_rows(len(rows))
        self.progress = replace(
            self.progress,
            days_written=self.progress.days_written + 1,
            line_rows_written=self.progress.line_rows_written + len(rows),
        )

    def _apply(self, plan: SlicePlan, piece: RatedPointer) -> bool:
        """Store one slice's plan in its order (its line rows are written already); True when a pointer was written."""
        if plan.expired:
            deleted = delete_versions(self.store, piece.customer_id, piece.entitlement_id, self.currency, plan.expired)
            self.progress = replace(self.progress, line_rows_deleted=self.progress.line_rows_deleted + deleted)
        if plan.pointer is None:
            if plan.drop:
                self.store.delete_rows(RATED_SLICES, [{"PartitionKey": piece.partition_key, "RowKey": piece.row_key}])
            return False
        self.store.upsert_one(RATED_SLICES, plan.pointer.row())
        self._on_rows(1)
        return True

    # -- customers ---------------------------------------------------------------------------------------------------

    def _vanish(self, pointer: RatedPointer) -> None:
        plan = plan_vanished(pointer, self.snapshot, self.now)
        emptied = self._apply(plan, pointer)
        if plan.drop or (emptied and pointer.days):
            self.progress = replace(self.progress, slices_removed=self.progress.slices_removed + 1)

    def _finish_customer(self, customer: str) -> None:
        """A customer whose Azure subscriptions are committed: its slices the snapshot lost, its totals."""
        low, high = under(customer.lower())
        held = {
            (str(row["entitlementId"]), str(row["period"]))
            for row in self.store.query(
                self.table,
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                {"pk": STAGING_INDEX, "lo": low, "hi": high},
                select=["entitlementId", "period"],
            )
        }
        pointers = [
            pointer
            for row in self.store.partition(RATED_SLICES, customer_key(customer))
            if (pointer := RatedPointer.of_row(row)).currency.upper() == self.currency
            and pointer.period in self.periods
        ]
        kept = []
        for pointer in pointers:
            if (pointer.entitlement_id, pointer.period) in held:
                kept.append(pointer)
            else:
                self._vanish(pointer)
        for period in self.periods:
            days: dict[str, CustomerDay] = {}
            charged = [pointer for pointer in kept if pointer.period == period]
            for pointer in charged:
                add_to_customer(days, pointer)
            stored_row = self.store.get(
                RATED_CUSTOMER_DAYS, customer_key(customer), rated_customer_key(period, self.currency)
            )
            if not charged:
                if stored_row is not None:
                    self.store.delete_rows(RATED_CUSTOMER_DAYS, [stored_row])
                    mark(self.store, [customer], [period])  # its spend of the month changed
                continue
            new = RatedCustomerPeriod(
                customer_id=customer,
                period=period,
                currency=self.currency,
                days=days,
                snapshot_etag=self.snapshot.etag,
                stored_at=utc_text(self.now),
            )
            if stored_row is not None and RatedCustomerPeriod.of_row(stored_row).days == new.days:
                continue
            self.store.upsert_one(RATED_CUSTOMER_DAYS, new.row())
            mark(self.store, [customer], [period])  # its spend of the month is projected again
            self._on_rows(1)
            self.progress = replace(self.progress, customers_written=self.progress.customers_written + 1)

    def _gone(self) -> None:
        """Customers the snapshot no longer holds at all: their pointers name no day, their totals go."""
        customers = {
            str(row["customerId"]) for row in self.store.partition(self.table, STAGING_INDEX, select=["customerId"])
        }
        for period in self.periods:
            parameters = {"p": period, "c": self.currency}
            query = "period eq @p and currencyCode eq @c"
            for row in self.store.query(RATED_SLICES, query, parameters):
                if str(row["customerId"]) not in customers:
                    self._vanish(RatedPointer.of_row(row))
            gone = [
                row
                for row in self.store.query(
                    RATED_CUSTOMER_DAYS, query, parameters, select=["PartitionKey", "RowKey", "customerId"]
                )
                if str(row["customerId"]) not in customers
            ]
            self.store.delete_rows(
                RATED_CUSTOMER_DAYS, [{"PartitionKey": r["PartitionKey"], "RowKey": r["RowKey"]} for r in gone]
            )
            mark(self.store, [str(row["customerId"]) for row in gone], [period])
