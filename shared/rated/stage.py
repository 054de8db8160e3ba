"""Staging one blob of an export: its lines checked and kept as chunks keyed by slice, in the export's staging table.

The lines of a day slice are spread over blobs, so a blob is not the unit of the commit: its lines are grouped by
(customer, Azure subscription, day) as they come and written as chunks (``shared.rated.chunks``) into the staging
partition of their Azure subscription, under ``{day}|{blob}|{segment}|{seq}``, with their digests and totals, so the
commit computes each day's version from the chunks alone and reads no line twice. Memory holds the lines not yet
written (at most ``BUFFER_BYTES``), whatever the blob's size.

A **segment** is one try at a blob from where the last recorded one ended: the line numbers it covers and its chunks
count only once it is recorded in the blob's row (``BlobProgress``, replaced only if unchanged since read). So a try
cut by the deadline flushes what it read and records it, and the next try skips those lines (re-reading, not
re-parsing, the blob's start: gzip cannot be entered halfway); a try that died unrecorded, or a second worker whose
try lost the race, left chunks that nothing counts and the staging table's drop removes. Staging a blob twice
changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, localcontext

from shared import jsonutil
from shared.deadline import NO_DEADLINE, Deadline, DeadlineReached
from shared.graph.blobs import BlobLine
from shared.pricing import amounts
from shared.pricing.amounts import EXACT, Amounts, add_to
from shared.rated.chunks import CHUNK_LINES, CHUNK_RAW_BYTES, pack
from shared.rated.lines import RatedLine, parse_line
from shared.records import BadRecord
from shared.table_store import TableStore
from shared.tables import (
    STAGING_BLOBS,
    STAGING_INDEX,
    BlobProgress,
    staging_chunk_key,
    staging_partition,
    staging_slice_key,
)
from shared.timeutil import utc_text

BUFFER_BYTES = 6 * 1024 * 1024  # line text held before the buffered slices are written
PENDING_BYTES = 4 * 1024 * 1024  # chunks waiting in the writer (spread over partitions) before all are sent
DEADLINE_EVERY_LINES = 500  # how often staging asks the deadline

# (source, raw text, reason): where a line that cannot be placed goes
Quarantine = Callable[[str, str, str], None]


@dataclass
class _Buffer:
    lines: list[RatedLine] = field(default_factory=list)
    size: int = 0


@dataclass
class SegmentStats:
    """What one try at a blob read and wrote."""

    lines: int = 0  # line items read (quarantined included), after the lines skipped
    skipped: int = 0  # lines staged by an earlier segment, read again but not parsed
    quarantined: int = 0
    chunks: int = 0
    last: int = 0  # the blob line number handed over last
    periods: set[str] = field(default_factory=set)


class BlobStager:
    """One try at one blob: hand it every line (``sink``), then ``finish`` (or ``finish`` after DeadlineReached)."""

    def __init__(
        self,
        store: TableStore,
        table: str,
        blob: BlobProgress,
        *,
        currency: str,
        source: str,
        quarantine: Quarantine,
        deadline: Deadline | None = None,
    ) -> None:
        self.store, self.table, self.blob, self.currency = store, table, blob, currency
        self.source, self._quarantine = source, quarantine
        self.deadline = deadline or NO_DEADLINE
        self.segment = uuid.uuid4().hex[:8]
        self.start = blob.lines_done
        self.stats = SegmentStats(last=blob.lines_done)
        self._buffers: dict[tuple[str, str, str], _Buffer] = {}
        self._buffered = 0
        self._seq = 0
        self._slices: set[tuple[str, str, str]] = set()
        self._chunks = store.writer(table)
        self._pending = 0  # bytes of chunks added to the writer since it last sent everything
        self._index = store.writer(table)

    # -- lines in ----------------------------------------------------------------------------------------------

    def sink(self, blob_line: BlobLine) -> None:
        """Take one line of the blob (lines an earlier segment staged are skipped)."""
        if blob_line.number <= self.start:
            self.stats.skipped += 1
            return
        stats = self.stats
        if (stats.lines + 1) % DEADLINE_EVERY_LINES == 0:
            self.deadline.check(f"staging blob {self.blob.name}")
        stats.lines += 1
        stats.last = blob_line.number
        try:
            line = parse_line(blob_line.text)
            if line.currency != self.currency:
                raise BadRecord(f"BillingCurrency {line.currency} in the {self.currency} export")
        except BadRecord as exc:
            self._quarantine(f"{self.source}, blob {blob_line.blob} line {blob_line.number}", blob_line.text, str(exc))
            stats.quarantined += 1
            return
        key = (line.customer_id, line.entitlement_id, line.day)
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = _Buffer()
        size = len(line.text) + 1
        if buffer.lines and (len(buffer.lines) >= CHUNK_LINES or buffer.size + size > CHUNK_RAW_BYTES):
            self._flush(key)
            buffer = self._buffers[key] = _Buffer()
        buffer.lines.append(line)
        buffer.size += size
        self._buffered += size
        if self._buffered > BUFFER_BYTES:
            # An export ordered by slice finishes a slice before the next starts: write all but the one in progress
            for other in [k for k in self._buffers if k != key]:
                self._flush(other)

    # -- chunks out ------------------------------------------------------------------------------------------------

    def _flush(self, key: tuple[str, str, str]) -> None:
        buffer = self._buffers.pop(key, None)
        if buffer is None or not buffer.lines:
            return
        self._buffered -= buffer.size
        customer, entitlement, day = key
        records = sorted(buffer.lines, key=lambda ln: ln.digest)
        chunks = pack([ln.text.encode("utf-8") for ln in records])
        partition = staging_partition(customer, entitlement)
        at = 0
        for chunk in chunks:
            part = records[at : at + chunk.count]
            at += chunk.count
            billing, pricing = _totals(part)
            by_category: Amounts = {}
            for ln in part:
                add_to(by_category, ln.category, ln.billing_total, ln.list_total)
            self._chunks.add(
                {
                    "PartitionKey": partition,
                    "RowKey": staging_chunk_key(day, self.blob.index, self.segment, self._seq),
                    **chunk.properties(),
                    "h": b"".join(ln.digest for ln in part),
                    "bt": billing,
                    "pt": jsonutil.dumps(pricing) if pricing else None,
                    "ct": jsonutil.dumps(amounts.as_json(by_category)),
                    "nm": jsonutil.dumps(list(part[0].names)),
                }
            )
            self._seq += 1
            self.stats.chunks += 1
            self._pending += len(chunk.data or b"") + 32 * chunk.count + 2 * len(chunk.text or "")
        if self._pending > PENDING_BYTES:
            # A writer sends a partition's batch once it holds 100 rows; an export spread over many Azure
            # subscriptions would otherwise hold a partial batch of each: memory would grow with the export
            self._chunks.flush()
            self._pending = 0
        period = day[:7]
        self.stats.periods.add(period)
        if (customer, entitlement, period) not in self._slices:
            self._slices.add((customer, entitlement, period))
            self._index.add(
                {
                    "PartitionKey": STAGING_INDEX,
                    "RowKey": staging_slice_key(customer, entitlement, period),
                    "customerId": customer,
                    "entitlementId": entitlement,
                    "period": period,
                }
            )

    def finish(self) -> None:
        """Write every line read so far (after DeadlineReached too): what ``record`` then says is staged."""
        for key in list(self._buffers):
            self._flush(key)
        self._chunks.flush()
        self._index.flush()

    # -- the record ------------------------------------------------------------------------------------------------

    def record(self, *, complete: bool, now: datetime) -> bool:
        """Record this segment in the blob's row, if no other try recorded lines past its start meanwhile; True when
        recorded (its chunks now count), False when they are left for the staging table's drop."""
        for _ in range(3):
            row = self.store.get(self.table, STAGING_BLOBS, self.blob.key)
            if row is None:
                return False
            current = BlobProgress.of_row(row)
            if current.staged or current.lines_done != self.start:
                return False
            segments = current.segments
            if self.stats.last > self.start:
                segments = (*segments, (self.segment, self.start + 1, self.stats.last))
            updated = replace(
                current,
                lines_done=self.stats.last,
                lines=current.lines + self.stats.lines,
                quarantined=current.quarantined + self.stats.quarantined,
                segments=segments,
                staged=complete,
                staged_at=utc_text(now) if complete else None,
                last_error=None,
                periods=tuple(sorted(set(current.periods) | self.stats.periods)),
            )
            etag = (getattr(row, "metadata", None) or {}).get("etag")
            if self.store.replace_if(self.table, updated.row(), etag):
                self.blob = updated
                return True
        return False


def _totals(lines: list[RatedLine]) -> tuple[str, dict[str, str]]:
    with localcontext(EXACT):
        billing = sum((ln.billing_total for ln in lines), Decimal(0))
        pricing: dict[str, Decimal] = {}
        for ln in lines:
            if ln.pricing_total is not None:
                code = ln.pricing_currency or ""
                pricing[code] = pricing.get(code, Decimal(0)) + ln.pricing_total
    return str(billing), {code: str(total) for code, total in sorted(pricing.items())}


def stage_blob(stager: BlobStager, read: Callable[[Callable[[BlobLine], None]], None], *, now: datetime) -> bool:
    """Read the blob into the stager and record the segment: True when the blob is now staged whole. A deadline
    stops it cleanly (what was read is recorded, DeadlineReached raised); any other error records nothing."""
    try:
        read(stager.sink)
    except DeadlineReached:
        stager.finish()
        stager.record(complete=False, now=now)
        raise
    stager.finish()
    return stager.record(complete=True, now=now)
