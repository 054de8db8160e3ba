"""The partner's invoices, their tie-out and their billed lines (partner only: an invoice is the partner's cost).

- ``v1/invoices``: every invoice and credit note stored, newest first, each with whether its billed data is
  stored (``billed``), when, how many lines, and its tie-out.
- ``v1/invoices/{invoice_id}``: one invoice with its tie-out and every customer's part of it (totals by charge
  kind; billed usage against the usage charges).
- ``v1/invoices/{invoice_id}/lineitems``: its reconciliation and billed usage lines as received, paged,
  ``customer=`` one customer's (one key range). A page reads only the version the invoice points to; a token
  written for another version (the invoice was stored again meanwhile) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from shared import jsonutil
from shared.api import continuation, rendering
from shared.api.context import Content, Context
from shared.api.errors import ApiError, not_found
from shared.billing.rows import (
    INVOICE_CUSTOMERS,
    INVOICE_LINES,
    INVOICE_PARTITION,
    INVOICES,
    SEGMENT_PREFIX,
    Billed,
    Invoice,
    invoice_key,
    lines_partition,
)
from shared.keys import make_key, under
from shared.tables import customer_key

CODE_NO_INVOICE = 900430


def _no_invoice(invoice_id: str) -> ApiError:
    return not_found(f"No invoice {invoice_id} is stored.", CODE_NO_INVOICE)


def _json(text: Any, empty: str) -> Any:
    return jsonutil.loads(str(text or empty))


def invoice_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """One invoice as the API serves it."""
    invoice = Invoice.of_row(row)
    billed = Billed.of_row(row)
    return {
        "id": invoice.id,
        "invoiceDate": invoice.invoice_date,
        "billingPeriodStartDate": invoice.period_start,
        "billingPeriodEndDate": invoice.period_end,
        "period": invoice.period,
        "currencyCode": invoice.currency,
        "totalCharges": Decimal(invoice.total_charges),
        "documentType": invoice.document_type,
        "invoiceType": invoice.invoice_type,
        "amendsOf": invoice.amends_of,
        "amendments": list(invoice.amendments),
        "status": "billed" if billed else "pending",
        "billedAt": billed.billed_at if billed else None,
        "reconciliationLines": billed.lines if billed else None,
        "usageLines": billed.usage_lines if billed else None,
        "quarantinedLines": billed.quarantined if billed else None,
        "tieOut": dict(billed.tie_out) if billed else None,
        "links": {
            "self": rendering.link(f"invoices/{invoice.id}"),
            "lineItems": rendering.link(f"invoices/{invoice.id}/lineitems"),
        },
    }


def _body(value: Mapping[str, Any]) -> bytes:
    return jsonutil.dumps(value).encode("utf-8")


def invoices(ctx: Context) -> Content:
    """The partner's invoices and credit notes, with each one's billed status and tie-out"""
    rows = list(ctx.store.partition(INVOICES, INVOICE_PARTITION))
    items = sorted((invoice_item(row) for row in rows), key=lambda i: (i["invoiceDate"] or "", i["id"]), reverse=True)
    failed = [i["id"] for i in items if i["tieOut"] is not None and not i["tieOut"].get("passed")]
    body = {
        "totalCount": len(items),
        "items": items,
        "tieOutFailed": failed,
        "links": {"self": rendering.link("invoices")},
        "attributes": {"objectType": "InvoiceCollection"},
    }
    return Content(_body(body))


def _invoice_row(ctx: Context) -> dict[str, Any]:
    invoice_id = ctx.path["invoice_id"]
    row = ctx.store.get(INVOICES, INVOICE_PARTITION, invoice_key(invoice_id))
    if row is None:
        raise _no_invoice(invoice_id)
    return row


def invoice(ctx: Context) -> Content:
    """One invoice: its tie-out and every customer's part of it"""
    row = _invoice_row(ctx)
    item = invoice_item(row)
    customers = []
    for found in ctx.store.partition(INVOICE_CUSTOMERS, invoice_key(item["id"])):
        customers.append(
            {
                "customerId": found["customerId"],
                "customerName": found.get("customerName"),
                "resellerMpnIds": _json(found.get("resellers"), "[]"),
                "currencyCode": found.get("currencyCode"),
                "total": Decimal(str(found["total"])),
                "subtotal": Decimal(str(found["subtotal"])),
                "byKind": {k: Decimal(str(v)) for k, v in _json(found.get("byKind"), "{}").items()},
                "usageBilled": Decimal(str(found["usageBilled"])),
                "usageReconciled": Decimal(str(found["usageReconciled"])),
                "tieOutPassed": bool(found.get("tieOutPassed")),
                "lines": int(found.get("lines") or 0),
                "usageLines": int(found.get("usageLines") or 0),
            }
        )
    body = {**item, "customers": customers, "attributes": {"objectType": "Invoice"}}
    return Content(_body(body))


def _resource(invoice_id: str, version: str, one_customer: bool) -> str:
    """What a line-items token is for: the invoice, the version it pointed to, all lines or one customer's (a token
    of another version, written before the invoice was stored again, names no page)."""
    return f"invoice-lines:{invoice_id}:{version}:{'customer' if one_customer else 'all'}"


