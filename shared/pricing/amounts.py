"""Exact money, and the amounts a price is made from: per meter category, what the partner pays (cost) and the
retail price (list), summed when data is stored so that a price is worked out at read time without reading a line.

``Amounts`` maps a category (``MeterCategory``; "" when a line names none) to ``[cost, list]``; ``list`` is None
when a figure of the category came without a retail price (a line without ``UnitPrice``, a usage summary): a
price on the list basis is then unknown, never made up from cost.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

# Sums and products keep every digit: a trap, not a rounding, if one ever needed more than 400 digits.
EXACT = decimal.Context(prec=400, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])
ZERO = Decimal(0)

Amounts = dict[str, list[Decimal | None]]  # category -> [cost, list or None]


def money_text(value: Decimal) -> str:
    """An exact amount as text, without exponent notation ("0", not "0E-20")."""
    return "0" if value == 0 else format(value, "f")


def add_to(into: Amounts, category: str, cost: Decimal, list_total: Decimal | None) -> None:
    """Add one figure's cost and list amount to its category."""
    found = into.get(category)
    with decimal.localcontext(EXACT):
        if found is None:
            into[category] = [cost, list_total]
            return
        found[0] = (found[0] or ZERO) + cost
        found[1] = None if found[1] is None or list_total is None else found[1] + list_total


def merge(into: Amounts, other: Mapping[str, Iterable[Decimal | None]]) -> None:
    """Add every category of ``other`` to ``into``."""
    for category, (cost, list_total) in other.items():
        add_to(into, category, cost or ZERO, list_total)


def as_json(amounts: Mapping[str, Iterable[Decimal | None]]) -> dict[str, list[str | None]]:
    """Their stored shape: every number as exact text."""
    return {
        category: [None if v is None else money_text(v) for v in values] for category, values in sorted(amounts.items())
    }


def of_json(value: Any) -> Amounts:
    """Amounts as stored; what is not a pair of numbers is left out (an old row has none: {})."""
    found: Amounts = {}
    if not isinstance(value, Mapping):
        return found
    for category, pair in value.items():
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            continue
        try:
            cost = Decimal(str(pair[0]))
            list_total = None if pair[1] is None else Decimal(str(pair[1]))
        except decimal.InvalidOperation:
            continue
        found[str(category)] = [cost, list_total]
    return found
