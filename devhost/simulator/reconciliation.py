"""The simulated world's invoice lines: the billed reconciliation, the billed usage and the unbilled reconciliation.

A recurring invoice (currency C, calendar month M) holds, customer after customer in world order (forbidden
customers too: billing data has them):

1. Azure plan: one line per Azure subscription (entitlement) with billed usage, whose amount is the exact sum of
   that entitlement's billed usage lines (``billed_usage_lines``): the rated lines of the whole month M as a
   finished ``last`` period, re-rated by the final factors (by default the 15th of every month x 1.0125), so
   the billed figures differ from the last estimate on exactly that day;
2. Licence: one ``cycleCharge`` per licence subscription (monthly for an even customer index, annual for an
   odd one, charged in full in the month its term starts) and, on the first customer with a licence, a
   prorated ``new`` line for seats bought on the 16th;
3. Reservation: every customer with an Azure plan whose index % 3 == 0;
4. Marketplace: every customer whose index % 2 == 0 that the partner has a relationship with.

A credit note holds one ``cancelImmediate`` refund of one seat of its original invoice's first licence line.
The unbilled reconciliation of a month is lines 2-4 as they will appear on its invoice, without an invoice
number. Every amount is an exact Decimal; equal world, options and invoice give equal lines.
"""

from __future__ import annotations

import calendar
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, timedelta
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import Any

from devhost.simulator.billing import BillingOptions, period_bounds, reseller_of, subscription_lines
from devhost.simulator.world import Customer, Subscription, World, _add_months, _h64, stable_guid

