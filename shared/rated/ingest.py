"""Storing one export snapshot from lines in hand: staged as one blob, then committed (tests, benchmarks, tools).

The timer and the queue worker store exports blob by blob across runs (``shared.rated.exports``); this is the same
staging and the same commit for lines already in hand, in one call: the lines are staged into a staging table of
their own as one blob, committed, and the staging table dropped. What readers see is decided by the pointers, as
everywhere: see ``shared.rated.commit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.deadline import NO_DEADLINE, Deadline
from shared.graph.blobs import BlobLine
from shared.pricing.amounts import EXACT
from shared.rated.commit import Committer, delete_versions
from shared.rated.stage import BlobStager
from shared.rated.versions import GRACE, Snapshot
from shared.sync.runs import SyncRun
from shared.table_store import TableStore
from shared.tables import BlobProgress, export_id_of, staging_table

__all__ = ["EXACT", "GRACE", "Feed", "Ingest", "IngestStats", "Snapshot", "delete_versions"]

# Hands every line of an export to its argument, in order (``shared.graph.blobs.read_lines`` bound to a manifest).
Feed = Callable[[Callable[[BlobLine], None]], None]


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
    line_rows_written: int = 0  # RatedLines rows (chunks of a day slice's lines)
    lines_written: int = 0  # lines in those rows
    line_rows_deleted: int = 0  # by the cleanup of expired versions
    customers_written: int = 0  # RatedCustomerDays rows written

    @property
    def data_rows_written(self) -> int:
        """Line, slice and customer rows written (deletions not counted)."""
        return self.line_rows_written + self.slices_written + self.customers_written


class Ingest:
    """One snapshot into the tables; ``run`` receives quarantined lines and counts."""

    def __init__(
        self, store: TableStore, run: SyncRun, snapshot: Snapshot, *, now: datetime, deadline: Deadline | None = None
    ) -> None:
        self.store, self.run, self.snapshot, self.now = store, run, snapshot, now
        self.deadline = deadline or NO_DEADLINE
        self.stats = IngestStats()

    def ingest(self, lines: Iterable[BlobLine]) -> IngestStats:
        """Stage the lines, then commit every slice that changed; returns what was done."""

        def feed(into: Callable[[BlobLine], None]) -> None:
            for line in lines:
                into(line)

        return self.ingest_from(feed)

    def ingest_from(self, feed: Feed) -> IngestStats:
        """Stage every line ``feed`` hands over (as one blob), then commit; returns what was done."""
        table = staging_table(export_id_of(self.snapshot.etag, ("in-hand", self.snapshot.billing_period)))
        blob = BlobProgress(index=0, name="lines")
        self.store.upsert_one(table, blob.row())
        try:
            stager = BlobStager(
                self.store,
                table,
                blob,
                currency=self.snapshot.currency,
                source=f"rated usage export {self.snapshot.billing_period} {self.snapshot.currency}",
                quarantine=self._quarantine,
                deadline=self.deadline,
            )
            feed(stager.sink)
            stager.finish()
            stager.record(complete=True, now=self.now)
            self.stats.lines, self.stats.quarantined = stager.stats.lines, stager.stats.quarantined
            committer = Committer(
                self.store,
                table,
                self.snapshot,
                [stager.blob],
                now=self.now,
                deadline=self.deadline,
                on_rows=lambda n: self.run.add(rows=n),
            )
            done = committer.run()
        finally:
            self.store.drop(table)
        stats = self.stats
        stats.slices, stats.periods = done.slices, list(done.periods)
        stats.slices_written, stats.slices_removed = done.slices_written, done.slices_removed
        stats.days_written, stats.line_rows_written = done.days_written, done.line_rows_written
        stats.lines_written, stats.line_rows_deleted = committer.lines_written, done.line_rows_deleted
        stats.customers_written = done.customers_written
        return stats

    def _quarantine(self, source: str, raw: str, reason: str) -> None:
        self.run.quarantine(source=source, raw=raw, reason=reason, raw_is_text=True)
