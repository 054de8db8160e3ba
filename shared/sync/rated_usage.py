"""fetch_rated_usage: Azure plan daily rated usage from the Microsoft Graph partner billing export.

One **stream** per (billing period, currency): ``current`` always, ``last`` until a snapshot taken at least
RATED_USAGE_SETTLE_DAYS after that period ended has been stored. Streams run one after another, and a stream
has at most one export in flight: its operation URL is kept in its ``ExportStream`` row, so a run that leaves an
export running (RATED_USAGE_EXPORT_WAIT_SECONDS, or the run's deadline) polls the same operation next time
instead of starting another; an ingest stopped by the deadline keeps it too, and the next run converges. An
export whose manifest eTag equals the one stored is not downloaded. ``done`` counts exports stored. Only the
Graph client is used: no Partner Center refresh token is needed.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

from shared.deadline import DeadlineReached
from shared.graph.blobs import read_lines
from shared.graph.client import ExportExpired, Manifest, NoData, StillRunning
from shared.rated.ingest import Ingest, Snapshot
from shared.settings import Settings
from shared.sync.context import RunContext
from shared.table_store import TableStore
from shared.tables import LATEST, RATED_USAGE_STATE, SYNC_STATE, USAGE_RECORDS, ExportStream, rated_stream_key
from shared.timeutil import utc_text

log = logging.getLogger(__name__)

CURRENT, LAST = "current", "last"
DEFAULT_CURRENCY = "USD"
OPERATION_MAX_AGE = timedelta(hours=24)  # an older operation is not polled again: its links will have expired
EXPORT_ATTEMPTS = 2  # a 410 or an expired SAS starts the export again once within a run


def month_of(day: date) -> str:
    """``YYYY-MM``."""
    return f"{day.year:04d}-{day.month:02d}"


def previous_month(day: date) -> date:
    """The first day of the month before ``day``'s."""
    first = day.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


def currencies(store: TableStore, settings: Settings) -> tuple[str, ...]:
    """RATED_USAGE_CURRENCIES, else the currencies of the stored usage records, else USD."""
    if settings.rated_usage_currencies:
        return settings.rated_usage_currencies
    found = {
        str(row["currencyCode"]).upper()
        for row in store.partition(USAGE_RECORDS, LATEST, select=["currencyCode"])
        if row.get("currencyCode")
    }
    return tuple(sorted(found)) or (DEFAULT_CURRENCY,)


def load_stream(store: TableStore, billing_period: str, currency: str) -> ExportStream:
    """A stream's stored row, or a new stream."""
    row = store.get(SYNC_STATE, RATED_USAGE_STATE, rated_stream_key(billing_period, currency))
    return ExportStream.of_row(row) if row else ExportStream(billing_period=billing_period, currency=currency)


def sync_rated_usage(ctx: RunContext) -> None:
    """Export, download and store each stream's snapshot that is due; every stream is tried."""
    ctx.graph  # noqa: B018 - built first: missing Graph settings fail the run, named, before any stream
    last_period = month_of(previous_month(ctx.now.astimezone(timezone.utc).date()))
    streams = []
    for currency in currencies(ctx.store, ctx.settings):
        streams.append((CURRENT, currency))
        if load_stream(ctx.store, LAST, currency).settled_period != last_period:
            streams.append((LAST, currency))
    for index, (period, currency) in enumerate(streams):
        if ctx.out_of_time():
            ctx.run.add(pending=len(streams) - index)
            ctx.run.note(f"no time left in this run; {len(streams) - index} exports left for the next run")
            return
        Stream(ctx, period, currency).sync()


