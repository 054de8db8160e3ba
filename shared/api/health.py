"""``GET /api/health``: each timer function's last run, judged on its newest finished run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from shared import jsonutil
from shared.api import queries
from shared.billing.rows import INVOICE_PARTITION, INVOICES
from shared.settings import Settings
from shared.sync.jobs import JOBS, Job
from shared.table_store import TableStore
from shared.tables import (
    RATED_INGEST_STATE,
    RATED_USAGE_STATE,
    STAGING_BLOBS,
    SYNC_STATE,
    BlobProgress,
    ExportProgress,
    RunStatus,
    staging_table,
)
from shared.timeutil import floor_to

_MAX_TEXT = 500


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _last_error(row: dict[str, Any]) -> dict[str, Any] | None:
    try:
        errors = jsonutil.loads(row.get("errors") or "[]")
    except ValueError:
        return {"message": "the run's error list is unreadable"}
    if not isinstance(errors, list) or not errors or not isinstance(errors[-1], dict):
        return None
    last = errors[-1]
    picked = {
        "subject": last.get("subject"),
        "status": last.get("status"),
        "code": last.get("code"),
        "requestId": last.get("requestId"),
        "correlationId": last.get("correlationId"),
        "message": last.get("message") or last.get("description"),
    }
    return {k: (v[:_MAX_TEXT] if isinstance(v, str) else v) for k, v in picked.items()}


def _run_view(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    finished = _time(row.get("finishedAt"))
    rows = row.get("rows")
    return {
        "runId": row.get("runId"),
        "correlationId": row.get("correlationId"),
        "status": row.get("status"),
        "startedAt": _iso(_time(row.get("startedAt"))),
        "finishedAt": _iso(finished),
        "ageSeconds": None if finished is None else round((now - finished).total_seconds(), 1),
        "rows": rows if isinstance(rows, int) else None,
        "errorCount": row.get("errorCount") if isinstance(row.get("errorCount"), int) else None,
        "lastError": _last_error(row),
        "notes": _notes(row),
    }


def _notes(row: dict[str, Any]) -> list[str]:
    """What the run said about how it went (why it stalled, what it left for the next run)."""
    try:
        notes = jsonutil.loads(row.get("notes") or "[]")
    except ValueError:
        return ["the run's notes are unreadable"]
    if not isinstance(notes, list):
        return []
    return [note[:_MAX_TEXT] for note in notes[:10] if isinstance(note, str)]


def progress(store: TableStore, job: Job, settings: Settings, now: datetime) -> dict[str, Any] | None:
    """How far each subscription's data reaches: the oldest and newest mark, and how many lag by over a day.

    Utilization's mark is the end of the last window stored; the newest it can be is the latest window that
    ended UTILIZATION_LAG_HOURS ago, and lag is counted from there. A summary's mark is its last success.
    """
    if job.progress is None:
        return None
    partition, field = job.progress
    marks = sorted(m for row in store.partition(SYNC_STATE, partition, select=[field]) if (m := _time(row.get(field))))
    reference = now
    if field == "doneThrough":
        lag = timedelta(hours=settings.utilization_lag_hours)
        reference = floor_to(now - lag, settings.utilization_window_hours)
    lagging = sum(1 for mark in marks if reference - mark > timedelta(days=1))
    return {
        "field": field,
        "subscriptions": len(marks),
        "oldest": _iso(marks[0]) if marks else None,
        "newest": _iso(marks[-1]) if marks else None,
        "laggingMoreThanADay": lagging,
    }


def snapshots(store: TableStore, job: Job, now: datetime) -> list[dict[str, Any]] | None:
    """The export streams of a job that has them: the snapshot stored, when, and when it was last checked."""
    if job.snapshots is None:
        return None
    out = []
    for stream in queries.export_streams(store, job.snapshots):
        ingested = _time(stream.ingested_at)
        age = None if ingested is None else round((now - ingested).total_seconds(), 1)
        out.append({**stream.snapshot(), "ageSeconds": age})
    return out


def exports(store: TableStore, job: Job, settings: Settings) -> tuple[list[dict[str, Any]], list[str]] | None:
    """The rated ingest's exports in progress (blobs staged of total, runs so far, poisoned blobs) and what is
    wrong with them or with the snapshots stored: no progress over RATED_USAGE_STALLED_RUNS runs, a poisoned blob,
    more lines quarantined than RATED_USAGE_QUARANTINE_SHARE."""
    if job.snapshots != RATED_USAGE_STATE:
        return None
    views, reasons = [], []
    for row in store.partition(SYNC_STATE, RATED_INGEST_STATE):
        progress = ExportProgress.of_row(row)
        if progress.export_id is None:
            continue
        name = f"export {progress.billing_period} {progress.currency}"
        blobs = [BlobProgress.of_row(b) for b in store.partition(staging_table(progress.export_id), STAGING_BLOBS)]
        staged = sum(blob.staged for blob in blobs)
        poisoned = [blob for blob in blobs if blob.poisoned]
        views.append(
            {
                "billingPeriod": progress.billing_period,
                "currencyCode": progress.currency,
                "exportId": progress.export_id,
                "manifestETag": progress.manifest_etag,
                "fanout": progress.fanout,
                "blobsTotal": progress.blob_count,
                "blobsStaged": staged,
                "linesStaged": sum(blob.lines for blob in blobs),
                "runs": progress.runs,
                "stalledRuns": progress.stalled_runs,
                "startedAt": progress.started_at,
                "progressAt": progress.progress_at,
                "poisoned": [
                    {"blob": blob.name, "attempts": blob.attempts, "lastError": (blob.last_error or "")[:_MAX_TEXT]}
                    for blob in poisoned
                ],
            }
        )
        if progress.stalled_runs >= settings.rated_usage_stalled_runs:
            reasons.append(
                f"{name} made no progress over {progress.stalled_runs} runs ({staged} of {len(blobs)} blobs staged; "
                f"last progress {progress.progress_at})"
            )
        reasons.extend(
            f"{name}: blob {blob.name} poisoned after {blob.attempts} tries: {(blob.last_error or '')[:_MAX_TEXT]}"
            for blob in poisoned
        )
    for stream in queries.export_streams(store, RATED_USAGE_STATE):
        lines, quarantined = stream.line_count or 0, stream.quarantined_lines or 0
        if lines and quarantined / lines > settings.rated_usage_quarantine_share:
            reasons.append(
                f"export {stream.billing_period} {stream.currency}: the stored snapshot quarantined {quarantined} of "
                f"{lines} lines, more than RATED_USAGE_QUARANTINE_SHARE ({settings.rated_usage_quarantine_share:g})"
            )
    return views, reasons


def function_health(store: TableStore, function: str, now: datetime, max_age_hours: float) -> dict[str, Any]:
    """One function: its running run (if the newest is running), its last finished run, and what is wrong."""
    newest = queries.newest_run(store, function)
    running = None
    finished = newest
    if newest is not None and newest.get("status") == RunStatus.RUNNING:
        running = _run_view(newest, now)
        finished = queries.newest_run(store, function, finished=True)
    reasons = []
    last = None if finished is None else _run_view(finished, now)
    if last is None:
        reasons.append("never run" if running is None else "running for the first time; no run has finished")
    elif last["status"] == RunStatus.STALLED:
        reasons.append("last finished run " + (last["notes"][0] if last["notes"] else "stalled"))
    elif last["status"] != RunStatus.SUCCEEDED:
        reasons.append(f"last finished run {last['status']}")
    elif last["ageSeconds"] is None:
        reasons.append("last finished run has no readable finish time")
    elif last["ageSeconds"] > max_age_hours * 3600:
        hours = last["ageSeconds"] / 3600
        reasons.append(f"stale: last success {hours:.1f} hours ago (limit {max_age_hours:g} hours)")
    return {"healthy": not reasons, "reasons": reasons, "lastRun": last, "running": running}


def health(store: TableStore, settings: Settings, now: datetime) -> tuple[int, dict[str, Any]]:
    """200 when every function's last finished run succeeded recently enough, else 503; and the report."""
    functions = {}
    for job in JOBS:
        functions[job.name] = {
            **function_health(store, job.name, now, settings.health_max_age_hours),
            "progress": progress(store, job, settings, now),
        }
        found = snapshots(store, job, now)
        if found is not None:
            functions[job.name]["snapshots"] = found
        ingest = exports(store, job, settings)
        if ingest is not None:
            views, reasons = ingest
            functions[job.name]["exports"] = views
            functions[job.name]["reasons"] += reasons
            functions[job.name]["healthy"] = not functions[job.name]["reasons"]
    healthy = all(f["healthy"] for f in functions.values())
    report = {
        "status": "healthy" if healthy else "unhealthy",
        "checkedAt": _iso(now),
        "maxAgeHours": settings.health_max_age_hours,
        "accessMode": settings.api_access_mode,  # who reads customer data: key, both or token (API_ACCESS_MODE)
        "functions": functions,
        "invoices": invoices(store),
    }
    return (200 if healthy else 503), report


def invoices(store: TableStore) -> dict[str, Any]:
    """The invoices stored, how many have their billed data, and those whose tie-out failed (the run that stored
    one failed, which the alert reports; the invoice stays listed here until Microsoft amends it)."""
    select = ["invoiceId", "billedVersion", "tieOutPassed", "tieOut"]
    rows = list(store.partition(INVOICES, INVOICE_PARTITION, select=select))
    billed = [row for row in rows if row.get("billedVersion")]
    failed = []
    for row in billed:
        if not row.get("tieOutPassed"):
            tie_out = jsonutil.loads(str(row.get("tieOut") or "{}"))
            summary = tie_out.get("summary") if isinstance(tie_out, dict) else None
            failed.append({"invoiceId": row.get("invoiceId"), "summary": summary})
    return {"listed": len(rows), "billed": len(billed), "pending": len(rows) - len(billed), "tieOutFailed": failed}
