"""The simulator's Partner Center invoices: ``GET /v1/invoices`` and ``GET /v1/invoices/{id}``.

For each billing currency of the world's customers and each of the last ``invoice_months`` closed calendar
months whose invoice date (the ``invoice_day``-th of the following month, 06:00Z) has come, one recurring
invoice, unless the month has no charge in that currency. Its ``totalCharges`` is its billed reconciliation
lines' ``Total`` (devhost.simulator.reconciliation) rounded half-up to the cent, except one planted mismatch
(1.00 too much, by default on the oldest invoice of the alphabetically last currency). A credit note amends the
newest invoice of the alphabetically first currency three days after its date, refunding one licence seat.
The admin API (``POST /_sim/invoices``) moves or clears the mismatch, adds credit notes and sets the final
re-rating of the billed data; ``InvoiceState`` holds what it changed. Deterministic: ids come from the seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from devhost.simulator.billing import BillingOptions
from devhost.simulator.reconciliation import billed_lines, first_licence_line, total_of
from devhost.simulator.world import World, _add_months, _h64

UTC = timezone.utc
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW"})  # totals rounded to whole units
MISMATCH = Decimal("1.00")  # what the planted mismatch adds to the true rounded total
CREDIT_NOTE_AFTER = timedelta(days=3)  # the default credit note's date after its invoice's
INVOICE_HOUR = time(6, 0, tzinfo=UTC)
ADMIN_KEYS = ("mismatch", "amend", "billedRerate")
_ROUNDING = Context(prec=60, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CreditNote:
    """A credit note the admin API added: its id, the invoice it amends and its date."""

    id: str
    amends_of: str
    invoice_date: datetime


@dataclass
class InvoiceState:
    """What the admin API changed; the defaults are the planted story (``Simulator.invoice_state``)."""

    mismatch: str | None = None
    mismatch_moved: bool = False  # False: the planted default (the oldest invoice of the last currency)
    credit_notes: list[CreditNote] = field(default_factory=list)  # added by the admin API, oldest first
    billed_rerate: dict[str, Decimal] | None = None  # UTC day -> final factor; None: the 15th of each month x 1.0125


@dataclass(frozen=True)
class _Document:
    """An invoice or credit note before its totals: enough to compute its lines."""

    id: str
    currency: str
    month: date
    dated: datetime
    amends_of: str | None = None

    @property
    def credit_note(self) -> bool:
        return self.amends_of is not None


@dataclass(frozen=True)
class _Listing:
    """Every document listed now, with the exact total of its lines, and the mismatched one's id."""

    documents: tuple[tuple[_Document, Decimal], ...]
    mismatch: str | None
    symbols: Mapping[str, str]


# ----- what the app side and the server call ----------------------------------------------------------------


def invoices(
    world: World, state: InvoiceState | None = None, options: BillingOptions | None = None
) -> list[dict[str, Any]]:
    """Every invoice and credit note listed now, newest first, as ``GET /v1/invoices`` lists them.

    ``state`` is the simulator's (``Simulator.invoice_state``; None: the defaults); ``options`` the rated usage's
    (None: the world's, i.e. the Graph export's)."""
    return _invoices_of(_listing(world, state or InvoiceState(), options))


def find(
    world: World, invoice_id: str, state: InvoiceState | None = None, options: BillingOptions | None = None
) -> dict[str, Any] | None:
    """The listed invoice or credit note with this id (any case), or None."""
    wanted = invoice_id.strip().upper()
    return next((i for i in invoices(world, state, options) if i["id"] == wanted), None)


def true_total(invoice: Mapping[str, Any], lines: Iterable[Mapping[str, Any]]) -> Decimal:
    """What ``totalCharges`` of an invoice is unless it is the planted mismatch: its lines' ``Total`` summed
    exactly, rounded half-up to the cent (whole units for JPY and KRW)."""
    return _rounded(total_of(lines)[1], str(invoice["currencyCode"]))


