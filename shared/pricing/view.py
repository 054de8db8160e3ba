"""How one caller sees money: the partner sees cost (and, in spend, the price each buyer is charged and the
margin); a scoped caller sees prices under its price rule and never a cost field unless its grant shows cost.

Deny by default: what a scoped caller receives of a line item is a list of fields known to carry no cost
(``SCOPED_LINE_FIELDS``) and a ``price`` object; a field not in that list, a new one Microsoft adds tomorrow
included, is not served to it.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.pricing.amounts import EXACT
from shared.pricing.rules import LIST_PRICE, Basis, PriceRule, Rules, Whom

# The fields of a rated-usage line that carry no cost or price: who, what, where, when, how much.
SCOPED_LINE_FIELDS = (
    "PartnerId",
    "PartnerName",
    "CustomerId",
    "CustomerName",
    "CustomerDomainName",
    "CustomerCountry",
    "MpnId",
    "Tier2MpnId",
    "InvoiceNumber",
    "ProductId",
    "SkuId",
    "AvailabilityId",
    "SkuName",
    "ProductName",
    "PublisherName",
    "PublisherId",
    "SubscriptionId",
    "SubscriptionDescription",
    "ChargeStartDate",
    "ChargeEndDate",
    "UsageDate",
    "MeterType",
    "MeterCategory",
    "MeterId",
    "MeterSubCategory",
    "MeterName",
    "MeterRegion",
    "Unit",
    "ResourceLocation",
    "ConsumedService",
    "ResourceGroup",
    "ResourceURI",
    "ChargeType",
    "Quantity",
    "UnitType",
    "BillingCurrency",
    "ServiceInfo1",
    "ServiceInfo2",
    "Tags",
    "AdditionalInfo",
    "EntitlementId",
    "EntitlementDescription",
)
# The fields that are the partner's cost, or let it be worked out: never served to a caller that may not see cost.
COST_FIELDS = (
    "UnitPrice",
    "EffectiveUnitPrice",
    "BillingPreTaxTotal",
    "PricingPreTaxTotal",
    "PricingCurrency",
    "PCToBCExchangeRate",
    "PCToBCExchangeRateDate",
    "PartnerEarnedCreditPercentage",
    "CreditPercentage",
    "CreditType",
    "BenefitOrderID",
    "BenefitID",
    "BenefitType",
)
PRICE_COLUMNS = (
    "price.currencyCode",
    "price.total",
    "price.perUnit",
    "price.basis",
    "price.adjustmentPercent",
    "price.effectiveFrom",
)


@dataclass(frozen=True)
class Viewer:
    """A caller's view of money.

    ``rules`` None: the function key, which sees cost. Otherwise a scoped caller, priced under the rule of
    ``whom`` (its grant's kind: a reseller's rule, a customer's, or, for an ``all`` grant, the reseller's then the
    customer's), falling back to the default rule and then to list prices; ``shows_cost`` lets it read cost too.
    """

    rules: Rules | None = None
    whom: Whom | None = None
    shows_cost: bool = False  # deny by default: only a grant that says so, and the key, read cost

    @property
    def priced(self) -> bool:
        """True for a scoped caller: its figures are prices under its rule."""
        return self.rules is not None

    @property
    def prices_only(self) -> bool:
        """True for a scoped caller whose grant does not show cost: prices are the only money it reads."""
        return self.rules is not None and not self.shows_cost

    def rule(self, day: str, reseller: str | None, customer: str | None) -> PriceRule:
        """The rule a figure of ``day`` sold by ``reseller`` to ``customer`` is shown at."""
        return price_rule(self.rules or Rules(), day, reseller, customer, self.whom)


PARTNER = Viewer(shows_cost=True)


def subjects(whom: Whom | None, reseller: str | None, customer: str | None) -> Sequence[tuple[Whom, str | None]]:
    """Whose rule prices a figure for a viewer of ``whom`` (None: the partner's margins, or an ``all`` grant)."""
    if whom is Whom.RESELLER:
        return [(Whom.RESELLER, reseller)]
    if whom is Whom.CUSTOMER:
        return [(Whom.CUSTOMER, customer)]
    return [(Whom.RESELLER, reseller), (Whom.CUSTOMER, customer)]


def price_rule(rules: Rules, day: str, reseller: str | None, customer: str | None, whom: Whom | None) -> PriceRule:
    """The rule in force on ``day`` for this figure and viewer (the default, else list prices, when none)."""
    return rules.for_day(day, subjects(whom, reseller, customer))


def field(line: Mapping[str, Any], name: str) -> Any:
    """A line's member by name, in any case (older lines are camelCase)."""
    if name in line:
        return line[name]
    lowered = name.lower()
    return next((v for k, v in line.items() if isinstance(k, str) and k.lower() == lowered), None)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return None
    try:
        number = Decimal(value)
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def line_amounts(line: Mapping[str, Any]) -> tuple[Decimal | None, Decimal | None]:
    """(cost, list) of a rated-usage line: its billed pre-tax total, and its retail unit price x quantity."""
    cost = _number(field(line, "BillingPreTaxTotal"))
    unit, quantity = _number(field(line, "UnitPrice")), _number(field(line, "Quantity"))
    if unit is None or quantity is None:
        return cost, None
    with decimal.localcontext(EXACT):
        return cost, unit * quantity


def priced_line(line: Mapping[str, Any], viewer: Viewer, customer_id: str) -> dict[str, Any]:
    """A line as a scoped caller may read it: its cost-free fields, and its ``price`` under the caller's rule
    (the cost fields too, when its grant shows cost)."""
    day = str(field(line, "UsageDate") or "")[:10]
    reseller = str(field(line, "Tier2MpnId") or "").strip().lower() or None
    rule = viewer.rule(day, reseller, customer_id) if viewer.priced else LIST_PRICE
    category, kind = field(line, "MeterCategory"), "azure_plan"
    cost, list_total = line_amounts(line)
    total = rule.price(cost, list_total, category, kind)
    unit = None
    if rule.basis is Basis.LIST and (list_unit := _number(field(line, "UnitPrice"))) is not None:
        unit = rule.price(None, list_unit, category, kind)
    shown: dict[str, Any] = {}
    lowered = {str(k).lower(): k for k in line}
    allowed = SCOPED_LINE_FIELDS + (COST_FIELDS if viewer.shows_cost else ())
    for name in allowed:
        if name.lower() in lowered:
            shown[name] = line[lowered[name.lower()]]
    shown["price"] = {
        "currencyCode": field(line, "BillingCurrency"),
        "total": total,
        "perUnit": unit,
        "basis": str(rule.basis),
        "adjustmentPercent": rule.percent(category, kind),
        "effectiveFrom": None if rule is LIST_PRICE else rule.effective_from,
    }
    return shown