def invoice_line_items(ctx: Context) -> Content:
    """An invoice's billed lines as received (reconciliation, then billed usage, per customer), paged"""
    row = _invoice_row(ctx)
    invoice_id = str(row["invoiceId"])
    billed = Billed.of_row(row)
    if billed is None:
        raise not_found(f"The billed data of invoice {invoice_id} is not stored yet.", CODE_NO_INVOICE)
    customer: str | None = ctx.query["customer"]
    size, after = ctx.query["size"], None
    if ctx.continuation is not None:  # page 1 said which lines: one customer's (its key leads the last key) or all
        for one in (True, False):
            try:
                size, after = continuation.decode_listing(ctx.continuation, _resource(invoice_id, billed.version, one))
            except ApiError:
                if not one:
                    raise
                continue
            customer = after.split("|", 1)[0] if one else None
            break
    low, high = under(customer_key(customer)) if customer else ("", make_key(SEGMENT_PREFIX))
    condition = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
    values: dict[str, Any] = {"pk": lines_partition(invoice_id, billed.version), "lo": low, "hi": high}
    if after is not None:
        condition += " and RowKey gt @after"
        values["after"] = after
    rows = list(ctx.store.query(INVOICE_LINES, condition, values, limit=size + 1))
    more = len(rows) > size
    rows = rows[:size]
    path = f"invoices/{invoice_id}/lineitems"
    resource = _resource(invoice_id, billed.version, customer is not None)
    next_token = continuation.encode_listing(resource, size, rows[-1]["RowKey"]) if more and rows else None
    query = {"size": size, **({"customer": customer} if customer else {})}
    links = rendering.page_links(path, query, token=ctx.continuation, next_token=next_token)
    raws = [str(r["line"]) for r in rows]
    headers = {rendering.CONTINUATION_HEADER: next_token} if next_token else {}
    return Content(rendering.collection(raws, links), headers=headers)


_MONEY = {"$ref": "#/components/schemas/Money"}
_TEXT = {"type": ["string", "null"]}
_TIE_OUT = {
    "type": ["object", "null"],
    "description": "null until the billed data is stored. `passed`; `linesTotal` (the reconciliation lines' Total, "
    "exact), `linesRounded` (to the currency's minor unit, half away from zero), `invoiceTotal`, `difference`, "
    "`tolerance` (BILLING_TIEOUT_TOLERANCE), `invoicePassed`, `customersChecked`, `customersFailed`, "
    "`failedCustomers` (billed usage against usage charges), `summary`",
}
_INVOICE = {
    "type": "object",
    "required": ["id", "currencyCode", "totalCharges", "documentType", "status"],
    "properties": {
        "id": {"type": "string"},
        "invoiceDate": {**_TEXT, "description": "YYYY-MM-DD"},
        "billingPeriodStartDate": _TEXT,
        "billingPeriodEndDate": _TEXT,
        "period": {**_TEXT, "description": "YYYY-MM: the month the invoice closes"},
        "currencyCode": {"type": "string"},
        "totalCharges": _MONEY,
        "documentType": {"type": "string", "description": "as Partner Center sends it: Invoice, Credit Note"},
        "invoiceType": _TEXT,
        "amendsOf": _TEXT,
        "amendments": {"type": "array", "items": {"type": "string"}},
        "status": {
            "type": "string",
            "description": "`billed`: its billed data is stored (and served); `pending`: not yet",
        },
        "billedAt": _TEXT,
        "reconciliationLines": {"type": ["integer", "null"]},
        "usageLines": {"type": ["integer", "null"]},
        "quarantinedLines": {"type": ["integer", "null"]},
        "tieOut": _TIE_OUT,
        "links": {"type": "object"},
        "customers": {
            "type": "array",
            "description": "(one invoice) every customer's part: `total` (with tax), `subtotal`, `byKind`, "
            "`usageBilled` (billed usage export), `usageReconciled` (usage charges), `tieOutPassed`",
            "items": {"type": "object"},
        },
        "attributes": {"type": "object"},
    },
    "additionalProperties": False,
}
SCHEMAS: dict[str, Any] = {
    "Invoice": _INVOICE,
    "InvoiceCollection": {
        "type": "object",
        "required": ["totalCount", "items", "tieOutFailed"],
        "properties": {
            "totalCount": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Invoice"}},
            "tieOutFailed": {
                "type": "array",
                "items": {"type": "string"},
                "description": "invoices whose tie-out failed",
            },
            "links": {"type": "object"},
            "attributes": {"type": "object"},
        },
        "additionalProperties": False,
    },
    "InvoiceLineCollection": {
        "type": "object",
        "required": ["totalCount", "items", "links"],
        "properties": {
            "totalCount": {"type": "integer"},
            "items": {
                "type": "array",
                "description": "each line as received: a reconciliation line (every charge) or a billed usage line",
                "items": {"type": "object"},
            },
            "links": {"type": "object"},
            "attributes": {"type": "object"},
        },
    },
}
