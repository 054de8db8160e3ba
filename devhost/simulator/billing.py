"""The simulated world's Azure plan daily rated usage: the line items the Graph billing export holds.

Every customer with an Azure plan has Azure subscriptions (entitlements) under it, each with daily lines for
a few meters and resources, in the customer's billing currency, priced to 20 digits. Usage of a day appears
the day after (the export shows the period to date up to yesterday). Deterministic: equal world and options,
equal lines. Some lines are exact duplicates (the export has no line id, and this happens in real data);
some customers have an indirect reseller (``Tier2MpnId``); a day can be re-rated (its prices change).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Context, Decimal
from functools import lru_cache
from typing import Any

from devhost.simulator.world import _METERS, Customer, World, _h64, stable_guid, weekday_shape

_EXACT = Context(prec=80)
_DEFAULT = Context(prec=28)  # Python's default context, named: the values never depend on the caller's context
_Q16 = Decimal("1E-16")
_Q10 = Decimal("1E-10")
_Q2 = Decimal("0.01")


@dataclass
class BillingOptions:
    """Knobs of the rated-usage data (the admin API sets them)."""

    entitlements_per_plan: int = 2
    meters: int = 3
    resources: int = 2
    rerated: dict[str, Decimal] = field(default_factory=dict)  # day -> price factor
    duplicate_every: int = 7  # every n-th day's first line appears twice (0: never)


def period_bounds(today: date, billing_period: str) -> tuple[date, date]:
    """First and last day of the ``current`` or ``last`` calendar month."""
    first = today.replace(day=1)
    if billing_period == "last":
        first = (first - timedelta(days=1)).replace(day=1)
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following - timedelta(days=1)


def entitlement_ids(world: World, subscription_id: str, count: int) -> list[str]:
    """The Azure subscriptions under one Azure plan subscription."""
    return [stable_guid(world.config.seed, "azure-subscription", subscription_id, k) for k in range(count)]


def reseller_of(world: World, customer: Customer) -> str:
    """The indirect reseller's MPN id for every third customer, else empty (bought direct)."""
    return _reseller(world.config.seed, customer.index // 3) if customer.index % 3 == 1 else ""


@lru_cache(maxsize=4096)
def _reseller(seed: int, group: int) -> str:
    return str(1_000_000 + _h64(seed, "reseller", group) % 8_999_999)


def _price(r: int) -> Decimal:
    """A USD unit price with 16 decimals (x a 4-decimal exchange rate: 20 in the billing currency)."""
    base = _DEFAULT.divide(Decimal(1 + r % 9_999), Decimal(10_000))
    return _DEFAULT.add(base, Decimal(r % 99_999_999_999_991).scaleb(-20)).quantize(_Q16, context=_DEFAULT)


def lines(world: World, billing_period: str, currency: str, options: BillingOptions) -> Iterator[dict[str, Any]]:
    """Every line item of the export of (``current`` | ``last``, currency), as the export writes them."""
    today = world.now().date()
    for customer in world.customers():
        if customer.currency != currency or customer.zero_usage:
            continue
        for sub in world.subscriptions(customer.id):
            if sub.kind == "azure_plan":
                yield from subscription_lines(world, customer, sub.id, billing_period, options, today=today)


def subscription_lines(
    world: World,
    customer: Customer,
    plan_id: str,
    billing_period: str,
    options: BillingOptions,
    *,
    today: date | None = None,
) -> Iterator[dict[str, Any]]:
    """The lines of one Azure plan subscription in the export of ``billing_period`` (its usage summary's sum)."""
    for k, entitlement, day, period in _entitlement_days(world, customer, plan_id, billing_period, options, today):
        yield from _day_lines(world, customer, plan_id, entitlement, k, day, period, options)


def subscription_day_totals(
    world: World,
    customer: Customer,
    plan_id: str,
    billing_period: str,
    options: BillingOptions,
    *,
    today: date | None = None,
) -> Iterator[tuple[date, Decimal]]:
    """(UsageDate, BillingPreTaxTotal) of every line ``subscription_lines`` yields, without building the lines."""
    for _k, entitlement, day, _ in _entitlement_days(world, customer, plan_id, billing_period, options, today):
        for _slot, _resource, r, duplicated in _line_keys(world, entitlement, day, options):
            _, _, _, total = _priced(customer, day, r, options)
            yield day, total
            if duplicated:
                yield day, total


def _entitlement_days(
    world: World, customer: Customer, plan_id: str, billing_period: str, options: BillingOptions, today: date | None
) -> Iterator[tuple[int, str, date, tuple[date, date]]]:
    """(k, Azure subscription, usage day, period) of every day of lines, in export order."""
    if customer.zero_usage:
        return
    today = today or world.now().date()
    first, last = period_bounds(today, billing_period)
    through = min(last, today - timedelta(days=1))
    count = 1 + (customer.index % max(1, options.entitlements_per_plan))
    for k, entitlement in enumerate(entitlement_ids(world, plan_id, count)):
        day = first
        while day <= through:
            yield k, entitlement, day, (first, last)
            day += timedelta(days=1)


def _line_keys(
    world: World, entitlement: str, day: date, options: BillingOptions
) -> Iterator[tuple[int, int, int, bool]]:
    """(meter slot j, resource, hash, whether the line appears twice) of every line of one Azure subscription's day."""
    for j in range(options.meters):
        for resource in range(options.resources):
            r = _h64(world.config.seed, "rated", entitlement, day.toordinal(), j, resource)
            every = options.duplicate_every
            yield j, resource, r, bool(every and j == 0 and resource == 0 and day.toordinal() % every == 0)


# Partner earned credit on every other customer (odd index): its lines' retail UnitPrice is 1.25 x what the partner pays
# (EffectiveUnitPrice, which the billed totals use), i.e. a 20 % credit, so list and cost differ there digit for digit.
_PEC_PERCENT = 20
_LIST_OVER_EFFECTIVE = Decimal("1.25")


def _earns_credit(customer: Customer) -> bool:
    return customer.index % 2 == 1


def _priced(
    customer: Customer, day: date, r: int, options: BillingOptions
) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(USD unit price, unit price, quantity, BillingPreTaxTotal) of a line. Priced in USD, billed in the
    customer's currency at PCToBCExchangeRate (USD -> billing), every product exact: so PricingPreTaxTotal
    (USD price x quantity) x PCToBCExchangeRate == BillingPreTaxTotal digit for digit."""
    factor = options.rerated.get(day.isoformat(), Decimal(1))
    usd_price = _EXACT.multiply(_price(r), factor)
    price = _EXACT.multiply(usd_price, customer.pc_to_bc)
    shaped = _EXACT.multiply(Decimal(1 + r % 2400), weekday_shape(day)).scaleb(-2, _EXACT)
    quantity = shaped.quantize(_Q2, context=_DEFAULT).quantize(_Q10, context=_EXACT)  # 0.01 steps, 10 decimals
    return usd_price, price, quantity, _EXACT.multiply(price, quantity)


def _day_lines(
    world: World,
    customer: Customer,
    plan_id: str,
    entitlement: str,
    k: int,
    day: date,
    period: tuple[date, date],
    options: BillingOptions,
) -> Iterator[dict[str, Any]]:
    reseller = reseller_of(world, customer)
    for j, resource, r, duplicated in _line_keys(world, entitlement, day, options):
        meter = _METERS[(customer.index + k + j) % len(_METERS)]
        usd_price, price, quantity, total = _priced(customer, day, r, options)
        name = f"{meter.prefix}-{customer.index:03d}-{k}-{resource}"
        group = f"rg-{customer.index:03d}-{k}"
        provider = meter.provider.split("/servers/")[0]
        uri = f"/subscriptions/{entitlement}/resourceGroups/{group}/providers/{provider}/{name}"
        line = {
            "PartnerId": world.tenant_id,
            "PartnerName": "Simulated Partner Ltd",
            "CustomerId": customer.id,
            "CustomerName": customer.name,
            "CustomerDomainName": customer.domain,
            "CustomerCountry": customer.locale[-2:],
            "MpnId": "1234567",
            "Tier2MpnId": reseller,
            "InvoiceNumber": "",
            "ProductId": "DZH318Z0BPS6",
            "SkuId": "0001",
            "AvailabilityId": "DZH318Z0BQPV",
            "SkuName": "Azure plan",
            "ProductName": "Azure plan",
            "PublisherName": "Microsoft",
            "PublisherId": "",
            "SubscriptionId": plan_id,
            "SubscriptionDescription": "Azure plan",
            "ChargeStartDate": f"{period[0].isoformat()}T00:00:00Z",
            "ChargeEndDate": f"{period[1].isoformat()}T00:00:00Z",
            "UsageDate": f"{day.isoformat()}T00:00:00Z",
            "MeterType": "1 Compute Hour" if meter.category == "Virtual Machines" else meter.unit,
            "MeterCategory": meter.category,
            "MeterId": meter.id,
            "MeterSubCategory": meter.subcategory,
            "MeterName": meter.name,
            "MeterRegion": customer.region,
            "Unit": meter.unit,
            "ResourceLocation": customer.location,
            "ConsumedService": provider.split("/")[0],
            "ResourceGroup": group,
            "ResourceURI": uri,
            "ChargeType": "new",
            "UnitPrice": _EXACT.multiply(price, _LIST_OVER_EFFECTIVE) if _earns_credit(customer) else price,
            "Quantity": quantity,
            "UnitType": meter.unit,
            "BillingPreTaxTotal": total,
            "BillingCurrency": customer.currency,
            "PricingPreTaxTotal": _EXACT.multiply(usd_price, quantity),
            "PricingCurrency": "USD",
            "ServiceInfo1": "",
            "ServiceInfo2": "",
            "Tags": {"env": "prod" if resource == 0 else "test"},
            "AdditionalInfo": dict(meter.additional_info) if meter.additional_info else {},
            "EffectiveUnitPrice": price,
            "PCToBCExchangeRate": customer.pc_to_bc,
            "PCToBCExchangeRateDate": f"{period[0].isoformat()}T00:00:00Z",
            "EntitlementId": entitlement,
            "EntitlementDescription": f"{customer.name} - subscription {k + 1}",
            "PartnerEarnedCreditPercentage": _PEC_PERCENT if _earns_credit(customer) else 0,
            "CreditPercentage": 0,
            "CreditType": "None",
            "BenefitOrderID": "",
            "BenefitID": "",
            "BenefitType": "",
        }
        yield line
        if duplicated:
            yield dict(line)  # an identical-looking line: both are kept


def totals(
    world: World, billing_period: str, currency: str, options: BillingOptions
) -> Mapping[tuple[str, str, str], Decimal]:
    """(customer, entitlement, day) -> BillingPreTaxTotal summed exactly: what the stored totals must equal."""
    found: dict[tuple[str, str, str], Decimal] = {}
    for line in lines(world, billing_period, currency, options):
        key = (line["CustomerId"], line["EntitlementId"], line["UsageDate"][:10])
        found[key] = _EXACT.add(found.get(key, Decimal(0)), line["BillingPreTaxTotal"])
    return found
