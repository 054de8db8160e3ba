"""Grants: which callers (client applications of a tenant) may read what, kept in the ``ApiGrants`` table.

A grant names a caller by its tenant id and application (client) id, and gives it one of: ``all`` (every
customer, as the function key does), ``resellers`` (the customers of indirect resellers, by MPN id: a
subscription's Partner Center ``partnerId``, a rated-usage line's ``Tier2MpnId``), or ``customers`` (a list of
customer ids). Both ids name the caller, since a multi-tenant application has the same id in every tenant that
consented to it: a token from one allowed tenant never reads the grant given to the same application in another.
A caller without a grant reads nothing. ``GrantBook`` caches grants for a bounded time, so a grant added or
removed takes effect within API_GRANTS_CACHE_SECONDS without a restart. The row itself is declared in
``shared.tables`` (``Grant``, ``grant_key``).

Rows stored before grants named a tenant (keyed by the application id alone) grant nothing: ``list_grants``
reports them so an admin adds them again with their tenant, which replaces them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from shared.keys import make_key
from shared.table_store import TableStore
from shared.tables import API_GRANTS, GRANT_PARTITION, Grant, GrantKind, grant_key

__all__ = [
    "CACHE_ENTRIES",
    "Grant",
    "GrantBook",
    "GrantKind",
    "Listing",
    "Unusable",
    "add_grant",
    "list_grants",
    "normalise",
    "remove_grant",
]

log = logging.getLogger(__name__)

CACHE_ENTRIES = 1024


def _untenanted_key(app_id: str) -> str:
    """The RowKey a grant had before grants named a tenant (the application id alone)."""
    return make_key(app_id.lower())


def add_grant(store: TableStore, grant: Grant, *, now: datetime | None = None) -> None:
    """Store (or replace) a caller's grant; a row of the same application stored before grants named a tenant
    is removed (it granted nothing any more)."""
    store.upsert_one(API_GRANTS, grant.row(granted_at=now or datetime.now(timezone.utc)))
    store.delete(API_GRANTS, GRANT_PARTITION, _untenanted_key(grant.app_id))


def remove_grant(store: TableStore, tenant_id: str, app_id: str) -> None:
    """Remove a caller's grant, and a row of that application from before grants named a tenant (gone is fine)."""
    store.delete(API_GRANTS, GRANT_PARTITION, grant_key(tenant_id, app_id))
    store.delete(API_GRANTS, GRANT_PARTITION, _untenanted_key(app_id))


@dataclass(frozen=True)
class Unusable:
    """A stored row that grants nothing: its application (as stored) and why."""

    row_key: str
    app_id: str
    why: str


@dataclass(frozen=True)
class Listing:
    """Every stored grant, and the rows that grant nothing."""

    grants: list[Grant]
    unusable: list[Unusable]


def list_grants(store: TableStore) -> Listing:
    """Every grant (by tenant, then application), and the rows that grant nothing."""
    grants, unusable = [], []
    for row in store.partition(API_GRANTS, GRANT_PARTITION):
        try:
            grants.append(Grant.of_row(row))
        except (ValueError, TypeError) as exc:
            unusable.append(Unusable(str(row.get("RowKey", "")), str(row.get("appId") or "?"), str(exc)))
    return Listing(sorted(grants, key=lambda g: (g.tenant_id, g.app_id)), unusable)


class GrantBook:
    """Reads a caller's grant, reusing it for ``ttl`` seconds; at most CACHE_ENTRIES callers are remembered."""

    def __init__(self, store: TableStore, *, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store, self._ttl, self._clock = store, ttl, clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Grant | None]] = {}

    def grant(self, tenant_id: str, app_id: str) -> Grant | None:
        """The grant of this application of this tenant, or None when it has none."""
        key = (tenant_id.lower(), app_id.lower())
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        found = self._read(*key)
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                while len(self._cache) >= CACHE_ENTRIES:
                    self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (now + self._ttl, found)
        return found

    def _read(self, tenant_id: str, app_id: str) -> Grant | None:
        row = self._store.get(API_GRANTS, GRANT_PARTITION, grant_key(tenant_id, app_id))
        if row is None:
            if self._store.get(API_GRANTS, GRANT_PARTITION, _untenanted_key(app_id)) is not None:
                log.warning(
                    "the grant of app %s was stored before grants named a tenant and grants nothing: add it again "
                    "with its tenant (python -m tools.grants add %s %s ...)",
                    app_id,
                    tenant_id,
                    app_id,
                )
            return None
        try:
            grant = Grant.of_row(row)
        except (ValueError, TypeError) as exc:
            log.warning("the grant of app %s of tenant %s grants nothing: %s", app_id, tenant_id, exc)
            return None  # a damaged grant grants nothing
        return grant if (grant.tenant_id, grant.app_id) == (tenant_id, app_id) else None


def normalise(values: Iterable[str]) -> frozenset[str]:
    """Ids as grants compare them: stripped, lower-case."""
    return frozenset(v.strip().lower() for v in values if v.strip())