# Sums and products of exact amounts: an error rather than a rounding.
_EXACT = Context(prec=200, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_PRORATED = Context(prec=20)  # a prorated amount (days / days in the month) to 20 significant digits

MPN_ID = "1234567"  # the partner's MPN id, as on the rated usage lines (devhost.simulator.billing)
PARTNER_DISCOUNT = Decimal("0.95")  # a licence's EffectiveUnitPrice is its list UnitPrice x this
DEFAULT_RERATE_DAY = 15
DEFAULT_RERATE_FACTOR = Decimal("1.0125")
NEW_SEATS_DAY = 16  # the prorated purchase of every invoice starts on this day of its month
CREDIT_REASON = "Customer cancellation"

# Every member of a reconciliation line, in the order the export writes them ("" where not applicable).
MEMBERS = (
    "PartnerId",
    "CustomerId",
    "CustomerName",
    "CustomerDomainName",
    "CustomerCountry",
    "InvoiceNumber",
    "MpnId",
    "Tier2MpnId",
    "OrderId",
    "OrderDate",
    "ProductId",
    "SkuId",
    "AvailabilityId",
    "SkuName",
    "ProductName",
    "ChargeType",
    "UnitPrice",
    "Quantity",
    "Subtotal",
    "TaxTotal",
    "Total",
    "Currency",
    "PriceAdjustmentDescription",
    "PublisherName",
    "PublisherId",
    "SubscriptionDescription",
    "SubscriptionId",
    "ChargeStartDate",
    "ChargeEndDate",
    "TermAndBillingCycle",
    "EffectiveUnitPrice",
    "UnitType",
    "AlternateId",
    "BillableQuantity",
    "BillingFrequency",
    "PricingCurrency",
    "PCToBCExchangeRate",
    "PCToBCExchangeRateDate",
    "MeterDescription",
    "ReservationOrderId",
    "CreditReasonCode",
    "SubscriptionStartDate",
    "SubscriptionEndDate",
    "ReferenceId",
    "ProductQualifiers",
    "PromotionId",
    "ProductCategory",
)

# Monthly list prices (USD) of the world's licence offers; an unknown offer costs the fallback.
_LICENCE_LIST_USD = {
    "Office 365 E3": Decimal("23"),
    "Microsoft 365 Business Premium": Decimal("22"),
    "Exchange Online (Plan 1)": Decimal("4"),
}
_FALLBACK_LIST_USD = Decimal("12.5")
_SAAS_LIST_USD = Decimal("9.95")  # Contoso Backup (SaaS), per user and month
_RESERVATION = "Reserved VM Instance, Standard_D2s_v3, US East, 1 Year"
_SAAS = "Contoso Backup (SaaS)"
_CODE_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"


def billed_rerate(rerate: Mapping[str, Decimal] | None, month: date) -> dict[str, Decimal]:
    """The final re-rating factors of a month's billed data: ``rerate`` (UTC day -> factor) when set, else the
    default, the 15th of the month x 1.0125."""
    if rerate is not None:
        return dict(rerate)
    return {month.replace(day=DEFAULT_RERATE_DAY).isoformat(): DEFAULT_RERATE_FACTOR}


def billed_options(options: BillingOptions, month: date, rerate: Mapping[str, Decimal] | None = None) -> BillingOptions:
    """The unbilled export's options with the final re-rating of ``month`` merged in (it wins on a shared day)."""
    return dataclasses.replace(options, rerated={**options.rerated, **billed_rerate(rerate, month)})


def billed_usage_lines(
    world: World, invoice: Mapping[str, Any], options: BillingOptions, rerate: Mapping[str, Decimal] | None = None
) -> Iterator[dict[str, Any]]:
    """The billed usage export of an invoice (one of ``invoices.invoices``): for a recurring invoice every rated
    line of its month and currency, finished and finally re-rated (``rerate``: the invoice state's
    ``billed_rerate``, None for the default), with its ``InvoiceNumber``; for a credit note nothing.

    ``options`` are the unbilled export's (``Simulator.graph.options``)."""
    if _is_credit_note(invoice):
        return
    currency, month = _period_of(invoice)
    final = billed_options(options, month, rerate)
    following = _add_months(month, 1)
    for customer in _customers_of(world, currency):
        for sub in _of_kind(world, customer, "azure_plan"):
            for line in subscription_lines(world, customer, sub.id, "last", final, today=following):
                line["InvoiceNumber"] = invoice["id"]
                yield line


def billed_lines(
    world: World, invoice: Mapping[str, Any], options: BillingOptions, rerate: Mapping[str, Decimal] | None = None
) -> Iterator[dict[str, Any]]:
    """The billed reconciliation export of an invoice (one of ``invoices.invoices``): a recurring invoice's
    lines 1-4 (module docstring), or a credit note's refund line. Arguments as ``billed_usage_lines``."""
    currency, month = _period_of(invoice)
    if _is_credit_note(invoice):
        refunded = first_licence_line(world, currency, month)
        if refunded is not None:
            yield refund_line(refunded, str(invoice["id"]))
        return
    final = billed_options(options, month, rerate)
    yield from _month_lines(world, currency, month, str(invoice["id"]), final)


def unbilled_lines(
    world: World, currency: str, billing_period: str, options: BillingOptions
) -> Iterator[dict[str, Any]]:
    """The unbilled reconciliation export of (currency, ``current`` | ``last``): the licence, reservation and
    marketplace lines of that calendar month as its invoice will hold them, with no invoice number (Azure plan
    usage is in the usage exports). ``options`` is accepted for symmetry: these lines do not depend on it."""
    del options
    first, _ = period_bounds(world.now().date(), billing_period)
    yield from _month_lines(world, currency.upper(), first, "", None)


def first_licence_line(world: World, currency: str, month: date) -> dict[str, Any] | None:
    """The first licence line of the recurring invoice of (currency, month), the one a credit note refunds;
    None when that invoice has no licence line."""
    for line in _month_lines(world, currency, month, "", None):
        if line["ProductCategory"] == "License":
            return line
    return None


def refund_line(refunded: Mapping[str, Any], credit_note_id: str) -> dict[str, Any]:
    """A credit note's refund of one seat of a licence line: ``cancelImmediate``, quantity -1, negative totals."""
    amount = _EXACT.minus(refunded["EffectiveUnitPrice"])
    return {
        **refunded,
        "InvoiceNumber": credit_note_id,
        "ChargeType": "cancelImmediate",
        "Quantity": Decimal(-1),
        "BillableQuantity": Decimal(-1),
        "Subtotal": amount,
        "TaxTotal": Decimal(0),
        "Total": amount,
        "CreditReasonCode": CREDIT_REASON,
        "ReferenceId": stable_guid("refund", credit_note_id, refunded["ReferenceId"]),
    }


def total_of(lines: Iterable[Mapping[str, Any]]) -> tuple[int, Decimal]:
    """(how many lines, the exact sum of their ``Total``)."""
    count, total = 0, Decimal(0)
    for line in lines:
        count += 1
        total = _EXACT.add(total, line["Total"])
    return count, total


# ----- one month of one currency ---------------------------------------------------------------------------


def _month_lines(
    world: World, currency: str, month: date, number: str, usage: BillingOptions | None
) -> Iterator[dict[str, Any]]:
    """Lines 1-4 of (currency, month), customer after customer; without Azure plan lines when ``usage`` (the
    final options of the billed usage) is None."""
    prorated = False
    for customer in _customers_of(world, currency):
        if usage is not None:
            for sub in _of_kind(world, customer, "azure_plan"):
                yield from _plan_lines(world, customer, sub, month, number, usage)
        licences = _of_kind(world, customer, "licence")
        for sub in licences:
            line = _licence_line(world, customer, sub, month, number)
            if line is not None:
                yield line
        if licences and not prorated:
            prorated = True
            yield _new_seats_line(world, customer, licences[0], month, number)
        plans = _of_kind(world, customer, "azure_plan")
        if plans and customer.index % 3 == 0:
            yield _reservation_line(world, customer, plans[0], month, number)
        if customer.index % 2 == 0 and not customer.forbidden:
            yield _marketplace_line(world, customer, month, number)


def _plan_lines(
    world: World, customer: Customer, sub: Subscription, month: date, number: str, usage: BillingOptions
) -> Iterator[dict[str, Any]]:
    """One line per Azure subscription of an Azure plan with billed usage in the month: its exact sum."""
    sums: dict[str, Decimal] = {}
    for usage_line in subscription_lines(world, customer, sub.id, "last", usage, today=_add_months(month, 1)):
        entitlement = usage_line["EntitlementId"]
        sums[entitlement] = _EXACT.add(sums.get(entitlement, Decimal(0)), usage_line["BillingPreTaxTotal"])
    raw = sub.raw
    for entitlement, amount in sums.items():
        yield _line(
            world,
            customer,
            month,
            number,
            kind="usage",
            key=entitlement,
            OrderId=raw["orderId"],
            OrderDate=raw["creationDate"],
            ProductId="DZH318Z0BPS6",
            SkuId="0001",
            AvailabilityId="DZH318Z0BQPV",
            SkuName="Azure plan",
            ProductName="Azure plan",
            ChargeType="usage",
            UnitPrice=amount,
            Quantity=Decimal(1),
            Subtotal=amount,
            Total=amount,
            PublisherName="Microsoft",
            SubscriptionDescription="Azure plan",
            SubscriptionId=sub.id,
            ChargeStartDate=_stamp(month),
            ChargeEndDate=_stamp(_last_day(month)),
            EffectiveUnitPrice=amount,
            AlternateId=entitlement,
            BillableQuantity=Decimal(1),
            SubscriptionStartDate=raw["effectiveStartDate"],
            SubscriptionEndDate=raw["commitmentEndDate"],
            ProductCategory="Azure",
        )


def _licence_line(
    world: World, customer: Customer, sub: Subscription, month: date, number: str
) -> dict[str, Any] | None:
    """A licence subscription's cycle charge of the month: monthly (even customer index), or annual (odd) in
    full in the month its term starts, month number = customer index % 12 + 1; else None."""
    annual = customer.index % 2 == 1
    if annual and month.month != customer.index % 12 + 1:
        return None
    unit = _EXACT.multiply(_licence_list_price(customer, sub), Decimal(12 if annual else 1))
    quantity = Decimal(sub.raw["quantity"])
    end = _add_months(month, 12) - timedelta(days=1) if annual else _last_day(month)
    return _licence(world, customer, sub, month, number, "cycleCharge", unit, quantity, month, end, annual)


def _new_seats_line(world: World, customer: Customer, sub: Subscription, month: date, number: str) -> dict[str, Any]:
    """One more seat of a licence bought on the 16th: a ``new`` monthly charge prorated by the days left."""
    start, end = month.replace(day=NEW_SEATS_DAY), _last_day(month)
    line = _licence(
        world, customer, sub, month, number, "new", _licence_list_price(customer, sub), Decimal(1), start, end, False
    )
    days = Decimal((end - start).days + 1)
    prorated = _PRORATED.divide(_EXACT.multiply(line["Subtotal"], days), Decimal(end.day))
    line["Subtotal"] = line["Total"] = prorated
    return line


def _licence(
    world: World,
    customer: Customer,
    sub: Subscription,
    month: date,
    number: str,
    charge: str,
    unit: Decimal,
    quantity: Decimal,
    start: date,
    end: date,
    annual: bool,
) -> dict[str, Any]:
    raw = sub.raw
    name = str(raw["offerName"])
    effective = _EXACT.multiply(unit, PARTNER_DISCOUNT)
    subtotal = _EXACT.multiply(effective, quantity)
    return _line(
        world,
        customer,
        month,
        number,
        kind=charge,
        key=sub.id,
        OrderId=raw["orderId"],
        OrderDate=raw["creationDate"],
        ProductId="CFQ7TTC0" + _code(4, "licence", name),
        SkuId="0001",
        AvailabilityId=_code(12, "licence-availability", name),
        SkuName=name,
        ProductName=name,
        ChargeType=charge,
        UnitPrice=unit,
        Quantity=quantity,
        Subtotal=subtotal,
        Total=subtotal,
        PriceAdjustmentDescription='["5% partner discount"]',
        PublisherName="Microsoft Corporation",
        SubscriptionDescription=name,
        SubscriptionId=sub.id,
        Tier2MpnId=raw.get("partnerId") or "",  # the reseller of record of this subscription (some bought direct)
        ChargeStartDate=_stamp(start),
        ChargeEndDate=_stamp(end),
        TermAndBillingCycle="1 Year Subscription" if annual else "1 Month Subscription",
        EffectiveUnitPrice=effective,
        UnitType=raw["unitType"],
        BillableQuantity=quantity,
        BillingFrequency="Annual" if annual else "Monthly",
        SubscriptionStartDate=raw["effectiveStartDate"],
        SubscriptionEndDate=raw["commitmentEndDate"],
        ProductCategory="License",
    )


def _reservation_line(world: World, customer: Customer, plan: Subscription, month: date, number: str) -> dict[str, Any]:
    """A one-year VM reservation billed monthly under the Azure plan: a stable amount (60-80 USD a month)."""
    seed = world.config.seed
    r = _h64(seed, "reservation", customer.id)
    amount = _EXACT.multiply(Decimal(6000 + r % 2000).scaleb(-2), customer.pc_to_bc)
    term = _add_months(month, -((month.month - 1 - r % 12) % 12))  # renewed every year in the same month
    return _line(
        world,
        customer,
        month,
        number,
        kind="reservation",
        key=plan.id,
        OrderId=stable_guid(seed, "reservation-order", customer.id),
        OrderDate=_stamp(term),
        ProductId="DZH318Z0BQ3Q",
        SkuId="0059",
        AvailabilityId=_code(12, "reservation-availability"),
        SkuName="Standard_D2s_v3 US East 1 Year",
        ProductName=_RESERVATION,
        ChargeType="cycleCharge",
        UnitPrice=amount,
        Quantity=Decimal(1),
        Subtotal=amount,
        Total=amount,
        PublisherName="Microsoft",
        SubscriptionDescription=_RESERVATION,
        SubscriptionId=plan.id,
        ChargeStartDate=_stamp(month),
        ChargeEndDate=_stamp(_last_day(month)),
        TermAndBillingCycle="1 Year Subscription",
        EffectiveUnitPrice=amount,
        BillableQuantity=Decimal(1),
        BillingFrequency="Monthly",
        MeterDescription="Reservation-Base VM",
        ReservationOrderId=stable_guid(seed, "reservation-order", customer.id),
        SubscriptionStartDate=_stamp(term),
        SubscriptionEndDate=_stamp(_add_months(term, 12) - timedelta(days=1)),
        ProductCategory="Azure",
    )


def _marketplace_line(world: World, customer: Customer, month: date, number: str) -> dict[str, Any]:
    """A third-party SaaS subscription (not among the customer's Partner Center subscriptions): two users."""
    seed = world.config.seed
    saas = stable_guid(seed, "saas-subscription", customer.id)
    unit = _EXACT.multiply(_SAAS_LIST_USD, customer.pc_to_bc)
    quantity = Decimal(2)
    subtotal = _EXACT.multiply(unit, quantity)
    return _line(
        world,
        customer,
        month,
        number,
        kind="marketplace",
        key=saas,
        OrderId=stable_guid(seed, "saas-order", customer.id),
        OrderDate=_stamp(month),
        ProductId="DZH318Z0" + _code(4, "saas"),
        SkuId="0001",
        AvailabilityId=_code(12, "saas-availability"),
        SkuName="Per user",
        ProductName=_SAAS,
        ChargeType="cycleCharge",
        UnitPrice=unit,
        Quantity=quantity,
        Subtotal=subtotal,
        Total=subtotal,
        PublisherName="Contoso SaaS Ltd",
        PublisherId="contoso",
        SubscriptionDescription=_SAAS,
        SubscriptionId=saas,
        ChargeStartDate=_stamp(month),
        ChargeEndDate=_stamp(_last_day(month)),
        TermAndBillingCycle="1 Month Subscription",
        EffectiveUnitPrice=unit,
        UnitType="Users",
        BillableQuantity=quantity,
        BillingFrequency="Monthly",
        SubscriptionStartDate=_stamp(month),
        SubscriptionEndDate=_stamp(_last_day(month)),
        ProductCategory="SaaS",
    )


# ----- helpers ---------------------------------------------------------------------------------------------


def _line(
    world: World, customer: Customer, month: date, number: str, *, kind: str, key: str, **values: Any
) -> dict[str, Any]:
    """A line with every member: the customer's, the month's, then ``values``; "" for the rest. Its ReferenceId
    names (customer, month, kind, key), not the invoice, so an unbilled line and its billed self share it."""
    unknown = set(values) - set(MEMBERS)
    if unknown:
        raise ValueError(f"not reconciliation members: {sorted(unknown)}")
    line: dict[str, Any] = dict.fromkeys(MEMBERS, "")
    line |= {
        "PartnerId": world.tenant_id,
        "CustomerId": customer.id,
        "CustomerName": customer.name,
        "CustomerDomainName": customer.domain,
        "CustomerCountry": customer.locale[-2:],
        "InvoiceNumber": number,
        "MpnId": MPN_ID,
        "Tier2MpnId": reseller_of(world, customer),
        "TaxTotal": Decimal(0),
        "Currency": customer.currency,
        "PricingCurrency": "USD",
        "PCToBCExchangeRate": customer.pc_to_bc,
        "PCToBCExchangeRateDate": _stamp(month),
        "ReferenceId": stable_guid(world.config.seed, "reconciliation", customer.id, month.isoformat(), kind, key),
        "ProductQualifiers": [],
    }
    line |= values
    return line


def _licence_list_price(customer: Customer, sub: Subscription) -> Decimal:
    """A licence's monthly list price in the customer's currency: USD list x PCToBC rate, every digit."""
    usd = _LICENCE_LIST_USD.get(str(sub.raw["offerName"]), _FALLBACK_LIST_USD)
    return _EXACT.multiply(usd, customer.pc_to_bc)


def _customers_of(world: World, currency: str) -> Iterator[Customer]:
    return (c for c in world.customers() if c.currency == currency)


def _of_kind(world: World, customer: Customer, kind: str) -> list[Subscription]:
    return [s for s in world.subscriptions(customer.id) if s.kind == kind]


def _period_of(invoice: Mapping[str, Any]) -> tuple[str, date]:
    """(currency, first day of the billing period) of an invoice's JSON."""
    return str(invoice["currencyCode"]), date.fromisoformat(str(invoice["billingPeriodStartDate"])[:10])


def _is_credit_note(invoice: Mapping[str, Any]) -> bool:
    return invoice.get("documentType") == "Credit Note"


def _last_day(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


def _stamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _code(length: int, *parts: object) -> str:
    """A catalogue code (upper-case letters and digits) derived from ``parts``; the same in every world."""
    h, code = _h64("catalogue", *parts), ""
    for _ in range(length):  # 30 ** 12 < 2 ** 64: twelve characters still come from the hash
        h, digit = divmod(h, len(_CODE_ALPHABET))
        code += _CODE_ALPHABET[digit]
    return code
