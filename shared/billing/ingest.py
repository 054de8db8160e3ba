"""One invoice's billed data, stored whole or not at all: its billed reconciliation export (every charge) and its
billed usage export (final daily rated usage), through the Graph export client.

The unit of replacement is a **version** (a hash of the two exports' eTags). Lines are written under the
version's own partition, a cursor (export, blob, line) and the tally of the lines since the last checkpoint are
stored every CHECKPOINT_LINES lines and at the run's deadline, so a run cut short (or killed) resumes where the
last checkpoint left it and the rerun writes the same rows. Once both exports are stored the tallies are merged,
the billed spend rows and per-customer totals written, the tie-out worked out, and only then the invoice's row
pointed at the new version (one entity write): a reader never sees a mix. An invoice stored whole is not
exported again unless an amendment is listed for it; re-exported data with the eTags already stored writes
nothing. Memory holds one blob chunk, one batch of rows and the tally (subjects and customers, not lines).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from shared.billing import tieout
from shared.billing.lines import parse_charge
from shared.billing.rows import (
    BILLED_SPEND,
    BILLED_STATE,
    DONE,
    INVOICE_CUSTOMERS,
    INVOICE_LINES,
    INVOICES,
    RECONCILIATION,
    SEGMENT_PREFIX,
    USAGE,
    Billed,
    BilledProgress,
    ExportLeg,
    IncompleteTallies,
    Invoice,
    Tally,
    billed_spend_key,
    billed_spend_row,
    invoice_key,
    line_key,
    lines_partition,
    tally_of_segments,
)
from shared.deadline import DeadlineReached
from shared.graph.blobs import BlobLine, read_blob
from shared.graph.client import ExportExpired, Manifest, NoData, StillRunning
from shared.keys import digest, make_key
from shared.rated.lines import parse_line
from shared.records import BadRecord
from shared.spend import refresh
from shared.sync.context import RunContext
from shared.table_store import BatchWriter
from shared.tables import SYNC_STATE, customer_key
from shared.timeutil import utc_text

log = logging.getLogger(__name__)

CHECKPOINT_LINES = 20_000  # lines between two stored cursors: what a crash costs at most
OPERATION_MAX_AGE = timedelta(hours=24)  # an older operation is not polled again: its links will have expired
EXPORT_ATTEMPTS = 2  # a 410 or an expired SAS exports again once within a run
NO_DATA_ETAG = "noData"
SOURCES = (RECONCILIATION, USAGE)
SOURCE_NAMES = {RECONCILIATION: "reconciliation", USAGE: "usage"}


class TieOutMismatch(Exception):
    """An invoice's stored lines do not add up to its total (or a customer's billed usage to its usage charges)."""


class _Pause(Exception):
    """The run's time is up: the cursor is stored, the next run goes on."""


@dataclass(frozen=True)
class Outcome:
    """What one invoice's sync did: ``stored``, ``unchanged``, ``current`` (nothing to do), ``pending``."""

    state: str
    rows: int = 0
    detail: str = ""


def load_progress(ctx: RunContext, invoice_id: str) -> BilledProgress:
    row = ctx.store.get(SYNC_STATE, BILLED_STATE, invoice_key(invoice_id))
    return BilledProgress.of_row(row) if row else BilledProgress(invoice_id=invoice_id)


