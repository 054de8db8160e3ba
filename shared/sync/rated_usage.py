"""fetch_rated_usage: Azure plan daily rated usage from the Microsoft Graph partner billing export.

One **stream** per (billing period, currency): ``current`` always, ``last`` until a snapshot taken at least
RATED_USAGE_SETTLE_DAYS after that period ended has been stored. Streams run one after another, and a stream
has at most one export in flight: its operation URL is kept in its ``ExportStream`` row, so a run that leaves an
export running (RATED_USAGE_EXPORT_WAIT_SECONDS, or the run's deadline) polls the same operation next time
instead of starting another; an ingest stopped by the deadline keeps it too, and the next run converges. An
export whose manifest eTag equals the one stored is not downloaded. ``done`` counts exports stored. Only the
Graph client is used: no Partner Center refresh token is needed.

An export is staged blob by blob and committed slice by slice (``shared.rated.exports``), each resumable: a run
stages what its deadline allows and the next goes on, or, for an export of RATED_USAGE_FANOUT_BLOBS blobs or more
with a queue set, queues one message per blob for ``stage_rated_blob`` and leaves the rest to the workers. Each
run records how far the export got; one that made no progress over RATED_USAGE_STALLED_RUNS runs, a poisoned
blob, or an export that quarantined more than RATED_USAGE_QUARANTINE_SHARE of its lines fails the run, named.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

from azure.core.exceptions import HttpResponseError

from shared.deadline import DeadlineReached
from shared.graph.client import ExportExpired, Manifest, NoData, StillRunning
from shared.rated import exports
from shared.rated.commit import CommitBusy
from shared.rated.queue import STAGE, IngestMessage, ingest_queue, queue_configured, send
from shared.settings import Settings
from shared.sync.context import RunContext
from shared.table_store import TableStore
from shared.tables import (
    LATEST,
    RATED_INGEST_STATE,
    RATED_USAGE_STATE,
    STAGING_BLOBS,
    STAGING_COMMIT,
    SYNC_STATE,
    USAGE_RECORDS,
    BlobProgress,
    CommitProgress,
    ExportProgress,
    ExportStream,
    rated_stream_key,
    staging_table,
)
from shared.timeutil import utc_text

log = logging.getLogger(__name__)

CURRENT, LAST = "current", "last"
DEFAULT_CURRENCY = "USD"
OPERATION_MAX_AGE = timedelta(hours=24)  # an older operation is not polled again: its links will have expired
EXPORT_ATTEMPTS = 2  # a 410 or an expired SAS starts the export again once within a run
REQUEUE_AFTER = timedelta(minutes=30)  # a blob queued this long ago and still not staged is queued again


class IngestUnhealthy(Exception):
    """An export ingest that needs an operator: lines quarantined past the share allowed, a poisoned blob, or no
    progress over RATED_USAGE_STALLED_RUNS runs (the run fails: its record, the alert and /api/health say why)."""


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
    try:
        for index, (period, currency) in enumerate(streams):
            if ctx.out_of_time():
                ctx.run.add(pending=len(streams) - index)
                ctx.run.note(f"no time left in this run; {len(streams) - index} exports left for the next run")
                return
            Stream(ctx, period, currency).sync()
    finally:
        _drop_strays(ctx)


def _drop_strays(ctx: RunContext) -> None:
    """Staging tables no stream has in progress (written by a worker after its export was committed or replaced)."""
    try:
        keep = {
            progress.export_id
            for row in ctx.store.partition(SYNC_STATE, RATED_INGEST_STATE)
            if (progress := ExportProgress.of_row(row)).export_id
        }
        dropped = exports.drop_strays(ctx.store, {export_id for export_id in keep if export_id})
    except Exception as exc:  # housekeeping: never the run's outcome
        log.warning("could not look for stray staging tables: %s", exc)
        return
    if dropped:
        ctx.run.note(f"dropped {dropped} staging tables of exports no longer in progress")


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
        ctx, run = self.ctx, self.ctx.run
        settled = self._settled(manifest)
        checked = replace(state, checked_at=utc_text(self.now), no_data_at=None)
        progress = exports.load_progress(ctx.store, self.billing_period, self.currency)
        if manifest.etag and state.snapshot_etag == manifest.etag:
            self._save(replace(checked, operation_url=None, settled_period=settled or state.settled_period))
            if progress.export_id is not None:  # an export in progress was overtaken by the stored one
                ctx.store.drop(staging_table(progress.export_id))
                exports.save_progress(ctx.store, replace(progress, export_id=None, sas_token=None))
            run.add(done=1)
            run.note(f"{self.subject}: snapshot {manifest.etag} is the one stored; nothing downloaded")
            return
        fanout = queue_configured(ctx.settings) and len(manifest.blobs) >= ctx.settings.rated_usage_fanout_blobs
        progress = exports.begin(ctx.store, progress, manifest, now=self.now, fanout=fanout, settles=settled)
        self._save(checked)  # the operation stays the stream's until its export is committed
        progress = replace(progress, runs=progress.runs + 1)
        finished = False
        try:
            finished = self._advance(progress)
        except HttpResponseError as exc:
            # Two runs of this stream at once (a manual trigger during the schedule): the other one committed this
            # export, or replaced it with its own, and dropped its staging table under this one (404). Converged
            # or left to the other run, not failed.
            if exc.status_code != 404:
                raise
            if load_stream(ctx.store, self.billing_period, self.currency).snapshot_etag == manifest.etag:
                finished = True
                run.add(done=1)
                run.note(f"{self.subject}: snapshot {manifest.etag} was committed by another run meanwhile")
            elif exports.load_progress(ctx.store, self.billing_period, self.currency).export_id != progress.export_id:
                finished = True  # nothing of this run's to judge: the export in progress is the other run's
                run.add(pending=1)
                run.note(f"{self.subject}: another run took this export over; it stores the snapshot")
            else:
                raise
        finally:
            if not finished:
                self._judge(progress)

    def _advance(self, progress: ExportProgress) -> bool:
        """Stage (inline or by queue) and commit as far as this run goes; True once the export is committed."""
        ctx, run = self.ctx, self.ctx.run
        blobs = exports.blobs_of(ctx.store, progress)
        self._report_failures(blobs)
        pending = [blob for blob in blobs if not blob.staged]
        if pending and progress.fanout:
            sent = self._enqueue(progress, pending)
            run.add(pending=1)
            run.note(
                f"{self.subject}: {len(blobs) - len(pending)} of {len(blobs)} blobs staged; {sent} queued for "
                "stage_rated_blob, which commits the export once every blob is staged"
            )
            return False
        how = exports.Staging(ctx.graph, self._quarantine, ctx.deadline, self.now)
        for blob in pending:
            if ctx.out_of_time():
                break
            exports.stage(ctx.store, progress, blob, how)  # DeadlineReached: recorded, the next run goes on
        blobs = exports.blobs_of(ctx.store, progress)
        if not all(blob.staged for blob in blobs):
            run.add(pending=1)
            staged = sum(blob.staged for blob in blobs)
            run.note(f"{self.subject}: {staged} of {len(blobs)} blobs staged; the next run goes on")
            return False
        try:
            committer = exports.commit(
                ctx.store, progress, blobs, now=self.now, deadline=ctx.deadline, on_rows=lambda n: run.add(rows=n)
            )
        except CommitBusy as exc:
            run.add(pending=1)
            run.note(f"{self.subject}: {exc}")
            return False
        stored = exports.finalize(ctx.store, progress, blobs, committer, now=self.now)
        lines, quarantined = stored.line_count or 0, stored.quarantined_lines or 0
        run.add(done=1)
        run.note(
            f"{self.subject}: {lines} lines in {len(blobs)} blobs, {committer.slices} subscription slices "
            f"({committer.slices_written} written, {committer.slices_removed} removed), {committer.days_written} "
            f"days rewritten, {committer.line_rows_written} line rows written, {committer.line_rows_deleted} "
            f"deleted, in {progress.runs} runs"
        )
        if lines and quarantined / lines > ctx.settings.rated_usage_quarantine_share:
            run.fail(
                self.subject,
                IngestUnhealthy(
                    f"quarantined {quarantined} of {lines} lines ({quarantined / lines:.1%}), more than "
                    f"RATED_USAGE_QUARANTINE_SHARE ({ctx.settings.rated_usage_quarantine_share:g})"
                ),
            )
        return True

    def _enqueue(self, progress: ExportProgress, pending: list[BlobProgress]) -> int:
        """Queue a message for each pending blob not queued within the last lease (or poisoned); returns how many."""
        assert progress.export_id is not None
        table = staging_table(progress.export_id)
        due = utc_text(self.now - REQUEUE_AFTER)
        queue = ingest_queue(self.ctx.settings)
        sent = 0
        for blob in pending:
            if blob.enqueued_at and blob.enqueued_at > due and not blob.poisoned:
                continue
            row = self.ctx.store.get(table, STAGING_BLOBS, blob.key)
            etag = (getattr(row, "metadata", None) or {}).get("etag") if row is not None else None
            current = BlobProgress.of_row(row) if row is not None else blob
            marked = replace(current, enqueued_at=utc_text(self.now), poisoned=False)
            if row is None or self.ctx.store.replace_if(table, marked.row(), etag) is None:
                continue  # a worker is writing it: it is in hand
            send(queue, IngestMessage(STAGE, self.billing_period, self.currency, progress.export_id, blob.index))
            sent += 1
        return sent

    def _report_failures(self, blobs: list[BlobProgress]) -> None:
        """Blobs whose messages were poisoned (or whose last try failed): named in the run record."""
        for blob in blobs:
            if blob.poisoned:
                self.ctx.run.fail(
                    f"{self.subject} blob {blob.name}",
                    IngestUnhealthy(f"poisoned after {blob.attempts} tries ({blob.last_error}); queued again"),
                )
            elif blob.last_error and not blob.staged:
                self.ctx.run.note(f"{self.subject} blob {blob.name}: last try failed: {blob.last_error}")

    def _judge(self, progress: ExportProgress) -> None:
        """Save how far the export got; an export that made no progress over RATED_USAGE_STALLED_RUNS runs fails
        the run (its record and /api/health say so)."""
        store = self.ctx.store
        current = exports.load_progress(store, self.billing_period, self.currency)
        if current.export_id != progress.export_id:
            return  # committed (or replaced) meanwhile
        blobs = exports.blobs_of(store, progress)
        row = store.get(staging_table(progress.export_id or ""), STAGING_COMMIT, STAGING_COMMIT)
        marker = exports.marker(blobs, CommitProgress.of_row(row) if row is not None else None)
        moved = marker != progress.marker
        judged = replace(
            progress,
            marker=marker,
            stalled_runs=0 if moved else progress.stalled_runs + 1,
            progress_at=utc_text(self.now) if moved else progress.progress_at,
        )
        exports.save_progress(store, judged)
        if moved:
            self.ctx.run.counters.add(advanced=1)  # kept for the next run: this run did not stall
        limit = self.ctx.settings.rated_usage_stalled_runs
        if judged.stalled_runs >= limit:
            staged = sum(blob.staged for blob in blobs)
            self.ctx.run.fail(
                self.subject,
                IngestUnhealthy(
                    f"no progress over {judged.stalled_runs} runs (RATED_USAGE_STALLED_RUNS {limit}): {staged} of "
                    f"{len(blobs)} blobs staged, last progress {judged.progress_at}"
                ),
            )

    def _quarantine(self, source: str, raw: str, reason: str) -> None:
        self.ctx.run.quarantine(source=source, raw=raw, reason=reason, raw_is_text=True)

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
