"""What one caller may read, applied to every route: ids outside its grant answer exactly like unknown ones.

``Scope.everything()`` is the function key's partner-wide access. A scoped caller's grant (``shared.access``)
is ``customers`` (those customer ids, wholly) or ``resellers`` (reseller MPN ids): a subscription is in it when
its Partner Center ``partnerId`` is one of them, an Azure subscription of the rated usage when its
``Tier2MpnId`` is; a customer is visible when any of its subscriptions is. Customer-level totals (usage records,
a customer's daily cost) are shown to a reseller-scoped caller only when **every** subscription of that
customer is in its grant: a customer shared with a second reseller, or bought partly direct, is seen
subscription by subscription, never as a total that includes what another reseller sold. The tables are read
once per request (memoised here), and for listings once per table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.access.grants import Grant
from shared.api import rated
from shared.api.errors import CODE_SUBSCRIPTION_NOT_FOUND, ApiError, not_found
from shared.api.params import is_guid
from shared.table_store import TableStore
from shared.tables import RATED_SLICES, SUBSCRIPTIONS, customer_key

CUSTOMER_ROUTES = ("customer", "subscriptions")
WHOLE_CUSTOMER_ROUTES = ("customer_daily_cost",)
SUBSCRIPTION_ROUTES = ("subscription", "usage_summary", "utilization")
ENTITLEMENT_ROUTES = ("entitlement_daily_cost", "line_items")
PARTNER_ONLY_ROUTES = ("health",)


def unknown_customer(customer_id: str) -> ApiError:
    """The answer for a customer this service does not know (the same for one outside the grant)."""
    return not_found(f"Customer {customer_id} is not known to this service.")


def unknown_subscription(customer_id: str, subscription_id: str) -> ApiError:
    """The answer for an unknown subscription of a known customer."""
    return not_found(
        f"Subscription {subscription_id} is not known for customer {customer_id}.", CODE_SUBSCRIPTION_NOT_FOUND
    )


@dataclass
class _Owners:
    """Resellers of record of one customer's subscriptions and Azure subscriptions (None: bought direct)."""

    subscriptions: dict[str, str | None] = field(default_factory=dict)
    entitlements: dict[str, str | None] = field(default_factory=dict)

    def all(self) -> list[str | None]:
        return [*self.subscriptions.values(), *self.entitlements.values()]


