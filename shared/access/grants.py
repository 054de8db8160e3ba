"""Grants: which callers (client applications) may read what, kept in the ``ApiGrants`` table.

A grant names a caller by its application (client) id and gives it one of: ``all`` (every customer, as the
function key does), ``resellers`` (the customers of indirect resellers, by MPN id: a subscription's Partner
Center ``partnerId``, a rated-usage line's ``Tier2MpnId``), or ``customers`` (a list of customer ids). A
caller without a grant reads nothing. ``GrantBook`` caches grants for a bounded time, so a grant added or
removed takes effect within API_GRANTS_CACHE_SECONDS without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.keys import make_key
from shared.table_store import TableStore

GRANTS = "ApiGrants"
GRANT_PARTITION = "grant"
KINDS = ("all", "resellers", "customers")
CACHE_ENTRIES = 1024


@dataclass(frozen=True)
class Grant:
    """What one caller may read."""

    app_id: str
    kind: str  # all / resellers / customers
    values: frozenset[str] = frozenset()  # reseller MPN ids or customer ids, lower-case
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"a grant is one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind != "all" and not self.values:
            raise ValueError(f"a {self.kind} grant names at least one id")

    def row(self) -> dict[str, Any]:
        """Its ApiGrants row."""
        return {
            "PartitionKey": GRANT_PARTITION,
            "RowKey": make_key(self.app_id.lower()),
            "appId": self.app_id.lower(),
            "kind": self.kind,
            "values": ",".join(sorted(self.values)),
            "note": self.note,
            "grantedAt": datetime.now(timezone.utc).isoformat(),
        }

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> Grant:
        """The grant of an ApiGrants row."""
        values = frozenset(v.strip().lower() for v in str(row.get("values") or "").split(",") if v.strip())
        return cls(str(row["appId"]), str(row["kind"]), values, str(row.get("note") or ""))


def add_grant(store: TableStore, grant: Grant) -> None:
    """Store (or replace) a caller's grant."""
    store.upsert_one(GRANTS, grant.row())


def remove_grant(store: TableStore, app_id: str) -> None:
    """Remove a caller's grant (gone already is fine)."""
    store.delete(GRANTS, GRANT_PARTITION, make_key(app_id.lower()))


def list_grants(store: TableStore) -> list[Grant]:
    """Every grant, by app id."""
    return [Grant.of_row(dict(row)) for row in store.partition(GRANTS, GRANT_PARTITION)]


class GrantBook:
    """Reads a caller's grant, reusing it for ``ttl`` seconds; at most CACHE_ENTRIES callers are remembered."""

    def __init__(self, store: TableStore, *, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store, self._ttl, self._clock = store, ttl, clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Grant | None]] = {}

    def grant(self, app_id: str) -> Grant | None:
        """The caller's grant, or None when it has none."""
        key = app_id.lower()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        row = self._store.get(GRANTS, GRANT_PARTITION, make_key(key))
        try:
            found = None if row is None else Grant.of_row(dict(row))
        except (KeyError, ValueError):
            found = None  # a damaged grant grants nothing
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                while len(self._cache) >= CACHE_ENTRIES:
                    self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (now + self._ttl, found)
        return found


def normalise(values: Iterable[str]) -> frozenset[str]:
    """Ids as grants compare them: stripped, lower-case."""
    return frozenset(v.strip().lower() for v in values if v.strip())
