"""A grant's own FOCUS dataset (``FOCUS_GRANT_DATASETS``, off by default): the rows of what the grant may read, with
its price under its price rule in the cost columns, in a container of its own, so the partner can give a
reseller's or customer's principal Storage Blob Data Reader on that container and nothing else.

- a ``resellers`` grant: the subscriptions whose reseller of record is one of its MPN ids (as the API);
- a ``customers`` grant: those customers, whole;
- an ``all`` grant without ``showCost``: every customer, at its prices; a grant that shows cost gets none (the
  partner's dataset is the one for it).

Its container is ``{FOCUS_CONTAINER}-{20 hex of SHA-256 of tenant|app}`` (``python -m tools.grants list`` names no
container; the README shows how to find it). An amount without a price under the rule (no list price known) is
left out and counted in the manifest (``unpricedAmounts``), never shown at cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from shared import jsonutil
from shared.access.grants import list_grants
from shared.focus.dataset import View
from shared.pricing.rules import Rules, Whom, list_rules
from shared.pricing.spend import RuleOf, rule_of
from shared.spend.rows import SpendSubject
from shared.table_store import TableStore
from shared.tables import Grant, GrantKind

GrantView = tuple[str, View, Mapping[str, Any]]  # (its container, its view, what its manifest says of it)


def container_suffix(grant: Grant) -> str:
    """The part of a grant's container name after ``{FOCUS_CONTAINER}-``."""
    return hashlib.sha256(f"{grant.tenant_id}|{grant.app_id}".encode()).hexdigest()[:20]


def container_name(base: str, grant: Grant) -> str:
    """A grant's dataset container."""
    return f"{base}-{container_suffix(grant)}"


def _keep(grant: Grant) -> Any:
    values = grant.values
    if grant.kind == GrantKind.RESELLERS:
        return lambda subject: (subject.reseller or "") in values
    if grant.kind == GrantKind.CUSTOMERS:
        return lambda subject: subject.customer_id.lower() in values
    return None


def _price(rule: RuleOf) -> Any:
    def price(subject: SpendSubject, day: str, category: str, cost: Decimal, listed: Decimal | None) -> Any:
        chosen = rule(day, subject.reseller, subject.customer_id)
        return chosen.price(cost, listed, category or None, subject.rule_kind)

    return price


def grant_views(store: TableStore, base: str = "focus") -> list[GrantView]:
    """Every grant shown prices, with what its dataset holds and how it is priced (rules as stored now)."""
    rules = Rules.of(list_rules(store))
    found: list[GrantView] = []
    for grant in list_grants(store).grants:
        if grant.show_cost:
            continue
        whom = {GrantKind.RESELLERS: Whom.RESELLER, GrantKind.CUSTOMERS: Whom.CUSTOMER}.get(grant.kind)
        view = View(keep=_keep(grant), price=_price(rule_of(rules, whom)))
        about = {"tenantId": grant.tenant_id, "appId": grant.app_id, "kind": str(grant.kind)}
        found.append((container_name(base, grant), view, about))
    return found


def setup_digest(store: TableStore, views: Sequence[GrantView]) -> str:
    """What the grant datasets are made under: the grants and every price rule (a change writes them again)."""
    rules = [rule.row() for rule in list_rules(store)]
    described = [{"container": name, **about} for name, _, about in views]
    return hashlib.sha256(jsonutil.dumps({"grants": described, "rules": rules}).encode()).hexdigest()