def configure(
    world: World, state: InvoiceState, payload: Mapping[str, Any], options: BillingOptions | None = None
) -> dict[str, Any]:
    """``POST /_sim/invoices``: ``{"billedRerate": {day: factor} | null}`` sets (or resets to the default) the
    final re-rating; ``{"mismatch": id | null}`` moves or clears the planted mismatch; ``{"amend": id}`` adds a
    credit note dated now refunding one seat of that invoice's first licence line. ValueError for anything else."""
    unknown = set(payload) - set(ADMIN_KEYS)
    if unknown:
        raise ValueError(f"unknown invoice settings {sorted(unknown)}; send {list(ADMIN_KEYS)}")
    if "billedRerate" in payload:
        state.billed_rerate = _factors(payload["billedRerate"])
    if "mismatch" in payload:
        target = payload["mismatch"]
        if target is not None and find(world, str(target), state, options) is None:
            raise ValueError(f"no invoice {target!r} to plant the mismatch on")
        state.mismatch = None if target is None else str(target).strip().upper()
        state.mismatch_moved = True
    if "amend" in payload:
        _amend(world, state, str(payload["amend"]), options)
    return describe(world, state, options)


def describe(world: World, state: InvoiceState, options: BillingOptions | None = None) -> dict[str, Any]:
    """``GET /_sim/invoices``: the invoices (with their true rounded totals), the mismatch, the credit notes and
    the final re-rating."""
    listing = _listing(world, state, options)
    listed = _invoices_of(listing)
    true = {doc.id: _rounded(total, doc.currency) for doc, total in listing.documents}
    rerate = None if state.billed_rerate is None else {day: str(f) for day, f in state.billed_rerate.items()}
    return {
        "invoices": [
            {
                key: i[key]
                for key in ("id", "documentType", "currencyCode", "billingPeriodStartDate", "invoiceDate", "amendsOf")
            }
            | {"totalCharges": i["totalCharges"], "trueTotalCharges": true[i["id"]]}
            for i in listed
        ],
        "mismatch": listing.mismatch,
        "creditNotes": [
            {"id": i["id"], "amendsOf": i["amendsOf"], "invoiceDate": i["invoiceDate"]}
            for i in listed
            if i["documentType"] == "Credit Note"
        ],
        "billedRerate": rerate,  # null: the default, the 15th of every month x 1.0125
    }


# ----- the listing ------------------------------------------------------------------------------------------


def _invoice_id(*parts: object) -> str:
    return f"G{_h64(*parts) % 10**9:09d}"


def _recurring(world: World) -> list[_Document]:
    """The recurring invoices dated by now, charges or not: currency by currency, oldest month first."""
    c, now = world.config, world.now()
    this_month = now.date().replace(day=1)
    found = []
    for currency in sorted({customer.currency for customer in world.customers()}):
        for back in range(c.invoice_months, 0, -1):
            month = _add_months(this_month, -back)
            dated = datetime.combine(_add_months(month, 1).replace(day=c.invoice_day), INVOICE_HOUR)
            if dated <= now:
                found.append(
                    _Document(_invoice_id(c.seed, "invoice", currency, f"{month:%Y-%m}"), currency, month, dated)
                )
    return found


def _credit_notes(world: World, state: InvoiceState, recurring: list[_Document]) -> list[_Document]:
    """The default credit note (on the newest invoice of the first currency) and the admin ones, dated by now."""
    notes = []
    if recurring:
        first = min(doc.currency for doc in recurring)
        newest = max((doc for doc in recurring if doc.currency == first), key=lambda doc: doc.dated)
        if first_licence_line(world, newest.currency, newest.month) is not None:
            note_id = _invoice_id(world.config.seed, "credit-note", newest.id, 1)
            notes.append(_Document(note_id, newest.currency, newest.month, newest.dated + CREDIT_NOTE_AFTER, newest.id))
    by_id = {doc.id: doc for doc in recurring}
    for added in state.credit_notes:
        original = by_id.get(added.amends_of)
        if original is not None:
            notes.append(_Document(added.id, original.currency, original.month, added.invoice_date, original.id))
    return [note for note in notes if note.dated <= world.now()]


