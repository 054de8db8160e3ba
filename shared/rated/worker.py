"""What ``stage_rated_blob`` does with one ``rated-ingest`` message: stage a blob, or commit a staged export.

Azure Functions' own scale-out spreads the messages over instances. A message of an export that is no longer the
stream's (a new manifest replaced it) is dropped. Staging a blob already staged changes nothing; the deadline
(host.json's ``functionTimeout`` less the margin) stops a blob or a commit cleanly and a message to go on is sent,
so no message runs into the host's timeout. Any other failure is recorded in the blob's row (tries, the reason)
and raised, so the host retries the message and, after ``maxDequeueCount`` tries, moves it to
``rated-ingest-poison``: the blob's row says it was poisoned and why, the next timer run names it in its run record
and queues it again, and ``/api/health`` shows it. The worker that stages an export's last blob queues its commit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from azure.storage.queue import QueueClient

from shared.deadline import Deadline, DeadlineReached
from shared.graph.client import GraphBillingClient
from shared.partner_center.auth import TokenProvider
from shared.rated import exports
from shared.rated.commit import CommitBusy
from shared.rated.queue import COMMIT, STAGE, IngestMessage, ingest_queue, send
from shared.settings import Settings
from shared.table_store import TableStore
from shared.tables import QUARANTINE, STAGING_BLOBS, BlobProgress, ExportProgress, quarantine_row, staging_table
from shared.timeutil import utc_text

log = logging.getLogger(__name__)
FUNCTION = "fetch_rated_usage"  # quarantined lines are the rated ingest's, whoever staged them
DEFAULT_MAX_DEQUEUE = 5  # the host's default maxDequeueCount


def max_dequeue_count(root: Path | None = None) -> int:
    """host.json's ``extensions.queues.maxDequeueCount`` (the host's default when absent)."""
    from shared.sync.context import APP_ROOT

    try:
        host = json.loads(((root or APP_ROOT) / "host.json").read_text(encoding="utf-8"))
        value = host["extensions"]["queues"]["maxDequeueCount"]
        return int(value) if int(value) > 0 else DEFAULT_MAX_DEQUEUE
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_MAX_DEQUEUE


def blob_client(settings: Settings, deadline: Deadline) -> GraphBillingClient:
    """A client that reads blobs only (their SAS is the credential): no Graph call, so no Graph token."""
    tokens = TokenProvider(authority=settings.graph_token_authority, tenant_id="-", client_id="-", client_secret="-")  # noqa: S106 - never used
    return GraphBillingClient(base_url=settings.graph_base_url, tokens=tokens, deadline=deadline)


class Worker:
    """Handles messages for one store and queue."""

    def __init__(
        self,
        settings: Settings,
        store: TableStore,
        *,
        queue: QueueClient | None = None,
        now: datetime | None = None,
        deadline: Deadline,
        max_dequeue: int = DEFAULT_MAX_DEQUEUE,
    ) -> None:
        self.settings, self.store, self.deadline, self.max_dequeue = settings, store, deadline, max_dequeue
        self.now = now or datetime.now(timezone.utc)
        self._queue = queue

    @property
    def queue(self) -> QueueClient:
        """The ``rated-ingest`` queue, for the messages to go on."""
        if self._queue is None:
            self._queue = ingest_queue(self.settings)
        return self._queue

    def handle(self, text: str, *, dequeue_count: int = 1) -> str:
        """Do what one message says; returns what was done (for the log). Raises what the host should retry."""
        message = IngestMessage.parse(text)
        progress = exports.load_progress(self.store, message.billing_period, message.currency)
        if progress.export_id != message.export_id:
            return f"dropped: export {message.export_id} is no longer the stream's"
        if message.kind == COMMIT:
            return self._commit(progress, message)
        assert message.kind == STAGE and message.blob is not None
        row = self.store.get(staging_table(message.export_id), STAGING_BLOBS, f"{message.blob:05d}")
        if row is None:
            return f"dropped: export {message.export_id} has no blob {message.blob}"
        blob = BlobProgress.of_row(row)
        if blob.staged:
            return f"blob {blob.name} is staged already"
        how = exports.Staging(blob_client(self.settings, self.deadline), self._quarantine, self.deadline, self.now)
        try:
            exports.stage(self.store, progress, blob, how)
        except DeadlineReached:
            send(self.queue, message)  # what is read is recorded: the next message goes on from there
            return f"blob {blob.name}: stopped at the deadline, a message to go on is queued"
        except Exception as exc:
            self._failed(message, row, exc, dequeue_count)
            raise
        blobs = exports.blobs_of(self.store, progress)
        if blobs and all(b.staged for b in blobs):
            send(self.queue, replace(message, kind=COMMIT, blob=None))
            return f"blob {blob.name} staged; every blob is: the commit is queued"
        return f"blob {blob.name} staged"

    def _commit(self, progress: ExportProgress, message: IngestMessage) -> str:
        blobs = exports.blobs_of(self.store, progress)
        if not blobs or not all(b.staged for b in blobs):
            return "commit: not every blob is staged yet"
        try:
            done = exports.commit(self.store, progress, blobs, now=self.now, deadline=self.deadline)
        except CommitBusy as exc:
            return f"commit: {exc}"
        except DeadlineReached:
            send(self.queue, message)
            return "commit: stopped at the deadline, a message to go on is queued"
        stored = exports.finalize(self.store, progress, blobs, done, now=self.now)
        share = (stored.quarantined_lines or 0) / max(1, stored.line_count or 0)
        if share > self.settings.rated_usage_quarantine_share:
            log.warning(
                "%sexport %s %s quarantined %d of %d lines",
                exports.UNHEALTHY,
                progress.billing_period,
                progress.currency,
                stored.quarantined_lines or 0,
                stored.line_count or 0,
            )
        return f"export {progress.export_id} committed: {done.slices} slices, {done.days_written} days rewritten"

    def _failed(self, message: IngestMessage, row: dict[str, object], error: BaseException, dequeue_count: int) -> None:
        """Record a failed try in the blob's row (best effort: the failure itself is what matters)."""
        poisoned = dequeue_count >= self.max_dequeue
        reason = f"{type(error).__name__}: {error}"[:1000]
        try:
            current = BlobProgress.of_row(row)
            failed = replace(current, attempts=current.attempts + 1, last_error=reason, poisoned=poisoned)
            etag = (getattr(row, "metadata", None) or {}).get("etag")
            self.store.replace_if(staging_table(message.export_id), failed.row(), etag)
        except Exception:
            log.exception("could not record the failure of blob %s", message.blob)
        if poisoned:
            log.warning(
                "%sexport %s %s blob %s goes to the poison queue after %d tries: %s",
                exports.UNHEALTHY,
                message.billing_period,
                message.currency,
                message.blob,
                dequeue_count,
                reason,
            )

    def _quarantine(self, source: str, raw: str, reason: str) -> None:
        row = quarantine_row(FUNCTION, source=source, raw_text=raw, reason=reason)
        log.warning("%s: quarantined a line from %s: %s", FUNCTION, row["source"][:200], row["reason"])
        self.store.upsert_one(QUARANTINE, row)


def run_message(text: str, *, dequeue_count: int) -> str:
    """What the queue function's ``main`` does: settings from the environment, the store, the deadline, one message."""
    from shared.sync.context import DEADLINE_MARGIN_SECONDS, FUNCTION_TIMEOUT

    settings = Settings.from_env()
    limit = None if FUNCTION_TIMEOUT is None else max(0.0, FUNCTION_TIMEOUT - DEADLINE_MARGIN_SECONDS)
    worker = Worker(
        settings,
        TableStore.from_settings(settings),
        deadline=Deadline.after(limit),
        max_dequeue=max_dequeue_count(),
    )
    outcome = worker.handle(text, dequeue_count=dequeue_count)
    log.info("stage_rated_blob: %s (at %s)", outcome, utc_text(worker.now))
    return outcome
