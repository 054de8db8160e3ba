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
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.access.grants import Grant
from shared.api.errors import no_such_route, total_withheld, unknown_customer, unknown_subscription
from shared.pricing.view import PARTNER, Viewer
from shared.table_store import TableStore
from shared.tables import RATED_SLICES, SUBSCRIPTIONS, customer_key

if TYPE_CHECKING:
    from shared.api.routes import Route


class Access(StrEnum):
    """A route's access class: what a scoped caller must be granted to read it. Every route declares one."""

    PUBLIC = "public"  # anyone who reaches the function (the OpenAPI document)
    PARTNER = "partner"  # the function key only: refused to every token, whatever its grant (health)
    LISTING = "listing"  # a listing: the handler keeps the rows the caller may see; path ids are checked first
    CUSTOMER = "customer"  # one customer the caller may see
    CUSTOMER_TOTALS = "customer_totals"  # one customer's totals: every subscription of it must be in the grant
    SUBSCRIPTION = "subscription"  # one Partner Center subscription
    AZURE_SUBSCRIPTION = "azure_subscription"  # one Azure subscription under an Azure plan (rated usage)


# The path parameters a route of each class must have, so the guard has the ids it checks.
REQUIRED_PATH: Mapping[Access, frozenset[str]] = {
    Access.PUBLIC: frozenset(),
    Access.PARTNER: frozenset(),
    Access.LISTING: frozenset(),
    Access.CUSTOMER: frozenset({"customer_id"}),
    Access.CUSTOMER_TOTALS: frozenset({"customer_id"}),
    Access.SUBSCRIPTION: frozenset({"customer_id", "subscription_id"}),
    Access.AZURE_SUBSCRIPTION: frozenset({"customer_id", "entitlement_id"}),
}


@dataclass
class _Owners:
    """Resellers of record of one customer's subscriptions and Azure subscriptions (None: bought direct)."""

    subscriptions: dict[str, str | None] = field(default_factory=dict)
    entitlements: dict[str, str | None] = field(default_factory=dict)

    def all(self) -> list[str | None]:
        return [*self.subscriptions.values(), *self.entitlements.values()]


@dataclass
class Scope:
    """One request's view of the data: the function key's (everything) or a token caller's grant."""

    grant: Grant | None = None  # None: the function key
    store: TableStore | None = None
    viewer: Viewer = PARTNER  # how it sees money: cost (the key), or prices under its rule
    _owners: dict[str, _Owners] = field(default_factory=dict)
    _everyone: dict[str, _Owners] | None = None

    @classmethod
    def everything(cls) -> Scope:
        """The function key: partner-wide access, partner-only routes included."""
        return cls()

    @property
    def is_key(self) -> bool:
        """True for the function key (the partner's own access), false for every token caller."""
        return self.grant is None

    @property
    def unrestricted(self) -> bool:
        """True when every customer's data may be read (the key, or a token with an ``all`` grant)."""
        return self.grant is None or self.grant.kind == "all"

    # -- the rules ---------------------------------------------------------------------------------------------

    def _granted(self, customer_id: str, owner: str | None) -> bool:
        """Is something of this customer, sold by ``owner`` (a reseller's MPN id, None: direct), in the grant?"""
        assert self.grant is not None
        if self.grant.kind == "customers":
            return customer_id.lower() in self.grant.values
        return owner in self.grant.values

    def _owners_of(self, customer_id: str) -> list[str | None]:
        """The sellers of record of everything of a customer ([None] stands for 'the customer' under a customers
        grant, whose test needs no table read)."""
        assert self.grant is not None
        return [None] if self.grant.kind == "customers" else self._of(customer_id).all()

    def customer_visible(self, customer_id: str) -> bool:
        """May the caller see that this customer exists (and read what of it is in its grant)?"""
        return self.unrestricted or any(self._granted(customer_id, o) for o in self._owners_of(customer_id))

    def customer_whole(self, customer_id: str) -> bool:
        """May the caller read customer-level totals: is every subscription of the customer in its grant?"""
        if self.unrestricted:
            return True
        owners = self._owners_of(customer_id)
        return bool(owners) and all(self._granted(customer_id, o) for o in owners)

    def subscription_visible(self, customer_id: str, subscription_id: str) -> bool:
        """May the caller read this Partner Center subscription?"""
        if self.unrestricted:
            return True
        return self._granted(customer_id, self._of(customer_id).subscriptions.get(subscription_id.lower()))

    def entitlement_visible(self, customer_id: str, entitlement_id: str) -> bool:
        """May the caller read this Azure subscription's rated usage?"""
        if self.unrestricted:
            return True
        return self._granted(customer_id, self._of(customer_id).entitlements.get(entitlement_id.lower()))

    def guard(self, route: Route, path: Mapping[str, str]) -> None:
        """Raise for a route or path outside the caller's access, exactly as if it did not exist.

        ``path`` holds the route's ids, checked and lower-cased. Deny by default: an access class this method
        does not know is refused.
        """
        access = route.access
        if access is Access.PUBLIC:
            return
        if access is Access.PARTNER:
            if not self.is_key:
                raise no_such_route()  # before any grant is looked at: an ``all`` grant is not the key
            return
        if self.unrestricted:
            return
        customer_id = path.get("customer_id")
        if access is Access.LISTING:
            if customer_id is not None and not self.customer_visible(customer_id):
                raise route.unknown(path)
        elif access is Access.CUSTOMER:
            if customer_id is None or not self.customer_visible(customer_id):
                raise route.unknown(path)
        elif access is Access.CUSTOMER_TOTALS:
            if customer_id is None or not self.customer_visible(customer_id):
                raise route.unknown(path)
            if not self.customer_whole(customer_id):
                raise total_withheld(customer_id)  # it exists and the caller knows it: say why, never "not stored"
        elif access is Access.SUBSCRIPTION:
            subscription_id = path.get("subscription_id")
            if customer_id is None or not self.customer_visible(customer_id):
                raise unknown_customer(str(customer_id))
            if subscription_id is None or not self.subscription_visible(customer_id, subscription_id):
                raise unknown_subscription(customer_id, str(subscription_id))
        elif access is Access.AZURE_SUBSCRIPTION:
            entitlement_id = path.get("entitlement_id")
            if customer_id is None or entitlement_id is None:
                raise route.unknown(path)
            if not self.entitlement_visible(customer_id, entitlement_id):
                raise route.unknown(path)
        else:
            raise no_such_route()

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

    def granted_part(self, customer_id: str, sellers: Mapping[str, str | None]) -> frozenset[str] | None:
        """Which of a customer's subjects (id -> its reseller of record, None: direct) the caller may read: None
        when it may read the customer whole (then its totals are the customer's own), else the ids in its grant
        (possibly none)."""
        if self.unrestricted:
            return None
        assert self.grant is not None
        if self.grant.kind == "customers":
            return None if customer_id.lower() in self.grant.values else frozenset()
        return frozenset(sid for sid, owner in sellers.items() if owner in self.grant.values)

    def keep_customer_row(self, row: Mapping[str, Any]) -> bool:
        """A listing's filter: rows with ``customerId``."""
        return self.customer_visible(str(row.get("customerId", "")))


def _mpn(value: Any) -> str | None:
    return str(value).strip().lower() if value not in (None, "") else None
