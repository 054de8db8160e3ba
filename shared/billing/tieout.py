"""Tie-out: do an invoice's stored lines add up to the invoice?

- **Invoice**: the sum of its reconciliation lines' ``Total`` (tax included), rounded to the currency's minor unit
  half away from zero (as an invoice shows money), equals its ``totalCharges`` within BILLING_TIEOUT_TOLERANCE
  (default 0).
- **Customer**: its billed usage lines (``BillingPreTaxTotal`` of the billed usage export) equal the usage part
  of its reconciliation lines (``Subtotal`` of the Azure plan usage charges), both rounded the same way, within
  the same tolerance.

The result is stored with the invoice (and per customer), served by ``/v1/invoices``, shown in ``/api/health``;
a mismatch fails the run that stored it, which the operator alert reports.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared import jsonutil
from shared.billing.rows import CustomerTally, Invoice, Tally, invoice_key
from shared.pricing.amounts import EXACT, money_text
from shared.tables import customer_key

# ISO 4217 currencies without minor units (every other one rounds to cents); a currency not listed rounds to 2.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
MISMATCHES_KEPT = 50  # customers a stored tie-out names (it counts them all)


def minor_unit(currency: str) -> Decimal:
    """The smallest amount an invoice in ``currency`` shows."""
    return Decimal(1) if currency.upper() in ZERO_DECIMAL else Decimal("0.01")


def rounded(value: Decimal, currency: str) -> Decimal:
    """``value`` as an invoice shows it: to the currency's minor unit, half away from zero."""
    return value.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CustomerCheck:
    customer_id: str
    usage_billed: Decimal
    usage_reconciled: Decimal
    passed: bool

    @property
    def difference(self) -> Decimal:
        with decimal.localcontext(EXACT):
            return self.usage_billed - self.usage_reconciled


@dataclass(frozen=True)
class TieOut:
    """One invoice's tie-out."""

    currency: str
    lines_total: Decimal  # exact
    lines_rounded: Decimal
    invoice_total: Decimal
    tolerance: Decimal
    customers: Mapping[str, CustomerCheck]

    @property
    def difference(self) -> Decimal:
        with decimal.localcontext(EXACT):
            return self.lines_rounded - self.invoice_total

    @property
    def invoice_passed(self) -> bool:
        return abs(self.difference) <= self.tolerance

    @property
    def failed_customers(self) -> list[CustomerCheck]:
        return [c for c in self.customers.values() if not c.passed]

    @property
    def passed(self) -> bool:
        return self.invoice_passed and not self.failed_customers

    @property
    def summary(self) -> str:
        parts = []
        if not self.invoice_passed:
            parts.append(
                f"its lines add up to {money_text(self.lines_rounded)} {self.currency}, the invoice says "
                f"{money_text(self.invoice_total)} (difference {money_text(self.difference)}, tolerance "
                f"{money_text(self.tolerance)})"
            )
        failed = self.failed_customers
        if failed:
            named = ", ".join(f"{c.customer_id} ({money_text(c.difference)})" for c in failed[:5])
            parts.append(f"{len(failed)} customers' billed usage differs from their usage charges: {named}")
        return "; ".join(parts) or "passed"

    def as_json(self) -> dict[str, Any]:
        failed = self.failed_customers
        return {
            "passed": self.passed,
            "currencyCode": self.currency,
            "linesTotal": money_text(self.lines_total),
            "linesRounded": money_text(self.lines_rounded),
            "invoiceTotal": money_text(self.invoice_total),
            "difference": money_text(self.difference),
            "tolerance": money_text(self.tolerance),
            "invoicePassed": self.invoice_passed,
            "customersChecked": len(self.customers),
            "customersFailed": len(failed),
            "failedCustomers": [
                {
                    "customerId": c.customer_id,
                    "usageBilled": money_text(c.usage_billed),
                    "usageReconciled": money_text(c.usage_reconciled),
                    "difference": money_text(c.difference),
                }
                for c in failed[:MISMATCHES_KEPT]
            ],
            "summary": self.summary,
        }


def check(invoice: Invoice, tally: Tally, tolerance: Decimal) -> TieOut:
    """The tie-out of an invoice's stored lines."""
    currency = invoice.currency
    customers = {}
    for customer_id, found in tally.customers.items():
        billed, reconciled = rounded(found.usage_billed, currency), rounded(found.usage_reconciled, currency)
        with decimal.localcontext(EXACT):
            passed = abs(billed - reconciled) <= tolerance
        customers[customer_id] = CustomerCheck(customer_id, found.usage_billed, found.usage_reconciled, passed)
    lines_rounded = rounded(tally.total, currency)
    return TieOut(
        currency=currency,
        lines_total=tally.total,
        lines_rounded=lines_rounded,
        # the open period's charges have no invoice to add up to yet
        invoice_total=lines_rounded if invoice.is_unbilled else Decimal(invoice.total_charges),
        tolerance=tolerance,
        customers=customers,
    )


def customer_row(invoice: Invoice, customer: CustomerTally, result: TieOut, version: str) -> dict[str, Any]:
    """The InvoiceCustomers row of one customer of an invoice."""
    checked = result.customers.get(customer.customer_id)
    return {
        "PartitionKey": invoice_key(invoice.id),
        "RowKey": customer_key(customer.customer_id),
        "invoiceId": invoice.id,
        "customerId": customer.customer_id,
        "customerName": customer.name,
        "resellers": jsonutil.dumps(sorted(customer.resellers)),
        "currencyCode": invoice.currency,
        "total": money_text(customer.total),
        "subtotal": money_text(customer.subtotal),
        "byKind": jsonutil.dumps({k: money_text(v) for k, v in sorted(customer.by_kind.items())}),
        "usageBilled": money_text(customer.usage_billed),
        "usageReconciled": money_text(customer.usage_reconciled),
        "tieOutPassed": checked.passed if checked else True,
        "lines": customer.lines,
        "usageLines": customer.usage_lines,
        "version": version,
    }


def customer_rows(invoice: Invoice, tally: Tally, result: TieOut, version: str) -> list[dict[str, Any]]:
    """Every customer's row of an invoice."""
    return [customer_row(invoice, c, result, version) for c in tally.customers.values()]