class InvoiceIngest:
    """The billed data of one invoice: export, stream, tally, finalize."""

    def __init__(self, ctx: RunContext, invoice: Invoice) -> None:
        self.ctx, self.invoice = ctx, invoice
        self.subject = f"billed data of invoice {invoice.id}"
        self.etags = (NO_DATA_ETAG, NO_DATA_ETAG)  # of the two exports being stored

    # -- the whole ---------------------------------------------------------------------------------------------

    def sync(self) -> Outcome:
        """Store the invoice's billed data if it is not stored (or an amendment asks for it again)."""
        store = self.ctx.store
        row = store.get(INVOICES, self.invoice.partition, invoice_key(self.invoice.id))
        billed = Billed.of_row(row) if row else None
        if billed is not None and billed.amendments == self.invoice.amendments_digest:
            return Outcome("current")
        progress = load_progress(self.ctx, self.invoice.id)
        for attempt in range(1, EXPORT_ATTEMPTS + 1):
            try:
                finished = self._manifests(progress)
                if finished is None:
                    return Outcome("pending", detail="the export is still running; the next run polls it")
                return self._store(finished, billed)
            except ExportExpired as exc:
                progress = load_progress(self.ctx, self.invoice.id)
                progress = replace(progress, legs={})  # both exported again: the cursor and version stay
                self._save(progress)
                if attempt == EXPORT_ATTEMPTS:
                    raise
                log.info("%s: %s; exporting again", self.subject, exc)
        raise AssertionError("unreachable")

    def _save(self, progress: BilledProgress) -> None:
        self.ctx.store.upsert_one(SYNC_STATE, progress.row())

    # -- the exports -------------------------------------------------------------------------------------------

    def _manifests(self, progress: BilledProgress) -> BilledProgress | None:
        """Both exports finished (their manifests kept in the progress row), or None while one still runs."""
        graph, settings = self.ctx.graph, self.ctx.settings
        for source in SOURCES:
            leg = progress.leg(source)
            if leg.manifest is not None or leg.no_data:
                continue
            if source == USAGE and self.invoice.is_unbilled:  # the open period's usage is fetch_rated_usage's
                progress = progress.with_leg(source, ExportLeg(no_data=True))
                continue
            if not leg.operation_url or (leg.started_at or "") <= utc_text(self.ctx.now - OPERATION_MAX_AGE):
                operation = self._start(source)
                leg = ExportLeg(operation_url=operation, started_at=utc_text(self.ctx.now))
                progress = progress.with_leg(source, leg)
                self._save(progress)
            assert leg.operation_url is not None
            try:
                wait = min(settings.rated_usage_export_wait_seconds, self.ctx.remaining())
                manifest = graph.wait(leg.operation_url, max_wait=wait)
                leg = replace(leg, manifest=dict(manifest.raw))
            except NoData:
                leg = replace(leg, no_data=True)
            except (StillRunning, DeadlineReached):
                return None
            progress = progress.with_leg(source, leg)
            self._save(progress)
        return progress

    def _start(self, source: str) -> str:
        """Start the export of ``source`` for this invoice (or open period); its operation URL."""
        graph, attributes = self.ctx.graph, self.ctx.settings.rated_usage_attribute_set
        if self.invoice.is_unbilled:
            return graph.start_unbilled_reconciliation(
                currency=self.invoice.currency,
                billing_period=self.invoice.invoice_type or "current",
                attribute_set=attributes,
            )
        start = graph.start_billed_reconciliation if source == RECONCILIATION else graph.start_billed
        return start(invoice_id=self.invoice.id, attribute_set=attributes)

    @staticmethod
    def _etag(leg: ExportLeg) -> str:
        if leg.no_data or leg.manifest is None:
            return NO_DATA_ETAG
        manifest = Manifest.parse(leg.manifest)
        return manifest.etag if manifest.blobs else NO_DATA_ETAG

    # -- the lines ---------------------------------------------------------------------------------------------

    def _store(self, progress: BilledProgress, billed: Billed | None) -> Outcome:
        store = self.ctx.store
        etags = self.etags = (self._etag(progress.leg(RECONCILIATION)), self._etag(progress.leg(USAGE)))
        if billed is not None and (billed.reconciliation_etag, billed.usage_etag) == etags:
            store.merge_one(INVOICES, {**self.invoice.keys, "amendmentsExported": self._amended})
            store.delete(SYNC_STATE, BILLED_STATE, invoice_key(self.invoice.id))
            return Outcome("unchanged", detail=f"exports {etags[0]} / {etags[1]} are the ones stored; nothing written")
        version = digest(*etags, length=16)
        if progress.version != version:
            if progress.version and (billed is None or billed.version != progress.version):
                self._drop_version(progress.version)  # a partial version no export will finish now
            progress = replace(progress, version=version, source=RECONCILIATION, blob=0, line=0, segments=0)
            self._save(progress)
        progress = replace(progress, runs=progress.runs + 1)
        rows = self._stream(progress)
        if rows is None:
            return Outcome("pending", detail="the deadline came; the next run goes on from the stored cursor")
        try:
            return self._finalize(version, billed, rows)
        except IncompleteTallies as exc:  # another run started the version again under this one: start over
            self._save(replace(load_progress(self.ctx, self.invoice.id), version=None))
            return Outcome("pending", detail=f"{exc}; the next run stores this version again")

    @property
    def _amended(self) -> str:
        return self.invoice.amendments_digest

    def _stream(self, progress: BilledProgress) -> int | None:
        """Write the lines from the cursor on; the rows written, or None when the run's time ran out first."""
        assert progress.version is not None
        partition = lines_partition(self.invoice.id, progress.version)
        writer = self.ctx.store.writer(INVOICE_LINES, on_refused=self._refused)
        state = _Cursor(progress, writer, partition)
        fallback = self.invoice.period or ""
        start = SOURCES.index(progress.source)
        for position, source in enumerate(SOURCES[start:], start):
            leg = progress.leg(source)
            blobs = Manifest.parse(leg.manifest).blobs if leg.manifest is not None else ()
            first = state.progress.blob if state.progress.source == source else 0
            for index in range(first, len(blobs)):
                skip = state.progress.line if state.progress.source == source and state.progress.blob == index else 0
                sink = self._sink(state, source, index, skip, fallback)
                try:
                    read_blob(self.ctx.graph, Manifest.parse(leg.manifest or {}), blobs[index].name, sink)
                except (_Pause, DeadlineReached):
                    self.ctx.run.add(pending=1)
                    return None
                state.checkpoint(self, source, index + 1, 0)
                if self.ctx.out_of_time() and (index + 1 < len(blobs) or position + 1 < len(SOURCES)):
                    self.ctx.run.add(pending=1)
                    return None
            if position + 1 < len(SOURCES):  # the end of one export is the start of the next
                state.checkpoint(self, SOURCES[position + 1], 0, 0)
        state.checkpoint(self, *DONE)
        return state.rows

    def _sink(self, state: _Cursor, source: str, blob: int, skip: int, fallback: str) -> Callable[[BlobLine], None]:
        """What each line of one blob goes to: lines up to ``skip`` were stored by an earlier run."""

        def take(line: BlobLine) -> None:
            if line.number <= skip:
                return
            self._line(state, source, blob, line.number, line.text, fallback)
            if state.since >= CHECKPOINT_LINES:
                state.checkpoint(self, source, blob, line.number)
                if self.ctx.out_of_time():
                    raise _Pause

        return take

    def _line(self, state: _Cursor, source: str, blob: int, number: int, text: str, fallback: str) -> None:
        try:
            if source == RECONCILIATION:
                charge = parse_charge(text)
                customer, kind, currency = charge.customer_id, charge.kind, charge.currency
                state.tally.add_charge(charge, fallback)
            else:
                usage = parse_line(text)
                customer, kind, currency = usage.customer_id, "azureUsage", usage.currency
                state.tally.add_usage(usage)
        except BadRecord as exc:
            state.tally.quarantined += 1
            self.ctx.run.quarantine(
                source=f"invoice {self.invoice.id} {SOURCE_NAMES[source]} export blob {blob} line {number}",
                raw=text,
                reason=str(exc),
                raw_is_text=True,
            )
            state.since += 1
            return
        state.writer.add(
            {
                "PartitionKey": state.partition,
                "RowKey": line_key(customer, source, blob, number),
                "customerId": customer,
                "source": SOURCE_NAMES[source],
                "kind": kind,
                "currencyCode": currency,
                "line": text,
            }
        )
        state.since += 1

    def _refused(self, row: Mapping[str, Any], reason: str) -> None:
        self.ctx.run.quarantine(
            source=f"invoice {self.invoice.id} line row {row.get('RowKey')}",
            raw=str(row.get("line") or ""),
            reason=f"the table service refused the row: {reason}",
            raw_is_text=True,
        )

    # -- the whole, stored ---------------------------------------------------------------------------------------

    def _finalize(self, version: str, billed: Billed | None, rows: int) -> Outcome:
        """Every line of ``version`` is stored: its spend rows, customers and tie-out, then the switch. Two runs
        that both get here write the same rows (a run that overlapped this one may have done it first)."""
        store, invoice = self.ctx.store, self.invoice
        partition = lines_partition(invoice.id, version)
        tally = self._tally(partition)
        result = tieout.check(invoice, tally, self.ctx.settings.billing_tieout_tolerance)
        old = None  # the version served until now: what of it is gone from the new one is deleted
        if billed is not None and billed.version != version:
            try:
                old = self._tally(lines_partition(invoice.id, billed.version))
            except IncompleteTallies:  # dropped already: a run that overlapped this one switched and cleaned up
                old = None
        spend = [billed_spend_row(s, invoice, version) for s in tally.subjects.values()]
        written = store.upsert(BILLED_SPEND, spend)
        if old is not None:
            kept = {billed_spend_key(s, invoice.id) for s in tally.subjects.values()}
            gone = [
                {"PartitionKey": customer_key(s.customer_id), "RowKey": billed_spend_key(s, invoice.id)}
                for s in old.subjects.values()
                if billed_spend_key(s, invoice.id) not in kept
            ]
            store.delete_rows(BILLED_SPEND, gone)
            stale = [
                {"PartitionKey": invoice_key(invoice.id), "RowKey": customer_key(c)}
                for c in old.customers
                if c not in tally.customers
            ]
            store.delete_rows(INVOICE_CUSTOMERS, stale)
        written += store.upsert(INVOICE_CUSTOMERS, tieout.customer_rows(invoice, tally, result, version))
        periods: dict[str, set[str]] = {}
        for subject in [*tally.subjects.values(), *(old.subjects.values() if old else [])]:
            periods.setdefault(subject.customer_id, set()).add(subject.period)
        for customer_id, months in periods.items():
            refresh.mark(store, [customer_id], months)
        pointer = Billed(
            version=version,
            billed_at=utc_text(self.ctx.now),
            reconciliation_etag=self.etags[0],
            usage_etag=self.etags[1],
            amendments=self._amended,
            lines=tally.lines,
            usage_lines=tally.usage_lines,
            quarantined=tally.quarantined,
            tie_out=result.as_json(),
        )
        store.merge_one(INVOICES, pointer.row(invoice))  # the switch: readers now see the new version
        if billed is not None and billed.version != version:
            self._drop_version(billed.version)
        store.delete(SYNC_STATE, BILLED_STATE, invoice_key(invoice.id))
        if not result.passed:
            self.ctx.run.fail(self.subject, TieOutMismatch(result.summary))
        return Outcome(
            "stored",
            rows + written,
            f"{tally.lines} reconciliation lines, {tally.usage_lines} billed usage lines, "
            f"{len(tally.subjects)} billed subjects, tie-out {'passed' if result.passed else 'FAILED'}",
        )

    def _tally(self, partition: str) -> Tally:
        """The tally of every line of a version, from its segments."""
        low = make_key(SEGMENT_PREFIX)
        rows = self.ctx.store.query(
            INVOICE_LINES, "PartitionKey eq @pk and RowKey ge @lo", {"pk": partition, "lo": low}
        )
        return tally_of_segments(rows)

    def _drop_version(self, version: str) -> None:
        partition = lines_partition(self.invoice.id, version)
        keys = self.ctx.store.partition(INVOICE_LINES, partition, select=["PartitionKey", "RowKey"])
        self.ctx.store.delete_rows(INVOICE_LINES, keys)


class _Cursor:
    """The ingest's place: the progress row, the tally since the last checkpoint, the writer of line rows."""

    def __init__(self, progress: BilledProgress, writer: BatchWriter, partition: str) -> None:
        self.progress, self.writer, self.partition = progress, writer, partition
        self.tally = Tally()
        self.since = 0  # lines since the last checkpoint
        self.rows = 0

    def checkpoint(self, ingest: InvoiceIngest, source: str, blob: int, line: int) -> None:
        """Lines written, the tally of them stored as the segment from the cursor to here, then the cursor moved
        past them."""
        self.writer.flush()
        self.rows = self.writer.written
        start, end = (self.progress.source, self.progress.blob, self.progress.line), (source, blob, line)
        segments = self.progress.segments
        if start != end:
            ingest.ctx.store.upsert(INVOICE_LINES, self.tally.segment_rows(self.partition, start, end))
            segments += 1
        self.progress = replace(self.progress, source=source, blob=blob, line=line, segments=segments)
        ingest._save(self.progress)
        self.tally = Tally()
        self.since = 0
