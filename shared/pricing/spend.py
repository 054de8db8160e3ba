"""Spend at a viewer's price: each day of a subject priced with the rule in force that day, from the cost and list
amounts per category stored with it at ingest (no line is read, nothing is stored again when a rule changes).

A day whose rule's basis is unknown for one of its categories (list price on a figure that came without one: a
usage summary, a line without ``UnitPrice``) has no price: it is left out of the priced figures and named in
their coverage (``noListPrice``), never shown at cost instead.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from shared.pricing.amounts import EXACT, ZERO, money_text
from shared.pricing.rules import PriceRule, Rules, Whom
from shared.pricing.view import price_rule, subjects
from shared.spend.project import subject_amounts
from shared.spend.rows import SpendMonth, SpendSubject

NO_LIST_PRICE = "noListPrice"
AZURE_PLAN_KIND = "azure_plan"  # the subscription kind a rule names for Azure plan usage

RuleOf = Callable[[str, str | None, str], PriceRule]  # (day, reseller, customer) -> the rule in force


def rule_of(rules: Rules, whom: Whom | None) -> RuleOf:
    """The rule a figure is priced with for a viewer of ``whom`` (None: the partner's buyers, reseller then
    customer)."""
    return lambda day, reseller, customer: price_rule(rules, day, reseller, customer, whom)


def price_amounts(rule: PriceRule, found: Mapping[str, Iterable[Decimal | None]], kind: str) -> Decimal | None:
    """The price of a figure's categories under one rule; None when its basis is unknown for one of them."""
    total = ZERO
    for category, (cost, listed) in found.items():
        price = rule.price(cost, listed, category or None, kind)
        if price is None:
            return None
        with decimal.localcontext(EXACT):
            total += price
    return total


@dataclass(frozen=True)
class Priced:
    """A subject at a price: the same subject with its days and total priced, and the days without a price."""

    subject: SpendSubject
    unpriced_days: tuple[str, ...]


def priced_subject(subject: SpendSubject, rule: RuleOf) -> Priced:
    """``subject`` with every amount its price under ``rule``; its days with no known price left out."""
    days: dict[str, Decimal] = {}
    missing: list[str] = []
    kind = subject.rule_kind
    for day, found in sorted(subject_amounts(subject).items()):
        price = price_amounts(rule(day, subject.reseller, subject.customer_id), found, kind)
        if price is None:
            missing.append(day)
        else:
            days[day] = price
    with decimal.localcontext(EXACT):
        total = sum(days.values(), ZERO)
    shown = {day: money_text(price) for day, price in days.items()} if subject.days else {}
    # at a price: no cost-side figure stays (the last estimate and the invoices are the partner's)
    priced = replace(subject, days=shown, total=money_text(total), amounts={}, estimate=None, invoice_ids=())
    return Priced(priced, tuple(missing))


def month_changes(rules: Rules, period: str, whom: Whom | None, reseller: str | None, customer: str) -> bool:
    """Does a rule that could price this customer's figures take effect within the month (after its first day)?
    Then its days are priced one by one; otherwise one rule prices the whole month."""
    first, after = period + "-01", period + "-32"
    names = [*subjects(whom, reseller, customer), (Whom.DEFAULT, None)]
    for who_kind, who in names:
        if who_kind is not Whom.DEFAULT and not who:
            continue
        for rule in rules.by_subject.get((who_kind, who.lower() if who else None), ()):
            if first < rule.effective_from < after:
                return True
    return False


def month_price(
    month: SpendMonth, rule: RuleOf, currency: str, resellers: Iterable[str | None] | None = None, by_day: bool = False
) -> tuple[Decimal, bool]:
    """A customer's month in one currency at a price: (price, complete). From its month sums (one rule in force
    over the month), or ``by_day`` from its day sums (a rule takes effect within it: each day its own rule);
    ``resellers`` limits it to what those resellers sold (a grant's part)."""
    total, complete = ZERO, True
    wanted = None if resellers is None else {r or "" for r in resellers}
    first = month.period + "-01"
    for reseller, kinds in (month.priceable_days if by_day else month.priceable).get(currency, {}).items():
        if wanted is not None and reseller not in wanted:
            continue
        for kind, found in kinds.items():
            days: Mapping[str, Any] = found if by_day else {first: found}
            for day, day_amounts in days.items():
                price = price_amounts(rule(day, reseller or None, month.customer_id), day_amounts, kind)
                if price is None:
                    complete = False
                    continue
                with decimal.localcontext(EXACT):
                    total += price
    return total, complete


def changes_within(rules: Rules, period: str) -> bool:
    """Does any rule take effect within the month (after its first day)? Then its figures are priced by day."""
    first, after = period + "-01", period + "-32"
    return any(first < rule.effective_from < after for found in rules.by_subject.values() for rule in found)


def summed(subjects_priced: Iterable[Priced], currency: str) -> tuple[Decimal, bool]:
    """The total of priced subjects in one currency, and whether every day of them had a price."""
    total, complete = ZERO, True
    with decimal.localcontext(EXACT):
        for priced in subjects_priced:
            if priced.subject.currency == currency:
                total += Decimal(priced.subject.total)
                complete = complete and not priced.unpriced_days
    return total, complete
