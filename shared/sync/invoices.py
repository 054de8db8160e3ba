"""fetch_invoices: the partner's invoices (Partner Center), then each invoice's billed data (Microsoft Graph).

Every run lists ``GET /v1/invoices`` (paged) and stores each invoice and credit note exactly (fields merged: the
billed pointer the ingest wrote stays). Then, newest first and within the run's deadline, each invoice whose
billed data is not stored whole (or that lists a new amendment) goes through ``shared.billing.ingest``: its
billed reconciliation and billed usage exports, stored as one version, tallied, tied out, and the customer
months it bills marked for the spend projection (which then serves them ``billed``). ``done`` counts invoices
whose billed data is stored (or was already); an invoice left for the next run counts as pending. Last, the
open periods' charges that are not usage (``reconciliation/unbilled/export`` per currency, ``current`` and
``last`` until its invoice is listed, once a day) are stored the same way, as estimates.
"""

from __future__ import annotations

import logging
from datetime import timezone

from azure.data.tables import UpdateMode

from shared.billing.ingest import InvoiceIngest
from shared.billing.rows import INVOICES, Invoice
from shared.deadline import DeadlineReached
from shared.sync.context import RunContext
from shared.sync.rated_usage import currencies, month_of, previous_month

log = logging.getLogger(__name__)

# Microsoft's billed exports serve invoices from September 2023 on; older ones are listed and stored, not exported.
FIRST_EXPORTED_INVOICE_DATE = "2023-09-01"
SOURCE = "GET /v1/invoices"


def list_invoices(ctx: RunContext) -> list[Invoice]:
    """Every invoice Partner Center lists, stored; a malformed one is quarantined with its reason."""
    writer = ctx.store.writer(INVOICES, mode=UpdateMode.MERGE, on_refused=ctx.run.quarantine_refused)
    found: list[Invoice] = []
    for page in ctx.partner_center.invoices():
        for item in page.items:
            try:
                invoice = Invoice.parse(item)
            except ValueError as exc:
                ctx.run.quarantine(source=SOURCE, raw=item, reason=str(exc))
                continue
            writer.add(invoice.row())
            found.append(invoice)
    ctx.run.add(rows=writer.flush())
    return found


def sync_invoices(ctx: RunContext) -> None:
    """List and store the invoices, then store each one's billed data that is due."""
    ctx.graph  # noqa: B018 - built first: missing Graph settings fail the run, named, before any call
    invoices = list_invoices(ctx)
    due = sorted(
        (i for i in invoices if (i.invoice_date or "") >= FIRST_EXPORTED_INVOICE_DATE),
        key=lambda i: (i.invoice_date or "", i.id),
        reverse=True,
    )
    stored = ingest_each(ctx, due, "invoices")
    ctx.run.note(f"{len(invoices)} invoices listed, {stored} stored or checked again this run")
    ingest_each(ctx, open_periods(ctx, invoices), "open periods")


def ingest_each(ctx: RunContext, documents: list[Invoice], what: str) -> int:
    """Store each document's billed data (or open period's charges) that is due, until the run's time is up;
    returns how many were stored or checked again. Only invoices count as ``done``."""
    changed = 0
    for index, document in enumerate(documents):
        if ctx.out_of_time():
            ctx.run.add(pending=len(documents) - index)
            ctx.run.note(f"no time left in this run; {len(documents) - index} {what} left for the next run")
            break
        subject = (
            f"unbilled charges {document.currency} {document.period}"
            if document.is_unbilled
            else f"billed data of invoice {document.id}"
        )
        try:
            outcome = InvoiceIngest(ctx, document).sync()
        except DeadlineReached as exc:
            ctx.run.add(pending=1)
            ctx.run.reached_deadline(subject, exc)
            break
        except Exception as exc:  # one document's failure does not stop the others
            ctx.run.fail(subject, exc)
            continue
        if outcome.state == "pending":
            ctx.run.add(pending=1)
            ctx.run.note(f"{subject}: {outcome.detail}")
            continue
        ctx.run.add(rows=outcome.rows, done=0 if document.is_unbilled else 1)
        if outcome.state != "current":
            changed += 1
            ctx.run.note(f"{subject}: {outcome.state}; {outcome.detail}")
    return changed


def open_periods(ctx: RunContext, invoices: list[Invoice]) -> list[Invoice]:
    """The open periods whose charges are due: ``current`` of each currency, and ``last`` until its invoice is
    listed (each exported at most once a day)."""
    today = ctx.now.astimezone(timezone.utc).date()
    current, last = month_of(today), month_of(previous_month(today))
    found = set(currencies(ctx.store, ctx.settings)) | {i.currency for i in invoices}
    invoiced = {(i.currency, i.period) for i in invoices if not i.is_credit_note}
    due = []
    for currency in sorted(found):
        due.append(Invoice.unbilled(currency, current, "current", today.isoformat()))
        if (currency, last) not in invoiced:
            due.append(Invoice.unbilled(currency, last, "last", today.isoformat()))
    return due