class Stream:
    """One (billing period, currency): its export, its state row, its ingest."""

    def __init__(self, ctx: RunContext, billing_period: str, currency: str) -> None:
        self.ctx, self.billing_period, self.currency = ctx, billing_period, currency
        self.now = ctx.now
        self.subject = f"rated usage export {billing_period} {currency}"

    def _save(self, state: ExportStream) -> None:
        self.ctx.store.upsert_one(SYNC_STATE, state.row())

    def _operation(self, state: ExportStream) -> tuple[str, ExportStream]:
        """The export in flight, or a new one (recorded before it is polled)."""
        if state.operation_url and (state.operation_started_at or "") > utc_text(self.now - OPERATION_MAX_AGE):
            return state.operation_url, state
        operation = self.ctx.graph.start_unbilled(
            currency=self.currency,
            billing_period=self.billing_period,
            attribute_set=self.ctx.settings.rated_usage_attribute_set,
        )
        state = replace(state, operation_url=operation, operation_started_at=utc_text(self.now))
        self._save(state)
        return operation, state

    def sync(self) -> None:
        """Poll (or start) the export and store its snapshot; failures are recorded, never raised."""
        run = self.ctx.run
        for attempt in range(1, EXPORT_ATTEMPTS + 1):
            state = load_stream(self.ctx.store, self.billing_period, self.currency)
            try:
                operation, state = self._operation(state)
                wait = min(self.ctx.settings.rated_usage_export_wait_seconds, self.ctx.remaining())
                manifest = self.ctx.graph.wait(operation, max_wait=wait)
                self._store(manifest, state)
                return
            except StillRunning as exc:
                run.add(pending=1)
                run.note(f"{self.subject}: {exc}")
                return
            except DeadlineReached as exc:  # the export stays in flight: the next run polls it and converges
                run.add(pending=1)
                run.reached_deadline(self.subject, exc)
                return
            except NoData:
                self._save(
                    replace(state, operation_url=None, checked_at=utc_text(self.now), no_data_at=utc_text(self.now))
                )
                run.add(done=1)
                run.note(f"{self.subject}: Graph has no data for this period yet (code 5000)")
                return
            except ExportExpired as exc:
                self._save(replace(state, operation_url=None))
                if attempt == EXPORT_ATTEMPTS:
                    run.fail(self.subject, exc)
                    return
                log.info("%s: %s; starting a new export", self.subject, exc)
            except Exception as exc:  # one stream's failure does not stop the others
                run.fail(self.subject, exc)
                return

    def _store(self, manifest: Manifest, state: ExportStream) -> None:
        checked = replace(
            state,
            operation_url=None,
            checked_at=utc_text(self.now),
            no_data_at=None,
            settled_period=self._settled(manifest) or state.settled_period,
        )
        run = self.ctx.run
        if manifest.etag and state.snapshot_etag == manifest.etag:
            self._save(checked)
            run.add(done=1)
            run.note(f"{self.subject}: snapshot {manifest.etag} is the one stored; nothing downloaded")
            return
        snapshot = Snapshot(self.billing_period, self.currency, manifest.etag, manifest.created)
        ingest = Ingest(self.ctx.store, run, snapshot, now=self.now, deadline=self.ctx.deadline)
        stats = ingest.ingest_from(lambda into: read_lines(self.ctx.graph, manifest, into))
        self._save(
            replace(
                checked,
                snapshot_etag=manifest.etag or None,
                snapshot_created_at=manifest.created,
                ingested_at=utc_text(self.now),
                line_count=stats.lines,
                quarantined_lines=stats.quarantined,
                slices=stats.slices,
                periods=tuple(stats.periods),
            )
        )
        run.add(done=1)
        run.note(
            f"{self.subject}: {stats.lines} lines in {len(manifest.blobs)} blobs, {stats.slices} subscription "
            f"slices ({stats.slices_written} written, {stats.slices_removed} removed), {stats.days_written} "
            f"days rewritten, {stats.line_rows_written} line rows written, {stats.line_rows_deleted} deleted"
        )

    def _settled(self, manifest: Manifest) -> str | None:
        """The last period, once a ``last`` snapshot was taken RATED_USAGE_SETTLE_DAYS after it ended."""
        if self.billing_period != LAST:
            return None
        today = self.now.astimezone(timezone.utc).date()
        period_end = today.replace(day=1)  # the last period ends where this month begins
        taken = _date(manifest.created) or today
        if taken >= period_end + timedelta(days=self.ctx.settings.rated_usage_settle_days):
            return month_of(previous_month(today))
        return None


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).date()
