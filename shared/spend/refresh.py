"""Keeping the spend read model current: marks written by the syncs, projections at the end of every run.

A sync that stores something a customer's spend is made of marks that customer's month (``mark``) right after the
rows themselves are stored (the utilization sync stores its windows' usage days, UtilizationDays, beside its rows).
At the end of every timer run (``shared.sync.runner``), ``project_marked`` projects the marked months within the
run's deadline: each customer's month, then each changed month's per-reseller totals. A mark is removed only if it
was not written again meanwhile (ETag), so a change stored during a projection is projected by the next one; marks
left by a run that reached its deadline are projected by the next run of any timer. Nothing here runs when a portal
reads.
"""

from __future__ import annotations

import decimal
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.deadline import Deadline
from shared.focus.writer import mark_changed
from shared.pricing.amounts import EXACT, money_text
from shared.spend import project
from shared.spend.ratecard import RateCard
from shared.spend.rows import (
    MARKS_PARTITION,
    RATE_CARDS,
    SPEND_MARKS,
    SPEND_MONTHS,
    SPEND_RESELLERS,
    RateCardSnapshot,
    ResellerMonth,
    SpendMark,
    SpendMonth,
    card_text,
    rate_card_partition,
)
from shared.table_store import TableStore
from shared.timeutil import utc_text

log = logging.getLogger(__name__)


def mark(store: TableStore, customers: Iterable[str], periods: Iterable[str]) -> int:
    """Mark customers' months to be projected again; returns the marks written."""
    marks = [SpendMark(c.lower(), p).row() for c in sorted(set(customers)) for p in sorted(set(periods))]
    return store.upsert(SPEND_MARKS, marks) if marks else 0


class CardBook:
    """The rate cards stored per (currency, region), parsed once per run; the card in force on a day is the
    newest snapshot taken on or before it, or the oldest one for days before the first snapshot."""

    def __init__(self, store: TableStore, region: str) -> None:
        self._store, self._region = store, region
        self._snapshots: dict[str, list[RateCardSnapshot]] = {}
        self._cards: dict[tuple[str, str], RateCard | None] = {}

    def snapshots(self, currency: str) -> list[RateCardSnapshot]:
        """The snapshots of a currency (in this book's region), oldest first."""
        currency = currency.upper()
        if currency not in self._snapshots:
            partition = rate_card_partition(currency, self._region)
            heads = [row for row in self._store.partition(RATE_CARDS, partition) if "|" not in str(row["RowKey"])]
            self._snapshots[currency] = [RateCardSnapshot.of_row(row) for row in heads]
        return self._snapshots[currency]

    def card(self, currency: str, day: str) -> RateCard | None:
        """The card in force on ``day`` (YYYY-MM-DD), or None when none is stored."""
        snapshots = self.snapshots(currency)
        if not snapshots:
            return None
        chosen = snapshots[0]
        for snapshot in snapshots:
            if snapshot.day <= day:
                chosen = snapshot
        key = (currency.upper(), chosen.day)
        if key not in self._cards:
            partition = rate_card_partition(currency, self._region)
            parts = self._store.query(
                RATE_CARDS,
                "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
                {"pk": partition, "lo": chosen.day + "|", "hi": chosen.day + "}"},
            )
            try:
                self._cards[key] = RateCard.parse(json.loads(card_text(parts), parse_float=Decimal))
            except (ValueError, OSError) as exc:
                log.error("the rate card %s %s of %s cannot be read: %s", currency, self._region, chosen.day, exc)
                self._cards[key] = None
        return self._cards[key]


@dataclass
class RefreshStats:
    """What one projection pass did."""

    months: int = 0
    rows: int = 0
    left: int = 0  # marked months left for the next run (deadline)
    periods: set[str] = field(default_factory=set)


BULK_AT = 16  # from this many customers of a month, their sources are read table by table, not customer by customer
CHUNK = 200  # customers written (and their marks removed) at a time: progress survives a deadline


def project_marked(
    store: TableStore, *, now: datetime, deadline: Deadline, region: str, default_currency: str | None = None
) -> RefreshStats:
    """Project every marked month, oldest customer key first, until done or the deadline."""
    stats = RefreshStats()
    marks: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in store.partition(SPEND_MARKS, MARKS_PARTITION):
        one = SpendMark.of_row(row)
        marks.setdefault((one.customer_id, one.period), []).append(row)
    if not marks:
        return stats
    cards = CardBook(store, region)
    exported = project.exported_periods(store)
    closed = project.closed_periods(store)
    by_period: dict[str, list[str]] = {}
    for customer_id, period in sorted(marks):
        by_period.setdefault(period, []).append(customer_id)
    for period, customers in sorted(by_period.items()):
        stored = project.Stored.many(store, period) if len(customers) >= BULK_AT else None
        size = CHUNK if stored is not None else 1
        for start in range(0, len(customers), size):
            if deadline.passed():
                stats.left += len(customers) - start
                break
            chunk = customers[start : start + size]
            found = stored or project.Stored.one(store, chunk[0], period)
            projections = {
                cid: project.compute(found.sources(cid, exported, default_currency, closed), period, cards.card, now)
                for cid in chunk
            }
            stats.rows += project.write(store, period, projections, found)
            stats.months += len(chunk)
            stats.periods.add(period)
            store.delete_unchanged_rows(SPEND_MARKS, [row for cid in chunk for row in marks[(cid, period)]])
    for period in sorted(stats.periods):
        stats.rows += reseller_totals(store, period, now=now)
    if stats.periods:
        mark_changed(store, stats.periods, now)  # the FOCUS dataset of these periods is written again
    if stats.left:
        log.info("spend: %d marked months left for the next run (deadline)", stats.left)
    return stats


def reseller_totals(store: TableStore, period: str, *, now: datetime) -> int:
    """Each reseller of record's month (and the direct one's), summed from the month's customer rows."""
    totals: dict[str | None, dict[str, Decimal]] = {}
    customers: dict[str | None, int] = {}
    with decimal.localcontext(EXACT):
        for row in store.partition(SPEND_MONTHS, period):
            month = SpendMonth.of_row(row)
            seen: set[str | None] = set()
            for currency, figures in month.currencies.items():
                for reseller, amount in figures.by_reseller.items():
                    key = reseller or None
                    bucket = totals.setdefault(key, {})
                    bucket[currency] = bucket.get(currency, Decimal(0)) + Decimal(amount)
                    seen.add(key)
            for key in seen:
                customers[key] = customers.get(key, 0) + 1
    rows = [
        ResellerMonth(
            period=period,
            reseller=reseller,
            customers=customers[reseller],
            totals={c: money_text(v) for c, v in figures.items()},
            stored_at=utc_text(now),
        ).row()
        for reseller, figures in totals.items()
    ]
    stale = [
        row
        for row in store.partition(SPEND_RESELLERS, period, select=["PartitionKey", "RowKey"])
        if row["RowKey"] not in {r["RowKey"] for r in rows}
    ]
    store.delete_rows(SPEND_RESELLERS, stale)
    return store.upsert(SPEND_RESELLERS, rows)
