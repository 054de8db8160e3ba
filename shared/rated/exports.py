"""One export, from manifest to snapshot, across runs and instances: its progress, its blobs, its commit, its end.

The timer (``shared.sync.rated_usage``) finds the manifest and calls ``begin``: the export's progress is continued
when the manifest is the one in progress (same eTag, same blobs: ``export_id``), else started anew and the stale
export's staging table dropped. Its blobs are then staged, each resumably (``shared.rated.stage``): by the timer
itself within its deadline (``inline``), or by the queue-triggered ``stage_rated_blob`` with one message per blob,
when the export has RATED_USAGE_FANOUT_BLOBS blobs or more and a queue is configured. Once every blob is staged,
whoever sees it first commits (``shared.rated.commit``, resumable by slice, one committer at a time), and the one
that finishes ``finalize``s: the stream's snapshot is recorded, the staging table dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from shared.deadline import Deadline
from shared.graph.blobs import read_blob
from shared.graph.client import Blob, GraphBillingClient, Manifest
from shared.rated.commit import Committer
from shared.rated.stage import BlobStager, Quarantine, stage_blob
from shared.rated.versions import Snapshot
from shared.table_store import TableStore, written_at
from shared.tables import (
    RATED_INGEST_STATE,
    RATED_STAGING_PREFIX,
    RATED_USAGE_STATE,
    STAGING_BLOBS,
    SYNC_STATE,
    BlobProgress,
    CommitProgress,
    ExportProgress,
    ExportStream,
    export_id_of,
    rated_stream_key,
    staging_table,
)
from shared.timeutil import utc_text

log = logging.getLogger(__name__)
UNHEALTHY = "rated-ingest unhealthy: "  # the log line an operator alert matches (see README, Health)


def load_progress(store: TableStore, billing_period: str, currency: str) -> ExportProgress:
    """A stream's export in progress (an empty one when none is)."""
    row = store.get(SYNC_STATE, RATED_INGEST_STATE, rated_stream_key(billing_period, currency))
    if row is None:
        return ExportProgress(billing_period=billing_period, currency=currency.upper())
    return ExportProgress.of_row(row)


def save_progress(store: TableStore, progress: ExportProgress) -> None:
    """Write the stream's progress row (the timer's; workers write blob and commit rows)."""
    store.upsert_one(SYNC_STATE, progress.row())


def blobs_of(store: TableStore, progress: ExportProgress) -> list[BlobProgress]:
    """Every blob of the export in progress, by index."""
    if progress.export_id is None:
        return []
    return [BlobProgress.of_row(row) for row in store.partition(staging_table(progress.export_id), STAGING_BLOBS)]


def manifest_of(progress: ExportProgress, blob: BlobProgress) -> Manifest:
    """What reading one blob of the export takes (its directory and SAS), as a manifest of that blob."""
    return Manifest(
        id="",
        etag=progress.manifest_etag or "",
        created=progress.manifest_created,
        root_directory=progress.root_directory or "",
        sas_token=progress.sas_token or "",
        data_format=None,
        blobs=(Blob(blob.name),),
        raw={},
    )


def begin(
    store: TableStore,
    progress: ExportProgress,
    manifest: Manifest,
    *,
    now: datetime,
    fanout: bool,
    settles: str | None,
) -> ExportProgress:
    """The progress of this manifest's export: the one in progress when it is the same (its SAS renewed), else a new
    one whose blob rows are written first (the stale staging table is dropped)."""
    export_id = export_id_of(manifest.etag, (blob.name for blob in manifest.blobs))
    if progress.export_id == export_id:
        renewed = replace(progress, root_directory=manifest.root_directory, sas_token=manifest.sas_token)
        save_progress(store, renewed)
        return renewed
    if progress.export_id is not None:
        log.info("export %s replaces %s (a new manifest): its staging is dropped", export_id, progress.export_id)
        store.drop(staging_table(progress.export_id))
    table = staging_table(export_id)
    store.upsert(table, [BlobProgress(index=i, name=blob.name).row() for i, blob in enumerate(manifest.blobs)])
    started = ExportProgress(
        billing_period=progress.billing_period,
        currency=progress.currency,
        export_id=export_id,
        manifest_etag=manifest.etag,
        manifest_created=manifest.created,
        root_directory=manifest.root_directory,
        sas_token=manifest.sas_token,
        blob_count=len(manifest.blobs),
        fanout=fanout,
        started_at=utc_text(now),
        progress_at=utc_text(now),
        settles=settles,
    )
    save_progress(store, started)
    return started