@dataclass
class Scope:
    """One request's view of the data."""

    grant: Grant | None = None  # None: everything (the function key)
    store: TableStore | None = None
    _owners: dict[str, _Owners] = field(default_factory=dict)
    _everyone: dict[str, _Owners] | None = None

    @classmethod
    def everything(cls) -> Scope:
        """Partner-wide access."""
        return cls()

    @property
    def unrestricted(self) -> bool:
        """True for partner-wide access."""
        return self.grant is None or self.grant.kind == "all"

    # -- the rules ---------------------------------------------------------------------------------------------

    def customer_visible(self, customer_id: str) -> bool:
        """May the caller see that this customer exists (and read what of it is in its grant)?"""
        if self.unrestricted:
            return True
        assert self.grant is not None
        if self.grant.kind == "customers":
            return customer_id.lower() in self.grant.values
        return any(owner in self.grant.values for owner in self._of(customer_id).all())

    def customer_whole(self, customer_id: str) -> bool:
        """May the caller read customer-level totals: is every subscription of the customer in its grant?"""
        if self.unrestricted:
            return True
        assert self.grant is not None
        if self.grant.kind == "customers":
            return customer_id.lower() in self.grant.values
        owners = self._of(customer_id).all()
        return bool(owners) and all(owner in self.grant.values for owner in owners)

    def subscription_visible(self, customer_id: str, subscription_id: str) -> bool:
        """May the caller read this Partner Center subscription?"""
        if self.unrestricted:
            return True
        assert self.grant is not None
        if self.grant.kind == "customers":
            return customer_id.lower() in self.grant.values
        return self._of(customer_id).subscriptions.get(subscription_id.lower()) in self.grant.values

    def entitlement_visible(self, customer_id: str, entitlement_id: str) -> bool:
        """May the caller read this Azure subscription's rated usage?"""
        if self.unrestricted:
            return True
        assert self.grant is not None
        if self.grant.kind == "customers":
            return customer_id.lower() in self.grant.values
        return self._of(customer_id).entitlements.get(entitlement_id.lower()) in self.grant.values

    def guard(self, route: str, path: Mapping[str, str]) -> None:
        """Raise for a path naming something outside the grant, exactly as if it did not exist."""
        if self.unrestricted:
            return
        if route in PARTNER_ONLY_ROUTES:
            raise not_found("No such resource. See /api/openapi.json for the routes this API serves.")
        customer_id = _guid(path.get("customer_id"))
        if customer_id is None:
            return  # the handler answers 400 for a malformed id
        if route in CUSTOMER_ROUTES and not self.customer_visible(customer_id):
            raise unknown_customer(customer_id)
        if route in ("azure_entitlements", *WHOLE_CUSTOMER_ROUTES):
            allowed = self.customer_whole if route in WHOLE_CUSTOMER_ROUTES else self.customer_visible
            if not allowed(customer_id):
                raise rated.nothing_stored(customer_id)
        subscription_id = _guid(path.get("subscription_id"))
        if route in SUBSCRIPTION_ROUTES and subscription_id is not None:
            if not self.customer_visible(customer_id):
                raise unknown_customer(customer_id)
            if not self.subscription_visible(customer_id, subscription_id):
                raise unknown_subscription(customer_id, subscription_id)
        entitlement_id = _guid(path.get("entitlement_id"))
        if route in ENTITLEMENT_ROUTES and entitlement_id is not None:
            if not self.entitlement_visible(customer_id, entitlement_id):
                raise rated.nothing_stored(customer_id, entitlement_id)

    # -- what the tables say -------------------------------------------------------------------------------------

    def _of(self, customer_id: str) -> _Owners:
        key = customer_id.lower()
        if self._everyone is not None:
            return self._everyone.get(key, _Owners())
        if key not in self._owners:
            assert self.store is not None
            owners = _Owners()
            for row in self.store.partition(SUBSCRIPTIONS, customer_key(key), select=["subscriptionId", "partnerId"]):
                owners.subscriptions[str(row["subscriptionId"])] = _mpn(row.get("partnerId"))
            for row in self.store.partition(RATED_SLICES, customer_key(key), select=["entitlementId", "tier2MpnId"]):
                owners.entitlements[str(row["entitlementId"])] = _mpn(row.get("tier2MpnId"))
            self._owners[key] = owners
        return self._owners[key]

    def load_everyone(self) -> None:
        """Read every customer's resellers of record at once (two table reads), for a listing."""
        if self.unrestricted or self._everyone is not None:
            return
        assert self.store is not None
        everyone: dict[str, _Owners] = {}
        for row in self.store.all_rows(SUBSCRIPTIONS, select=["customerId", "subscriptionId", "partnerId"]):
            owners = everyone.setdefault(str(row["customerId"]), _Owners())
            owners.subscriptions[str(row["subscriptionId"])] = _mpn(row.get("partnerId"))
        for row in self.store.all_rows(RATED_SLICES, select=["customerId", "entitlementId", "tier2MpnId"]):
            owners = everyone.setdefault(str(row["customerId"]), _Owners())
            owners.entitlements[str(row["entitlementId"])] = _mpn(row.get("tier2MpnId"))
        self._everyone = everyone

    def keep_customer_row(self, row: Mapping[str, Any]) -> bool:
        """A listing's filter: rows with ``customerId``."""
        return self.customer_visible(str(row.get("customerId", "")))


def _guid(value: str | None) -> str | None:
    return value.lower() if value is not None and is_guid(value) else None


def _mpn(value: Any) -> str | None:
    return str(value).strip().lower() if value not in (None, "") else None
