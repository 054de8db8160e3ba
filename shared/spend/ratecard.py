"""The Azure rate card, and legacy usage priced with it the way Microsoft documents for CSP partners.

``GET /v1/ratecards/azure?currency=&region=`` lists meters with ``rates`` (tiers: a quantity threshold as text,
and the unit price from that threshold on), ``includedQuantity`` (free units each month) and ``effectiveDate``,
and ``offerTerms`` whose ``discount`` applies to every meter but the term's ``excludedMeterIds``.

A meter's charge for a month is a function of its cumulative quantity in that month: the first
``includedQuantity`` units are free, the rest are priced tier by tier (a tier's rate from its threshold up to the
next threshold, the thresholds counted on the billable quantity), then reduced by the discounts that apply. A
day's cost is the charge at the month's cumulative quantity after that day less the charge before it, so the
days of a month add up to the month exactly. Every figure is an exact decimal; a meter the card does not list is
*unpriced* (reported as such, never 0).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared.pricing.amounts import EXACT, Amounts, add_to
from shared.records import BadRecord

ZERO = Decimal(0)


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise BadRecord(f"{what} is not a number")
    try:
        number = Decimal(value)
    except decimal.InvalidOperation:
        raise BadRecord(f"{what} is not a number") from None
    if not number.is_finite():
        raise BadRecord(f"{what} is not finite")
    return number


@dataclass(frozen=True)
class Meter:
    """One meter of the card: its tiers (threshold, unit price), ascending from 0, and its free quantity."""

    id: str
    name: str
    unit: str
    tiers: tuple[tuple[Decimal, Decimal], ...]
    included: Decimal = ZERO
    effective_date: str | None = None
    category: str = ""  # the meter's category (what a price rule's adjustment may name)

    def charge(self, quantity: Decimal) -> Decimal:
        """The cost of the first ``quantity`` units of a month, before discounts."""
        billable = quantity - self.included
        if billable <= 0:
            return ZERO
        total = ZERO
        with decimal.localcontext(EXACT):
            for index, (threshold, price) in enumerate(self.tiers):
                if billable <= threshold:
                    break
                upper = self.tiers[index + 1][0] if index + 1 < len(self.tiers) else billable
                total += (min(billable, upper) - threshold) * price
        return total


@dataclass(frozen=True)
class RateCard:
    """A parsed rate card: meters by id (lower-case), the discount factor of each meter, the card's currency."""

    currency: str
    meters: Mapping[str, Meter]
    terms: tuple[tuple[Decimal, frozenset[str]], ...] = ()  # (discount, excluded meter ids)
    skipped: tuple[str, ...] = field(default=(), compare=False)  # meters that could not be read, with why

    @classmethod
    def parse(cls, body: Any) -> RateCard:
        """A card as Partner Center returns it; BadRecord when it is not one. A meter that cannot be read is
        left out (and named in ``skipped``): its usage is then unpriced, never priced wrongly."""
        if not isinstance(body, Mapping) or not isinstance(body.get("meters"), list):
            raise BadRecord("the rate card has no meters list")
        currency = body.get("currency")
        if not isinstance(currency, str) or not currency.strip():
            raise BadRecord("the rate card names no currency")
        meters: dict[str, Meter] = {}
        skipped: list[str] = []
        for number, raw in enumerate(body["meters"]):
            try:
                meter = _meter(raw)
            except BadRecord as exc:
                skipped.append(f"meter {number}: {exc}")
                continue
            meters[meter.id] = meter
        terms = []
        for raw in body.get("offerTerms") or []:
            if not isinstance(raw, Mapping) or raw.get("discount") in (None, 0):
                continue
            discount = _decimal(raw["discount"], "an offer term's discount")
            if not ZERO <= discount < 1:
                raise BadRecord(f"an offer term's discount {discount} is not a fraction below 1")
            excluded = frozenset(str(m).lower() for m in raw.get("excludedMeterIds") or [])
            terms.append((discount, excluded))
        return cls(currency.strip().upper(), meters, tuple(terms), tuple(skipped))

    def factor(self, meter_id: str) -> Decimal:
        """What is left of a meter's charge after the discounts that apply to it (1 when none does)."""
        result = Decimal(1)
        with decimal.localcontext(EXACT):
            for discount, excluded in self.terms:
                if meter_id not in excluded:
                    result *= 1 - discount
        return result


def _meter(raw: Any) -> Meter:
    if not isinstance(raw, Mapping):
        raise BadRecord("not an object")
    meter_id = raw.get("id")
    if not isinstance(meter_id, str) or not meter_id.strip():
        raise BadRecord("no id")
    rates = raw.get("rates")
    if not isinstance(rates, Mapping) or not rates:
        raise BadRecord(f"meter {meter_id} has no rates")
    tiers = sorted((_decimal(k, "a rate threshold"), _decimal(v, "a rate")) for k, v in rates.items())
    if tiers[0][0] != 0:
        tiers.insert(0, (ZERO, ZERO))  # nothing below the first threshold is charged
    included = _decimal(raw.get("includedQuantity") or 0, "includedQuantity")
    effective = raw.get("effectiveDate")
    return Meter(
        id=meter_id.strip().lower(),
        name=str(raw.get("name") or ""),
        unit=str(raw.get("unit") or ""),
        tiers=tuple(tiers),
        included=included,
        effective_date=effective if isinstance(effective, str) else None,
        category=str(raw.get("category") or "").strip(),
    )


@dataclass
class PricedDays:
    """A subscription's month priced day by day: cost per day, the same per meter category with the card's price
    before discounts (its list price), and the quantities no card prices."""

    days: dict[str, Decimal] = field(default_factory=dict)
    categories: dict[str, Amounts] = field(default_factory=dict)  # day -> category -> [cost, list]
    unpriced: dict[str, dict[str, Any]] = field(default_factory=dict)  # meter id -> name, unit, quantity


def price_month(
    quantities: Iterable[tuple[str, Mapping[str, tuple[Decimal, str, str]]]],
    card_of: Any,
) -> PricedDays:
    """Price a month's days in day order.

    ``quantities``: (day, {meter id: (quantity, name, unit)}) for each day with usage, in day order;
    ``card_of(day)``: the RateCard in force that day, or None (everything that day is then unpriced).
    Tiers and included quantities run on the cumulative quantity of each meter since the first day given.
    """
    priced = PricedDays()
    used: dict[str, Decimal] = {}
    with decimal.localcontext(EXACT):
        for day, meters in quantities:
            card: RateCard | None = card_of(day)
            cost, any_priced = ZERO, False
            for meter_id, (quantity, name, unit) in meters.items():
                before = used.get(meter_id, ZERO)
                used[meter_id] = before + quantity
                meter = None if card is None else card.meters.get(meter_id.lower())
                if meter is None or card is None:
                    gap = priced.unpriced.setdefault(meter_id, {"name": name, "unit": unit, "quantity": ZERO})
                    gap["quantity"] += quantity
                    continue
                listed = meter.charge(before + quantity) - meter.charge(before)
                charged = listed * card.factor(meter.id)
                cost += charged
                add_to(priced.categories.setdefault(day, {}), meter.category, charged, listed)
                any_priced = True
            if any_priced:
                priced.days[day] = cost
    return priced