def snapshot_of(progress: ExportProgress) -> Snapshot:
    """The snapshot the export stores."""
    return Snapshot(progress.billing_period, progress.currency, progress.manifest_etag or "", progress.manifest_created)


@dataclass(frozen=True)
class Staging:
    """What staging a blob takes besides the blob: where lines that cannot be placed go, the deadline, the clock."""

    client: GraphBillingClient
    quarantine: Quarantine
    deadline: Deadline
    now: datetime


def stage(store: TableStore, progress: ExportProgress, blob: BlobProgress, how: Staging) -> bool:
    """Stage one blob from where it was left (DeadlineReached when the deadline cuts it: what was read is
    recorded); True when it is now staged whole (False: another try got there first)."""
    assert progress.export_id is not None
    if blob.staged:
        return True
    stager = BlobStager(
        store,
        staging_table(progress.export_id),
        blob,
        currency=progress.currency,
        source=f"rated usage export {progress.billing_period} {progress.currency}",
        quarantine=how.quarantine,
        deadline=how.deadline,
    )
    manifest = manifest_of(progress, blob)
    return stage_blob(stager, lambda into: read_blob(how.client, manifest, blob.name, into), now=how.now)


def commit(
    store: TableStore,
    progress: ExportProgress,
    blobs: list[BlobProgress],
    *,
    now: datetime,
    deadline: Deadline,
    on_rows: Callable[[int], None] | None = None,
) -> CommitProgress:
    """Commit the staged export from where the last committer stopped (DeadlineReached between slices,
    CommitBusy when another committer holds it)."""
    assert progress.export_id is not None
    committer = Committer(
        store,
        staging_table(progress.export_id),
        snapshot_of(progress),
        blobs,
        now=now,
        deadline=deadline,
        lease_seconds=max(60.0, min(deadline.remaining(), 3600.0)),
        on_rows=on_rows,
    )
    return committer.run()


def finalize(
    store: TableStore, progress: ExportProgress, blobs: list[BlobProgress], done: CommitProgress, *, now: datetime
) -> ExportStream:
    """The export is committed: the stream records its snapshot, the progress ends, the staging table goes."""
    key = rated_stream_key(progress.billing_period, progress.currency)
    row = store.get(SYNC_STATE, RATED_USAGE_STATE, key)
    state = (
        ExportStream.of_row(row)
        if row
        else ExportStream(billing_period=progress.billing_period, currency=progress.currency)
    )
    lines = sum(blob.lines for blob in blobs)
    quarantined = sum(blob.quarantined for blob in blobs)
    stored = replace(
        state,
        operation_url=None,
        checked_at=utc_text(now),
        no_data_at=None,
        settled_period=progress.settles or state.settled_period,
        snapshot_etag=progress.manifest_etag or None,
        snapshot_created_at=progress.manifest_created,
        ingested_at=utc_text(now),
        line_count=lines,
        quarantined_lines=quarantined,
        slices=done.slices,
        periods=done.periods,
    )
    store.upsert_one(SYNC_STATE, stored.row())
    save_progress(store, ExportProgress(billing_period=progress.billing_period, currency=progress.currency))
    assert progress.export_id is not None
    store.drop(staging_table(progress.export_id))
    return stored


STRAY_MIN_AGE = timedelta(hours=1)


def drop_strays(store: TableStore, keep: set[str]) -> int:
    """Drop staging tables of exports no stream has in progress (a worker that wrote after its export was
    replaced); returns how many. A table whose blob rows were written within STRAY_MIN_AGE (by the service's
    clock) is left: it may be an export another run is beginning, whose blob rows are written before its progress
    row names it (dropping it then failed that run with a 404)."""
    dropped = 0
    recent = datetime.now(timezone.utc) - STRAY_MIN_AGE
    for name in store.table_names(RATED_STAGING_PREFIX):
        if name.removeprefix(RATED_STAGING_PREFIX) in keep:
            continue
        written = [written_at(row) for row in store.partition(name, STAGING_BLOBS, select=["Timestamp"])]
        if any(moment is not None and moment > recent for moment in written):
            continue
        store.drop(name)
        dropped += 1
    return dropped


def marker(blobs: list[BlobProgress], done: CommitProgress | None) -> str:
    """What progress looks like now: lines staged per blob and the commit's cursor (equal markers: no progress)."""
    staged = ",".join(str(blob.lines_done) + ("s" if blob.staged else "") for blob in blobs)
    cursor = "" if done is None else f"{done.cursor}|{done.customer_done}|{done.final_done}"
    return f"{staged};{cursor}"
