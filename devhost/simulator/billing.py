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
from typing import Any

from devhost.simulator.world import _METERS, Customer, World, _h64, stable_guid

_EXACT = Context(prec=80)
_Q20 = Decimal("1E-20")


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
    return (
        str(1_000_000 + _h64(world.config.seed, "reseller", customer.index // 3) % 8_999_999)
        if customer.index % 3 == 1
        else ""
    )


def _price(r: int) -> Decimal:
    """A unit price with 20 significant digits."""
    return (Decimal(1 + r % 9_999) / Decimal(10_000) + Decimal(r % 99_999_999_999_991).scaleb(-24)).quantize(_Q20)


def lines(world: World, billing_period: str, currency: str, options: BillingOptions) -> Iterator[dict[str, Any]]:
    """Every line item of the export of (``current`` | ``last``, currency), as the export writes them."""
    today = world.now().date()
    first, last = period_bounds(today, billing_period)
    through = min(last, today - timedelta(days=1))
    for customer in world.customers():
        if customer.currency != currency or customer.zero_usage:
            continue
        for sub in world.subscriptions(customer.id):
            if sub.kind != "azure_plan":
                continue
            count = 1 + (customer.index % max(1, options.entitlements_per_plan))
            for k, entitlement in enumerate(entitlement_ids(world, sub.id, count)):
                day = first
                while day <= through:
                    yield from _day_lines(world, customer, sub.id, entitlement, k, day, (first, last), options)
                    day += timedelta(days=1)


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
    factor = options.rerated.get(day.isoformat(), Decimal(1))
    reseller = reseller_of(world, customer)
    for j in range(options.meters):
        meter = _METERS[(customer.index + k + j) % len(_METERS)]
        for resource in range(options.resources):
            r = _h64(world.config.seed, "rated", entitlement, day.toordinal(), j, resource)
            price = _EXACT.multiply(_price(r), factor)
            quantity = (Decimal(1 + r % 2400) / Decimal(100)).quantize(Decimal("0.0000000001"))
            total = _EXACT.multiply(price, quantity)
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
                "UnitPrice": price,
                "Quantity": quantity,
                "UnitType": meter.unit,
                "BillingPreTaxTotal": total,
                "BillingCurrency": customer.currency,
                "PricingPreTaxTotal": _EXACT.multiply(total, customer.usd_rate),
                "PricingCurrency": "USD",
                "ServiceInfo1": "",
                "ServiceInfo2": "",
                "Tags": {"env": "prod" if resource == 0 else "test"},
                "AdditionalInfo": dict(meter.additional_info) if meter.additional_info else {},
                "EffectiveUnitPrice": price,
                "PCToBCExchangeRate": customer.usd_rate,
                "PCToBCExchangeRateDate": f"{period[0].isoformat()}T00:00:00Z",
                "EntitlementId": entitlement,
                "EntitlementDescription": f"{customer.name} - subscription {k + 1}",
                "PartnerEarnedCreditPercentage": 0,
                "CreditPercentage": 0,
                "CreditType": "None",
                "BenefitOrderID": "",
                "BenefitID": "",
                "BenefitType": "",
            }
            yield line
            if options.duplicate_every and j == 0 and resource == 0 and day.toordinal() % options.duplicate_every == 0:
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
