"""Slice versioning, pure: what a snapshot changes, which versions it supersedes, and which of those may go.

The export has no line ids and is a snapshot of the period to date, so a line is never updated in place. The
unit of data is the **day slice**: the lines of one (customer, Azure subscription, day, currency), sorted by
their digest. Its **version** is the first 16 hex digits of the SHA-256 over those digests, so equal data gives
an equal version and equal row keys whichever order Graph wrote it in. A ``RatedPointer`` (shared/tables.py)
names the version of each day; a version it stops naming is *superseded* and kept ``GRACE`` for readers that
read the old pointer, then it *expires* and its rows may be deleted.

Nothing here reads or writes a table: ``shared.rated.commit`` stores what these plans say, in their order (and
computes each day's version from its staged chunks: SHA-256 over the day's sorted line digests).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.tables import NO_CUSTOMER_DAY, CustomerDay, DayView, RatedPointer, Superseded
from shared.timeutil import utc_text

GRACE = timedelta(hours=1)  # superseded versions stay readable this long for readers in flight
VERSION_CHARS = 16


@dataclass(frozen=True)
class Snapshot:
    """The export being stored: which stream it belongs to and which data version Graph says it is."""

    billing_period: str  # current / last (or an invoice id for a billed export)
    currency: str
    etag: str
    created: str | None


@dataclass
class Slice:
    """One (customer, Azure subscription, period) of a snapshot: each day's version and totals."""

    customer_id: str
    entitlement_id: str
    period: str
    names: tuple[str | None, str | None, str | None, str | None]  # customer, subscription, plan id, reseller
    days: dict[str, DayView] = field(default_factory=dict)

    def pointer(self, snapshot: Snapshot, now: datetime) -> RatedPointer:
        """The pointer that serves this slice as the snapshot has it (no versions superseded yet)."""
        customer_name, subscription_name, plan_id, reseller = self.names
        return RatedPointer(
            customer_id=self.customer_id,
            entitlement_id=self.entitlement_id,
            period=self.period,
            currency=snapshot.currency,
            days=self.days,
            customer_name=customer_name,
            entitlement_description=subscription_name,
            subscription_id=plan_id.lower() if plan_id else None,
            tier2_mpn_id=reseller,
            snapshot_etag=snapshot.etag,
            snapshot_created_at=snapshot.created,
            stored_at=utc_text(now),
        )


@dataclass(frozen=True)
class SlicePlan:
    """What storing one slice takes, in this order: delete the ``expired`` versions' rows, write the lines of the
    ``changed_days`` (the new pointer's versions), then write ``pointer`` (or delete the old one with ``drop``)."""

    pointer: RatedPointer | None  # None: the stored pointer stays as it is (or goes, with ``drop``)
    changed_days: tuple[str, ...] = ()
    expired: tuple[Superseded, ...] = ()
    drop: bool = False  # the slice is gone from the snapshot and nothing of it is kept for readers


def _split(superseded: Iterable[Superseded], now: datetime) -> tuple[tuple[Superseded, ...], tuple[Superseded, ...]]:
    """(kept, expired): versions superseded less than GRACE ago are kept for readers in flight."""
    cutoff = utc_text(now - GRACE)
    kept: list[Superseded] = []
    expired: list[Superseded] = []
    for item in superseded:
        (kept if item.since > cutoff else expired).append(item)
    return tuple(kept), tuple(expired)


def plan_slice(old: RatedPointer | None, new: RatedPointer, now: datetime) -> SlicePlan:
    """Store ``new`` (a slice of the snapshot) over ``old``: only days whose version changed get rows, the versions
    ``old`` served and ``new`` does not are superseded, and an unchanged slice writes nothing."""
    since = utc_text(now)
    old_days = old.days if old is not None else {}
    changed = tuple(
        day for day, view in new.days.items() if day not in old_days or old_days[day].version != view.version
    )
    superseded = [
        *(old.superseded if old is not None else ()),
        *(Superseded(day, old_days[day].version, since) for day in changed if day in old_days),
        *(Superseded(day, view.version, since) for day, view in old_days.items() if day not in new.days),
    ]
    served = {(day, view.version) for day, view in new.days.items()}
    # A day re-rated back to a version it had before serves that version again: it is no longer superseded.
    kept, expired = _split((s for s in superseded if (s.day, s.version) not in served), now)
    pointer: RatedPointer | None = replace(new, superseded=kept)
    if old is not None and not changed and old_days.keys() == new.days.keys() and old.names == new.names:
        if kept == old.superseded:
            pointer = None  # nothing to write
        else:  # only the superseded list moved on: the data, and so its snapshot stamp, are the old ones
            pointer = replace(
                new,
                superseded=kept,
                stored_at=old.stored_at,
                snapshot_etag=old.snapshot_etag,
                snapshot_created_at=old.snapshot_created_at,
            )
    return SlicePlan(pointer, changed, expired)


def plan_vanished(old: RatedPointer, snapshot: Snapshot, now: datetime) -> SlicePlan:
    """A slice the snapshot no longer holds: its pointer names no day, its versions go once the grace is over."""
    since = utc_text(now)
    kept, expired = _split([*old.superseded, *(Superseded(d, v.version, since) for d, v in old.days.items())], now)
    if not kept:
        return SlicePlan(None, expired=expired, drop=True)
    if not old.days and kept == old.superseded:
        return SlicePlan(None)
    emptied = replace(
        old,
        days={},
        superseded=kept,
        stored_at=since,
        snapshot_etag=snapshot.etag,
        snapshot_created_at=snapshot.created,
    )
    return SlicePlan(emptied, expired=expired)


def add_to_customer(days: MutableMapping[str, CustomerDay], pointer: RatedPointer) -> None:
    """Count one Azure subscription's days into its customer's days."""
    for day, view in pointer.days.items():
        days[day] = days.get(day, NO_CUSTOMER_DAY).plus(view)
