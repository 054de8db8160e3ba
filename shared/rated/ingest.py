"""Storing one export snapshot: the rows of the day slices that changed, then one pointer row per slice.

What readers see is decided by one entity per (customer, Azure subscription, period, currency) in ``RatedSlices``
(a ``RatedPointer``): its ``days`` name the version of each day, with the day's totals. The ingest writes the
rows of a new version first, then replaces that one entity (a single-entity write, atomic in Table Storage), so a
reader that reads the pointer and then only the rows of the versions it names sees one snapshot or the other,
never a mix. A crash at any point, or the run's deadline (checked as lines are read and before each slice),
leaves the old pointer served; the rerun writes the same keys again and flips.

Which days changed, what becomes superseded and what has expired is decided in ``shared.rated.versions``
(pure); this module reads the stored rows, writes what each plan says in its order, and runs the cleanup of
expired versions (``delete_versions``). Incremental: a day whose version is unchanged writes nothing; an
unchanged export writes no rows at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.deadline import NO_DEADLINE, Deadline
from shared.graph.blobs import BlobLine
from shared.rated.lines import parse_line
from shared.rated.spool import Spool
from shared.rated.versions import GRACE, SlicePlan, Snapshot, add_to_customer, plan_slice, plan_vanished, slices
from shared.records import BadRecord
from shared.sync.runs import SyncRun
from shared.table_store import TableStore
from shared.tables import (
    EXACT,
    RATED_CUSTOMER_DAYS,
    RATED_LINES,
    RATED_SLICES,
    CustomerDay,
    RatedCustomerPeriod,
    RatedPointer,
    Superseded,
    rated_day_prefix,
    rated_line_key,
    rated_lines_partition,
)
from shared.timeutil import utc_text

__all__ = ["EXACT", "GRACE", "Feed", "Ingest", "IngestStats", "Snapshot", "delete_versions"]

# Hands every line of an export to its argument, in order (``shared.graph.blobs.read_lines`` bound to a manifest).
Feed = Callable[[Callable[[BlobLine], None]], None]
DEADLINE_EVERY_LINES = 1000  # how often reading the export asks the deadline


@dataclass
class IngestStats:
    """What one ingest read and wrote."""

    lines: int = 0  # read from the export
    quarantined: int = 0  # of those, kept apart with their reason
    slices: int = 0  # (customer, Azure subscription, period) in the snapshot
    periods: list[str] = field(default_factory=list)  # the months the snapshot holds
    slices_written: int = 0  # pointer rows written
    slices_removed: int = 0  # pointers that stopped naming days (or went) because the snapshot lost their slice
    days_written: int = 0  # day slices whose new version got rows
    line_rows_written: int = 0
    line_rows_deleted: int = 0  # by the cleanup of expired versions
    customers_written: int = 0  # RatedCustomerDays rows written

    @property
    def data_rows_written(self) -> int:
        """Line, slice and customer rows written (deletions not counted)."""
        return self.line_rows_written + self.slices_written + self.customers_written


def delete_versions(
    store: TableStore, customer_id: str, entitlement_id: str, currency: str, versions: Iterable[Superseded]
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


class Ingest:
    """One snapshot into the tables; ``run`` receives quarantined lines and counts. Stops at ``deadline``
    (DeadlineReached) between lines and between slices, never inside a slice's writes."""

    def __init__(
        self, store: TableStore, run: SyncRun, snapshot: Snapshot, *, now: datetime, deadline: Deadline | None = None
    ) -> None:
        self.store, self.run, self.snapshot, self.now = store, run, snapshot, now
        self.deadline = deadline or NO_DEADLINE
        self.stats = IngestStats()
        self._lines = store.writer(RATED_LINES)

    def ingest(self, lines: Iterable[BlobLine], *, spool_dir: str | None = None) -> IngestStats:
        """Spool the lines, then store every slice that changed; returns what was done."""

        def feed(into: Callable[[BlobLine], None]) -> None:
            for line in lines:
                into(line)

        return self.ingest_from(feed, spool_dir=spool_dir)

    def ingest_from(self, feed: Feed, *, spool_dir: str | None = None) -> IngestStats:
        """Spool every line ``feed`` hands over, then store every slice that changed; returns what was done."""
        try:
            with Spool(spool_dir) as spool:
                feed(lambda line: self._spool(spool, line))
                spool.seal()
                self._store(spool)
        finally:
            self.run.add(rows=self.stats.data_rows_written)
        return self.stats

    def _spool(self, spool: Spool, blob_line: BlobLine) -> None:
        """Check one line and keep it when it can be placed; else quarantine it with the reason."""
        self.stats.lines += 1
        if self.stats.lines % DEADLINE_EVERY_LINES == 0:
            self.deadline.check("rated usage ingest, reading the export")
        try:
            line = parse_line(blob_line.text)
            if line.currency != self.snapshot.currency:
                raise BadRecord(f"BillingCurrency {line.currency} in the {self.snapshot.currency} export")
        except BadRecord as exc:
            source = (
                f"rated usage export {self.snapshot.billing_period} {self.snapshot.currency}, blob {blob_line.blob} "
                f"line {blob_line.number}"
            )
            self.run.quarantine(source=source, raw=blob_line.text, reason=str(exc), raw_is_text=True)
            self.stats.quarantined += 1
            return
        spool.add(line)

    # -- the passes ------------------------------------------------------------------------------------------

    def _store(self, spool: Spool) -> None:
        pointers: dict[tuple[str, str], RatedPointer] = {}  # stored, of the periods seen so far
        customers: dict[tuple[str, str], RatedCustomerPeriod] = {}
        periods: set[str] = set()
        customer: str | None = None
        customer_days: dict[str, dict[str, CustomerDay]] = {}  # period -> day -> totals, of one customer
        for piece in slices(spool.grouped()):
            if piece.customer_id != customer:  # the spool is ordered by customer: its slices come together
                if customer is not None:
                    self._write_customer(customer, customer_days, customers)
                customer, customer_days = piece.customer_id, {}
            self.deadline.check("rated usage ingest, storing slices")
            if piece.period not in periods:
                self._load(piece.period, pointers, customers)
                periods.add(piece.period)
            new = piece.pointer(self.snapshot, self.now)
            add_to_customer(customer_days.setdefault(piece.period, {}), new)
            self.stats.slices += 1
            plan = plan_slice(pointers.pop((new.partition_key, new.row_key), None), new, self.now)
            if self._apply(spool, plan, new):
                self.stats.slices_written += 1
        if customer is not None:
            self._write_customer(customer, customer_days, customers)
        for old in pointers.values():
            self.deadline.check("rated usage ingest, removing slices")
            plan = plan_vanished(old, self.snapshot, self.now)
            emptied = self._apply(spool, plan, old)
            if plan.drop or (emptied and old.days):
                self.stats.slices_removed += 1
        self.store.delete_rows(RATED_CUSTOMER_DAYS, [{"PartitionKey": pk, "RowKey": rk} for pk, rk in customers])
        self.stats.periods = sorted(periods)

    def _load(
        self,
        period: str,
        pointers: dict[tuple[str, str], RatedPointer],
        customers: dict[tuple[str, str], RatedCustomerPeriod],
    ) -> None:
        """Add the pointers and customer totals stored for this period and currency, by key."""
        parameters = {"p": period, "c": self.snapshot.currency}
        query = "period eq @p and currencyCode eq @c"
        for row in self.store.query(RATED_SLICES, query, parameters):
            pointers[(row["PartitionKey"], row["RowKey"])] = RatedPointer.of_row(row)
        for row in self.store.query(RATED_CUSTOMER_DAYS, query, parameters):
            customers[(row["PartitionKey"], row["RowKey"])] = RatedCustomerPeriod.of_row(row)

    def _apply(self, spool: Spool, plan: SlicePlan, piece: RatedPointer) -> bool:
        """Store one slice's plan in its order; True when a pointer row was written."""
        if plan.expired:
            self.stats.line_rows_deleted += delete_versions(
                self.store, piece.customer_id, piece.entitlement_id, self.snapshot.currency, plan.expired
            )
        if plan.pointer is None:
            if plan.drop:
                self.store.delete_rows(RATED_SLICES, [{"PartitionKey": piece.partition_key, "RowKey": piece.row_key}])
            return False
        before = self._lines.written
        partition = rated_lines_partition(piece.customer_id, piece.entitlement_id)
        for day in plan.changed_days:
            version = plan.pointer.days[day].version
            for index, text in enumerate(spool.texts(piece.customer_id, piece.entitlement_id, day)):
                key = rated_line_key(day, self.snapshot.currency, version, index)
                self._lines.add({"PartitionKey": partition, "RowKey": key, "line": text})
            self.stats.days_written += 1
        self._lines.flush()  # every row of the new versions is stored before the pointer names them
        self.stats.line_rows_written += self._lines.written - before
        self.store.upsert_one(RATED_SLICES, plan.pointer.row())
        return True

    # -- customer totals ---------------------------------------------------------------------------------------

    def _write_customer(
        self,
        customer_id: str,
        periods: dict[str, dict[str, CustomerDay]],
        stored: dict[tuple[str, str], RatedCustomerPeriod],
    ) -> None:
        for period, days in periods.items():
            new = RatedCustomerPeriod(
                customer_id=customer_id,
                period=period,
                currency=self.snapshot.currency,
                days=days,
                snapshot_etag=self.snapshot.etag,
                stored_at=utc_text(self.now),
            )
            old = stored.pop((new.partition_key, new.row_key), None)
            if old is not None and old.days == new.days:
                continue
            self.store.upsert_one(RATED_CUSTOMER_DAYS, new.row())
            self.stats.customers_written += 1
