"""Price rules: what a reseller or a customer is charged, kept in the ``PriceRules`` table.

A rule names whom it prices (``reseller`` by MPN id, ``customer`` by id, or ``default`` for every scoped caller
without a rule of its own), its **basis** (``list``: Microsoft's retail price, ``UnitPrice`` x quantity, the rate
card's price for legacy usage; ``cost``: what the partner pays, after partner earned credit and discounts), its
**adjustments** (a percentage up or down, optionally only for a meter or product category and/or a subscription
kind; the most specific one that matches a figure wins: category and kind, then category, then kind, then the
rule's general one, else 0) and the day it takes **effect**. A day is priced with the rule in force that day (the
newest one of its subject that took effect on or before it), so a rule change moves no past day and needs no
data ingested again. A viewer without a rule, and without a default, is shown list prices: never cost by accident.

Prices are exact decimals, never rounded here: a total is the exact sum of its lines' prices, so they always
agree; a portal rounds what it displays (to the currency's minor unit, half-even) and should round totals, not
add rounded lines.
"""

from __future__ import annotations

import decimal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from shared import jsonutil
from shared.keys import make_key
from shared.pricing.amounts import EXACT
from shared.table_store import TableStore

PRICE_RULES = "PriceRules"
RULE_PARTITION = "rule"
HUNDRED = Decimal(100)


class Whom(StrEnum):
    """Whom a rule prices."""

    RESELLER = "reseller"
    CUSTOMER = "customer"
    DEFAULT = "default"


class Basis(StrEnum):
    """What a price is made from."""

    LIST = "list"  # Microsoft's retail (pay-as-you-go) price
    COST = "cost"  # what the partner pays (billed pre-tax, after partner earned credit)


@dataclass(frozen=True)
class Adjustment:
    """A percentage added to (or, negative, taken from) the basis; for a category and/or kind, or for all."""

    percent: Decimal
    category: str | None = None  # a meter or product category (MeterCategory), any case
    kind: str | None = None  # a subscription kind: azure_plan, legacy, licence (other)

    def matches(self, category: str | None, kind: str | None) -> bool:
        """Does it apply to a figure of this category and kind?"""
        if self.category is not None and (category or "").lower() != self.category.lower():
            return False
        return self.kind is None or self.kind == kind

    @property
    def specificity(self) -> int:
        """Category and kind 3, category 2, kind 1, neither 0."""
        return (2 if self.category is not None else 0) + (1 if self.kind is not None else 0)