def _listing(world: World, state: InvoiceState, options: BillingOptions | None) -> _Listing:
    options = options or world.billing_options or BillingOptions()
    symbols = {c.currency: c.currency_symbol for c in world.customers()}
    recurring: list[tuple[_Document, Decimal]] = []
    for doc in _recurring(world):
        count, total = total_of(billed_lines(world, _skeleton(doc, symbols), options, state.billed_rerate))
        if count:  # a month without a charge in that currency has no invoice
            recurring.append((doc, total))
    documents = list(recurring)
    for note in _credit_notes(world, state, [doc for doc, _ in recurring]):
        refund = billed_lines(world, _skeleton(note, symbols), options, state.billed_rerate)
        documents.append((note, total_of(refund)[1]))
    documents.sort(key=lambda pair: (pair[0].dated, pair[0].id), reverse=True)
    if state.mismatch_moved:
        mismatch = state.mismatch
    elif recurring:
        last = max(doc.currency for doc, _ in recurring)
        mismatch = min((doc for doc, _ in recurring if doc.currency == last), key=lambda doc: doc.dated).id
    else:
        mismatch = None
    return _Listing(tuple(documents), mismatch, symbols)


def _invoices_of(listing: _Listing) -> list[dict[str, Any]]:
    """The listing as Partner Center's Invoice objects, amendments filled in."""
    listed = []
    for doc, total in listing.documents:
        invoice = _skeleton(doc, listing.symbols)
        invoice["totalCharges"] = _rounded(total, doc.currency)
        if doc.id == listing.mismatch:
            invoice["totalCharges"] += _rounded(MISMATCH, doc.currency)
        listed.append(invoice)
    by_id = {invoice["id"]: invoice for invoice in listed}
    for invoice in reversed(listed):  # oldest credit note first
        if invoice["amendsOf"] in by_id:
            short = {k: invoice[k] for k in ("id", "invoiceDate", "totalCharges", "currencyCode", "documentType")}
            by_id[invoice["amendsOf"]]["amendments"].append(short | {"amendsOf": invoice["amendsOf"]})
    return listed


def _skeleton(doc: _Document, symbols: Mapping[str, str]) -> dict[str, Any]:
    """The Invoice object of a document, without its total and amendments (what its lines need)."""
    last = _add_months(doc.month, 1) - timedelta(days=1)
    return {
        "id": doc.id,
        "invoiceDate": doc.dated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "billingPeriodStartDate": f"{doc.month.isoformat()}T00:00:00Z",
        "billingPeriodEndDate": f"{last.isoformat()}T23:59:59Z",
        "totalCharges": Decimal(0),
        "paidAmount": 0,
        "currencyCode": doc.currency,
        "currencySymbol": symbols[doc.currency],
        "documentType": "Credit Note" if doc.credit_note else "Invoice",
        "invoiceType": "OneTime" if doc.credit_note else "Recurring",
        "amendsOf": doc.amends_of,
        "amendments": [],
        "invoiceDetails": [{"invoiceLineItemType": "BillingLineItems", "billingProvider": "All"}],
        "links": {"self": {"uri": f"/invoices/{doc.id}", "method": "GET", "headers": []}},
        "attributes": {"objectType": "Invoice"},
    }


def _rounded(total: Decimal, currency: str) -> Decimal:
    unit = Decimal(1) if currency in ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
    return total.quantize(unit, context=_ROUNDING)


def _amend(world: World, state: InvoiceState, invoice_id: str, options: BillingOptions | None) -> None:
    """Add a credit note dated now amending a listed recurring invoice that has a licence line."""
    original = find(world, invoice_id, state, options)
    if original is None or original["documentType"] != "Invoice":
        raise ValueError(f"no recurring invoice {invoice_id!r} to amend")
    month = date.fromisoformat(original["billingPeriodStartDate"][:10])
    if first_licence_line(world, original["currencyCode"], month) is None:
        raise ValueError(f"invoice {original['id']} has no licence line to refund")
    number = 2 + sum(1 for note in state.credit_notes if note.amends_of == original["id"])  # 1: the default's
    note_id = _invoice_id(world.config.seed, "credit-note", original["id"], number)
    state.credit_notes.append(CreditNote(note_id, original["id"], world.now().replace(microsecond=0)))


def _factors(value: Any) -> dict[str, Decimal] | None:
    """``billedRerate``: {"YYYY-MM-DD": positive factor} or null (the default)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError('billedRerate must be {"YYYY-MM-DD": factor} or null')
    factors = {}
    for day, raw in value.items():
        try:
            factor = Decimal(str(raw))
        except InvalidOperation:
            raise ValueError(f"billedRerate factor {raw!r} is not a number") from None
        if not factor.is_finite() or factor <= 0:
            raise ValueError("billedRerate factors must be positive numbers")
        factors[date.fromisoformat(str(day)).isoformat()] = factor
    return factors
