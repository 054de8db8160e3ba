"""One line of a reconciliation export (every charge of an invoice, or the open period's non-usage charges).

A line is kept as received (its text is stored and served); what the service needs of it is read here: the
customer, the reseller of record, the charge's kind, its subject (the subscription or reservation it bills), its
charge period and billing cycle, and its amounts (``Subtotal`` before tax, ``Total`` with it, the list amount
``UnitPrice`` x ``Quantity``), exact. Keys are matched in any case, like the usage export's. The charge kinds are
this service's own words, worked out from the fields Microsoft sends (``ChargeType``, ``ProductCategory``,
``PublisherName``, ``ReservationOrderId``...); a value it does not know is never refused, it falls to ``licence``
or ``other`` and the line keeps its own words.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal, localcontext

from shared.pricing.amounts import EXACT, ZERO
from shared.rated.lines import (
    _currency,
    _day,
    _Fields,
    _id,
    _money,
    _optional_money,
    _text,
    decode_line,
)
from shared.records import BadRecord

AZURE_PLAN_PRODUCT = "DZH318Z0BPS6"  # the Azure plan's product id: its lines are Azure consumption
AZURE_USAGE = "azureUsage"
LICENCE = "licence"
RESERVATION = "reservation"
SAVINGS_PLAN = "savingsPlan"
MARKETPLACE = "marketplace"
SOFTWARE = "software"
OTHER = "other"
# What a spend answer lists as its own kinds (Azure usage comes from the billed usage export, by day).
CHARGE_KINDS = (LICENCE, RESERVATION, SAVINGS_PLAN, MARKETPLACE, SOFTWARE, OTHER)


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """What the service needs of one reconciliation line; ``text`` is the line as received."""

    customer_id: str
    customer_name: str | None
    reseller: str | None  # Tier2MpnId (the reseller of record, indirect model); None: sold direct
    currency: str
    kind: str  # azureUsage, licence, reservation, savingsPlan, marketplace, software, other
    subject_id: str  # the subscription (or the reservation order) the charge bills
    subscription_id: str | None  # the Partner Center subscription id as sent
    name: str | None  # product (and SKU) as sent
    charge_type: str | None
    charge_start: str | None  # YYYY-MM-DD
    charge_end: str | None
    billing_cycle: str | None  # BillingFrequency (or the cycle TermAndBillingCycle names), as sent
    term: str | None  # TermAndBillingCycle as sent
    subtotal: Decimal  # before tax: the cost the spend shows
    total: Decimal  # with tax: what the invoice adds up
    list_total: Decimal | None  # UnitPrice x Quantity; None when either is missing
    category: str  # ProductCategory as sent ("" when none): what a price rule's adjustment may name
    text: str
    digest: bytes

    def period(self, fallback: str) -> str:
        """The month (``YYYY-MM``) the charge belongs to: its charge period's start, else ``fallback``."""
        return self.charge_start[:7] if self.charge_start else fallback

    @property
    def prorated(self) -> bool:
        """A monthly charge for part of a month (a purchase or change within it)."""
        if not self.charge_start or not self.charge_end or (self.billing_cycle or "").lower() != "monthly":
            return False
        return self.charge_start[8:] != "01" or self.charge_end[:7] != self.charge_start[:7]


def _kind(
    *, reservation: str, product: str, charge_type: str, product_id: str, category: str, publisher: str, term: str
) -> str:
    if reservation.strip():
        return RESERVATION
    if "savings plan" in product.lower():
        return SAVINGS_PLAN
    if charge_type.strip().lower() == "usage" or product_id.strip().upper().startswith(AZURE_PLAN_PRODUCT):
        return AZURE_USAGE
    category, publisher = category.strip().lower(), publisher.strip().lower()
    if category in ("saas", "marketplace") or (publisher and not publisher.startswith("microsoft")):
        return MARKETPLACE
    if category == "software":
        return SOFTWARE
    if category in ("license", "licence", "") or "subscription" in term.lower():
        return LICENCE
    return OTHER


def _date(fields: _Fields, name: str) -> str | None:
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _day(value)
    except BadRecord:
        raise BadRecord(f"{name} is not a date: {value[:60]!r}") from None


def _cycle(frequency: str, term: str) -> str | None:
    frequency = frequency.strip()
    if frequency:
        return frequency
    term = term.lower()
    if "month" in term:
        return "Monthly"
    if "year" in term:
        return "Annual"
    return None


def parse_charge(text: str) -> ChargeLine:
    """A reconciliation line as received, checked; BadRecord says why it cannot be placed."""
    record, encoded = decode_line(text)
    fields = _Fields(record)
    currency = fields.get("Currency") or fields.get("BillingCurrency")
    if not isinstance(currency, str):
        raise BadRecord(f"Currency is not a currency code: {str(currency)[:20]!r}")
    subtotal = _money(fields, "Subtotal", required=False)
    total = _money(fields, "Total", required=False)
    tax = _optional_money(fields, "TaxTotal") or ZERO
    with localcontext(EXACT):
        if subtotal is None and total is None:
            raise BadRecord("missing Subtotal and Total")
        if subtotal is None:
            subtotal = (total or ZERO) - tax
        if total is None:
            total = subtotal + tax
        unit, quantity = _optional_money(fields, "UnitPrice"), _optional_money(fields, "Quantity")
        list_total = None if unit is None or quantity is None else unit * quantity
    reservation = (_text(fields, "ReservationOrderId") or "").strip().lower()
    product, sku, term = (
        _text(fields, "ProductName"),
        _text(fields, "SkuName"),
        _text(fields, "TermAndBillingCycle") or "",
    )
    category = (_text(fields, "ProductCategory") or "").strip()
    charge_type = _text(fields, "ChargeType")
    kind = _kind(
        reservation=reservation,
        product=product or "",
        charge_type=charge_type or "",
        product_id=_text(fields, "ProductId") or "",
        category=category,
        publisher=_text(fields, "PublisherName") or "",
        term=term,
    )
    subscription = _text(fields, "SubscriptionId")
    subject = reservation if kind == RESERVATION and reservation else (subscription or "").strip().lower()
    if not subject:
        subject = "-"  # a charge without a subscription (a one-time purchase): the customer's, unnamed
    reseller = (_text(fields, "Tier2MpnId") or "").strip().lower() or None
    return ChargeLine(
        customer_id=_id(fields, "CustomerId"),
        customer_name=_text(fields, "CustomerName"),
        reseller=reseller,
        currency=_currency(currency),
        kind=kind,
        subject_id=subject,
        subscription_id=(subscription or "").strip().lower() or None,
        name=product if not sku or sku == product else f"{product} ({sku})" if product else sku,
        charge_type=charge_type,
        charge_start=_date(fields, "ChargeStartDate"),
        charge_end=_date(fields, "ChargeEndDate"),
        billing_cycle=_cycle(_text(fields, "BillingFrequency") or "", term),
        term=term or None,
        subtotal=subtotal,
        total=total,
        list_total=list_total,
        category=category,
        text=text,
        digest=hashlib.sha256(encoded).digest(),
    )