@dataclass(frozen=True, kw_only=True)
class PriceRule:
    """One rule of one subject, in force from ``effective_from``."""

    whom: Whom
    who: str | None  # the reseller's MPN id or the customer id (lower-case); None for the default
    basis: Basis
    effective_from: str  # YYYY-MM-DD
    adjustments: tuple[Adjustment, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "whom", Whom(self.whom))
        object.__setattr__(self, "basis", Basis(self.basis))
        date.fromisoformat(self.effective_from)  # ValueError for anything but a date
        if (self.whom is Whom.DEFAULT) != (self.who is None):
            raise ValueError("a reseller or customer rule names its MPN id or customer id; the default names none")
        if self.who is not None:
            object.__setattr__(self, "who", self.who.strip().lower())
        keys = [(a.category.lower() if a.category else None, a.kind) for a in self.adjustments]
        if len(set(keys)) != len(keys):
            raise ValueError("two adjustments of a rule name the same category and kind")

    @property
    def key(self) -> str:
        """Its PriceRules RowKey: ``{whom}|{who}|{effective from}``."""
        return make_key(str(self.whom), self.who or "-", self.effective_from)

    def percent(self, category: str | None, kind: str | None) -> Decimal:
        """The adjustment of a figure of this category and kind: the most specific that matches, else 0."""
        matching = [a for a in self.adjustments if a.matches(category, kind)]
        return max(matching, key=lambda a: a.specificity).percent if matching else Decimal(0)

    def price(self, cost: Decimal | None, list_price: Decimal | None, category: str | None, kind: str | None) -> Any:
        """The price of a figure (its cost and list amounts), or None when the rule's basis is not known for it."""
        base = list_price if self.basis is Basis.LIST else cost
        if base is None:
            return None
        with decimal.localcontext(EXACT):
            return base * (HUNDRED + self.percent(category, kind)) / HUNDRED

    def row(self) -> dict[str, Any]:
        """Its PriceRules row."""
        return {
            "PartitionKey": RULE_PARTITION,
            "RowKey": self.key,
            "whom": str(self.whom),
            "who": self.who,
            "basis": str(self.basis),
            "effectiveFrom": self.effective_from,
            "adjustments": jsonutil.dumps(
                [{"percent": str(a.percent), "category": a.category, "kind": a.kind} for a in self.adjustments]
            ),
            "note": self.note,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> PriceRule:
        """The rule of a PriceRules row; ValueError for a damaged one."""
        raw = jsonutil.loads(str(row.get("adjustments") or "[]"))
        adjustments = tuple(
            Adjustment(Decimal(str(a["percent"])), a.get("category") or None, a.get("kind") or None) for a in raw
        )
        return cls(
            whom=Whom(str(row["whom"])),
            who=str(row["who"]) if row.get("who") else None,
            basis=Basis(str(row["basis"])),
            effective_from=str(row["effectiveFrom"]),
            adjustments=adjustments,
            note=str(row.get("note") or ""),
        )


LIST_PRICE = PriceRule(whom=Whom.DEFAULT, who=None, basis=Basis.LIST, effective_from="0001-01-01", note="no rule")


def add_rule(store: TableStore, rule: PriceRule) -> None:
    """Store (or replace) a rule (same subject and effective day)."""
    store.upsert_one(PRICE_RULES, rule.row())


def remove_rule(store: TableStore, whom: Whom, who: str | None, effective_from: str) -> None:
    """Remove one rule (gone already is fine)."""
    store.delete(PRICE_RULES, RULE_PARTITION, make_key(str(whom), (who or "-").lower(), effective_from))


def list_rules(store: TableStore) -> list[PriceRule]:
    """Every rule that can be read, by subject and day."""
    rules = []
    for row in store.partition(PRICE_RULES, RULE_PARTITION):
        try:
            rules.append(PriceRule.of_row(row))
        except (ValueError, KeyError, decimal.InvalidOperation):
            continue  # a damaged rule prices nothing; the viewer falls back to the default or list
    return sorted(rules, key=lambda r: (str(r.whom), r.who or "", r.effective_from))


@dataclass(frozen=True)
class Rules:
    """Every rule, by subject, each subject's rules newest first: ``for_day`` picks the one in force."""

    by_subject: Mapping[tuple[Whom, str | None], tuple[PriceRule, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, rules: Iterable[PriceRule]) -> Rules:
        grouped: dict[tuple[Whom, str | None], list[PriceRule]] = {}
        for rule in rules:
            grouped.setdefault((rule.whom, rule.who), []).append(rule)
        return cls({k: tuple(sorted(v, key=lambda r: r.effective_from, reverse=True)) for k, v in grouped.items()})

    def _in_force(self, whom: Whom, who: str | None, day: str) -> PriceRule | None:
        for rule in self.by_subject.get((whom, who), ()):
            if rule.effective_from <= day:
                return rule
        return None

    def for_day(self, day: str, subjects: Iterable[tuple[Whom, str | None]]) -> PriceRule:
        """The rule a figure of ``day`` is priced with: the first of ``subjects`` (whom, id) with a rule in force,
        else the default, else list prices. A reseller's viewer names its reseller, a customer's its customer, the
        partner's margins both (the reseller that sold it, then the customer)."""
        for whom, who in subjects:
            if who and (rule := self._in_force(whom, who.lower(), day)) is not None:
                return rule
        return self._in_force(Whom.DEFAULT, None, day) or LIST_PRICE


class RuleBook:
    """The rules, read again at most every ``ttl`` seconds (the grants' bound on staleness)."""

    def __init__(self, store: TableStore, *, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store, self._ttl, self._clock = store, ttl, clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Rules] | None = None

    def rules(self) -> Rules:
        """The rules in the table (as read at most ``ttl`` seconds ago)."""
        now = self._clock()
        with self._lock:
            if self._cached is not None and self._cached[0] > now:
                return self._cached[1]
        found = Rules.of(list_rules(self._store))
        with self._lock:
            self._cached = (now + self._ttl, found)
        return found
