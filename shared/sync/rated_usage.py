"""fetch_rated_usage: Azure plan daily rated usage from the Microsoft Graph partner billing export.

One **stream** per (billing period, currency): ``current`` always, ``last`` until a snapshot taken at least
RATED_USAGE_SETTLE_DAYS after that period ended has been stored. Streams run one after another, and a stream
has at most one export in flight: its operation URL is kept in SyncState, so a run that leaves an export
running (RATED_USAGE_EXPORT_WAIT_SECONDS) polls the same operation next time instead of starting another.
An export whose manifest eTag equals the one stored is not downloaded. ``done`` counts exports stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from azure.data.tables import UpdateMode

from shared.graph.blobs import read_lines
from shared.graph.client import ExportExpired, GraphBillingClient, Manifest, NoData, StillRunning
from shared.partner_center import PartnerCenterClient
from shared.rated.ingest import Ingest, Snapshot
from shared.settings import Settings
from shared.sync.runs import SyncRun
from shared.table_store import TableStore
from shared.tables import LATEST, RATED_USAGE_STATE, SYNC_STATE, USAGE_RECORDS, rated_stream_key, state_row
from shared.timeutil import utc_text
from shared.wiring import graph_billing_client

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


def settled(state: Mapping[str, Any] | None, period: str) -> bool:
    """True once the stream ``last`` has stored a settled snapshot of ``period``."""
    return state is not None and state.get("settledPeriod") == period


def sync_rated_usage(
    client: PartnerCenterClient, store: TableStore, settings: Settings, run: SyncRun, *, now: datetime
) -> None:
    """Export, download and store each stream's snapshot that is due; every stream is tried."""
    graph = graph_billing_client(settings, client)
    today = now.astimezone(timezone.utc).date()
    last_period = month_of(previous_month(today))
    streams = []
    for currency in currencies(store, settings):
        streams.append((CURRENT, currency))
        if not settled(store.get(SYNC_STATE, RATED_USAGE_STATE, rated_stream_key(LAST, currency)), last_period):
            streams.append((LAST, currency))
    for index, (period, currency) in enumerate(streams):
        if run.out_of_time():
            run.add(pending=len(streams) - index)
            run.note(f"time budget spent; {len(streams) - index} exports left for the next run")
            return
        Stream(graph, store, settings, run, period, currency, now=now).sync()


class Stream:
    """One (billing period, currency): its export, its state row, its ingest."""

    def __init__(
        self,
        graph: GraphBillingClient,
        store: TableStore,
        settings: Settings,
        run: SyncRun,
        billing_period: str,
        currency: str,
        *,
        now: datetime,
    ) -> None:
        self.graph, self.store, self.settings, self.run = graph, store, settings, run
        self.billing_period, self.currency, self.now = billing_period, currency, now
        self.key = rated_stream_key(billing_period, currency)
        self.subject = f"rated usage export {billing_period} {currency}"

    def _save(self, **fields: Any) -> None:
        row = state_row(RATED_USAGE_STATE, self.key, billingPeriod=self.billing_period, currencyCode=self.currency)
        writer = self.store.writer(SYNC_STATE, mode=UpdateMode.MERGE)
        writer.add({**row, **fields})
        writer.flush()

    def _operation(self, state: Mapping[str, Any] | None) -> str:
        """The export in flight, or a new one (recorded before it is polled)."""
        if state is not None and state.get("operationUrl"):
            started = state.get("operationStartedAt") or ""
            if started and started > utc_text(self.now - OPERATION_MAX_AGE):
                return str(state["operationUrl"])
        operation = self.graph.start_unbilled(
            currency=self.currency,
            billing_period=self.billing_period,
            attribute_set=self.settings.rated_usage_attribute_set,
        )
        self._save(operationUrl=operation, operationStartedAt=utc_text(self.now))
        return operation

    def sync(self) -> None:
        """Poll (or start) the export and store its snapshot; failures are recorded, never raised."""
        for attempt in range(1, EXPORT_ATTEMPTS + 1):
            state = self.store.get(SYNC_STATE, RATED_USAGE_STATE, self.key)
            try:
                operation = self._operation(state)
                wait = self.settings.rated_usage_export_wait_seconds
                manifest = self.graph.wait(operation, max_wait=wait)
                self._store(manifest, state)
                return
            except StillRunning as exc:
                self.run.add(pending=1)
                self.run.note(f"{self.subject}: {exc}")
                return
            except NoData:
                self._save(operationUrl="", checkedAt=utc_text(self.now), noDataAt=utc_text(self.now))
                self.run.add(done=1)
                self.run.note(f"{self.subject}: Graph has no data for this period yet (code 5000)")
                return
            except ExportExpired as exc:
                self._save(operationUrl="")
                if attempt == EXPORT_ATTEMPTS:
                    self.run.fail(self.subject, exc)
                    return
                log.info("%s: %s; starting a new export", self.subject, exc)
            except Exception as exc:  # one stream's failure does not stop the others
                self.run.fail(self.subject, exc)
                return

    def _store(self, manifest: Manifest, state: Mapping[str, Any] | None) -> None:
        checked = {"operationUrl": "", "checkedAt": utc_text(self.now), "noDataAt": ""}
        if manifest.etag and state is not None and state.get("snapshotETag") == manifest.etag:
            self._save(**checked, **self._settled(manifest, state))
            self.run.add(done=1)
            self.run.note(f"{self.subject}: snapshot {manifest.etag} is the one stored; nothing downloaded")
            return
        snapshot = Snapshot(self.billing_period, self.currency, manifest.etag, manifest.created)
        stats = Ingest(self.store, self.run, snapshot, now=self.now).ingest(read_lines(self.graph, manifest))
        self._save(
            **checked,
            snapshotETag=manifest.etag,
            snapshotCreatedAt=manifest.created,
            ingestedAt=utc_text(self.now),
            lineCount=stats.lines,
            quarantinedLines=stats.quarantined,
            slices=stats.slices,
            periods=",".join(stats.periods),
            **self._settled(manifest, state),
        )
        self.run.add(done=1)
        self.run.note(
            f"{self.subject}: {stats.lines} lines in {len(manifest.blobs)} blobs, {stats.slices} subscription "
            f"slices ({stats.slices_written} written, {stats.slices_removed} removed), {stats.days_written} "
            f"days rewritten, {stats.line_rows_written} line rows written, {stats.line_rows_deleted} deleted"
        )

    def _settled(self, manifest: Manifest, state: Mapping[str, Any] | None) -> dict[str, Any]:
        """``settledPeriod`` once a ``last`` snapshot was taken RATED_USAGE_SETTLE_DAYS after its period ended."""
        if self.billing_period != LAST:
            return {}
        today = self.now.astimezone(timezone.utc).date()
        period_end = today.replace(day=1)  # the last period ends where this month begins
        taken = _date(manifest.created) or today
        if taken >= period_end + timedelta(days=self.settings.rated_usage_settle_days):
            return {"settledPeriod": month_of(previous_month(today))}
        return {}


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).date()
