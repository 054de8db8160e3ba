"""Storing one export snapshot: versioned day slices behind one pointer row per (customer, Azure subscription, period).

The export has no line ids and is a snapshot of the period to date, so a line is never updated in place. The
unit of data is the **day slice**: the lines of one (customer, Azure subscription, day, currency), sorted by
their digest. Its **version** is the first 16 hex digits of the SHA-256 over those digests, so equal data gives
an equal version and equal row keys (``{day}|{currency}|{version}|{index}``) whichever order Graph wrote it in.

What readers see is decided by one entity per (customer, Azure subscription, period, currency) in
``RatedSlices``: its ``days`` map names the version of each day, with the day's totals. The ingest writes the
rows of a new version first, then replaces that one entity (a single-entity write, atomic in Table Storage),
so a reader that reads the pointer and then only the rows of the versions it names sees one snapshot or the
other, never a mix. Versions a pointer no longer names are deleted at the first ingest after ``GRACE`` (so a
reader that read the old pointer still finds its rows), and a crash at any point leaves the old pointer served;
the rerun writes the same keys again and flips.

Incremental: a day whose version is unchanged writes nothing; an unchanged export writes no rows at all.
"""

from __future__ import annotations

import decimal
import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from shared import jsonutil
from shared.graph.blobs import BlobLine
from shared.rated.lines import RatedLine, parse_line
from shared.rated.spool import Spool, SpooledLine
from shared.records import BadRecord
from shared.sync.runs import SyncRun
from shared.table_store import TableStore
from shared.tables import (
    RATED_CUSTOMER_DAYS,
    RATED_LINES,
    RATED_SLICES,
    customer_key,
    rated_customer_key,
    rated_day_prefix,
    rated_line_key,
    rated_lines_partition,
    rated_slice_key,
    slice_days,
)
from shared.timeutil import utc_text

log = logging.getLogger(__name__)

GRACE = timedelta(hours=1)  # superseded versions stay readable this long for readers in flight
VERSION_CHARS = 16
# Sums keep every digit: a trap, not a rounding, if a total ever needed more than 400 digits.
EXACT = decimal.Context(prec=400, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])


@dataclass(frozen=True)
class Snapshot:
    """The export being stored: which stream it belongs to and which data version Graph says it is."""

    billing_period: str  # current / last (or an invoice id for a billed export)
    currency: str
    etag: str
    created: str | None


@dataclass
class IngestStats:
    """What one ingest read and wrote."""

    lines: int = 0
    quarantined: int = 0
    slices: int = 0
    slices_written: int = 0
    slices_removed: int = 0
    days_written: int = 0
    line_rows_written: int = 0
    line_rows_deleted: int = 0
    customers_written: int = 0
    periods: list[str] = field(default_factory=list)

    @property
    def data_rows_written(self) -> int:
        """Line, slice and customer rows written (deletions not counted)."""
        return self.line_rows_written + self.slices_written + self.customers_written


class _Day:
    """A day slice's digest and totals, accumulated line by line (lines arrive sorted by digest)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.lines = 0
        self.billing = Decimal(0)
        self.pricing: dict[str, Decimal] = {}

    def add(self, line: SpooledLine) -> None:
        self._hash.update(line.digest)
        self.lines += 1
        with decimal.localcontext(EXACT):
            self.billing += Decimal(line.billing_total)
            if line.pricing_total is not None:
                key = line.pricing_currency or ""
                self.pricing[key] = self.pricing.get(key, Decimal(0)) + Decimal(line.pricing_total)

    def view(self) -> dict[str, Any]:
        return {
            "version": self._hash.hexdigest()[:VERSION_CHARS],
            "lines": self.lines,
            "billingPreTaxTotal": str(self.billing),
            "pricingPreTaxTotal": {k: str(v) for k, v in sorted(self.pricing.items())},
        }


@dataclass
class _Slice:
    customer_id: str
    entitlement_id: str
    period: str
    names: tuple[str | None, str | None, str | None, str | None]
    days: dict[str, dict[str, Any]] = field(default_factory=dict)


def _sum(values: Iterable[str]) -> str:
    with decimal.localcontext(EXACT):
        return str(sum((Decimal(v) for v in values), Decimal(0)))


def spool_lines(lines: Iterable[BlobLine], spool: Spool, run: SyncRun, snapshot: Snapshot, stats: IngestStats) -> None:
    """Check every line and keep the placeable ones; the others are quarantined with their reason."""
    for blob_line in lines:
        stats.lines += 1
        source = (
            f"rated usage export {snapshot.billing_period} {snapshot.currency}, blob {blob_line.blob} "
            f"line {blob_line.number}"
        )
        try:
            line: RatedLine = parse_line(blob_line.text)
            if line.currency != snapshot.currency:
                raise BadRecord(f"BillingCurrency {line.currency} in the {snapshot.currency} export")
        except BadRecord as exc:
            run.quarantine(source=source, raw=blob_line.text, reason=str(exc), raw_is_text=True)
            stats.quarantined += 1
            continue
        spool.add(line)


def _slices(spool: Spool) -> Iterator[_Slice]:
    """The spool's slices in order, each with its days' versions and totals."""
    current: _Slice | None = None
    day: _Day | None = None
    day_name = ""
    for line in spool.grouped():
        period = line.day[:7]
        if current is None or (current.customer_id, current.entitlement_id, current.period) != (
            line.customer_id,
            line.entitlement_id,
            period,
        ):
            if current is not None and day is not None:
                current.days[day_name] = day.view()
                yield current
            current = _Slice(line.customer_id, line.entitlement_id, period, line.names)
            day, day_name = None, ""
        if line.day != day_name:
            if day is not None:
                current.days[day_name] = day.view()
            day, day_name = _Day(), line.day
        assert day is not None
        day.add(line)
    if current is not None and day is not None:
        current.days[day_name] = day.view()
        yield current


class Ingest:
    """One snapshot into the tables; ``run`` receives quarantined lines and counts."""

    def __init__(self, store: TableStore, run: SyncRun, snapshot: Snapshot, *, now: datetime) -> None:
        self.store, self.run, self.snapshot, self.now = store, run, snapshot, now
        self.stats = IngestStats()
        self._lines = store.writer(RATED_LINES)

    def ingest(self, lines: Iterable[BlobLine], *, spool_dir: str | None = None) -> IngestStats:
        """Spool the lines, then store every slice that changed; returns what was done."""
        with Spool(spool_dir) as spool:
            spool_lines(lines, spool, self.run, self.snapshot, self.stats)
            spool.seal()
            self._store(spool)
        self.run.add(rows=self.stats.data_rows_written)
        return self.stats

    # -- the passes ------------------------------------------------------------------------------------------

    def _store(self, spool: Spool) -> None:
        periods: set[str] = set()
        existing: dict[tuple[str, str], dict[str, Any]] | None = None
        existing_customers: dict[tuple[str, str], dict[str, Any]] = {}
        customer: str | None = None
        customer_days: dict[str, dict[str, dict[str, Any]]] = {}  # period -> day -> totals, of one customer
        loaded: set[str] = set()
        for piece in _slices(spool):
            if piece.period not in loaded:
                existing = self._load(piece.period, existing, existing_customers)
                loaded.add(piece.period)
                periods.add(piece.period)
            assert existing is not None
            if piece.customer_id != customer:  # the spool is ordered by customer: its slices come together
                if customer is not None:
                    self._write_customer(customer, customer_days, existing_customers)
                customer, customer_days = piece.customer_id, {}
            self._add_to_customer(customer_days.setdefault(piece.period, {}), piece)
            self.stats.slices += 1
            self._store_slice(spool, piece, existing.pop((customer_key(piece.customer_id), self._rk(piece)), None))
        if customer is not None:
            self._write_customer(customer, customer_days, existing_customers)
        for row in (existing or {}).values():
            self._remove_slice(row)
        gone = [{"PartitionKey": pk, "RowKey": rk} for pk, rk in existing_customers]
        self.store.delete_rows(RATED_CUSTOMER_DAYS, gone)
        self.stats.periods = sorted(periods)

    def _rk(self, piece: _Slice) -> str:
        return rated_slice_key(piece.entitlement_id, piece.period, self.snapshot.currency)

    def _load(
        self,
        period: str,
        existing: dict[tuple[str, str], dict[str, Any]] | None,
        customers: dict[tuple[str, str], dict[str, Any]],
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The pointers (and customer totals) stored for this period and currency, by key."""
        found = dict(existing or {})
        parameters = {"p": period, "c": self.snapshot.currency}
        query = "period eq @p and currencyCode eq @c"
        for row in self.store.query(RATED_SLICES, query, parameters):
            found[(row["PartitionKey"], row["RowKey"])] = row
        for row in self.store.query(RATED_CUSTOMER_DAYS, query, parameters, select=["PartitionKey", "RowKey", "days"]):
            customers[(row["PartitionKey"], row["RowKey"])] = row
        return found

    # -- one slice ---------------------------------------------------------------------------------------------

    def _store_slice(self, spool: Spool, piece: _Slice, old: Mapping[str, Any] | None) -> None:
        old_days = slice_days(old)
        superseded = _superseded_of(old)
        changed = [d for d, view in piece.days.items() if old_days.get(d, {}).get("version") != view["version"]]
        superseded += [[d, old_days[d]["version"], utc_text(self.now)] for d in changed if d in old_days]
        superseded += [[d, v["version"], utc_text(self.now)] for d, v in old_days.items() if d not in piece.days]
        kept = self._collect(piece.customer_id, piece.entitlement_id, superseded)
        row = self._slice_row(piece, kept)
        if old is not None and not changed and set(old_days) == set(piece.days):
            unchanged = all(old.get(k) == row.get(k) for k in _COMPARED)
            if unchanged and kept == _superseded_of(old):
                return  # nothing to write
            if unchanged:
                row["storedAt"], row["snapshotETag"] = old.get("storedAt"), old.get("snapshotETag")
                row["snapshotCreatedAt"] = old.get("snapshotCreatedAt")
        before = self._lines.written
        for day in changed:
            partition = rated_lines_partition(piece.customer_id, piece.entitlement_id)
            version = piece.days[day]["version"]
            for index, text in enumerate(spool.texts(piece.customer_id, piece.entitlement_id, day)):
                key = rated_line_key(day, self.snapshot.currency, version, index)
                self._lines.add({"PartitionKey": partition, "RowKey": key, "line": text})
            self.stats.days_written += 1
        self._lines.flush()  # every row of the new versions is stored before the pointer names them
        self.stats.line_rows_written += self._lines.written - before
        self.store.upsert_one(RATED_SLICES, row)
        self.stats.slices_written += 1

    def _slice_row(self, piece: _Slice, superseded: list[list[str]]) -> dict[str, Any]:
        customer_name, subscription_name, plan_id, reseller = piece.names
        return {
            "PartitionKey": customer_key(piece.customer_id),
            "RowKey": self._rk(piece),
            "customerId": piece.customer_id,
            "entitlementId": piece.entitlement_id,
            "period": piece.period,
            "currencyCode": self.snapshot.currency,
            "customerName": customer_name,
            "entitlementDescription": subscription_name,
            "subscriptionId": plan_id.lower() if plan_id else None,
            "tier2MpnId": reseller,
            "days": jsonutil.dumps(piece.days),
            "lineCount": sum(int(v["lines"]) for v in piece.days.values()),
            "billingPreTaxTotal": _sum(v["billingPreTaxTotal"] for v in piece.days.values()),
            "superseded": jsonutil.dumps(superseded),
            "snapshotETag": self.snapshot.etag,
            "snapshotCreatedAt": self.snapshot.created,
            "storedAt": utc_text(self.now),
        }

    def _remove_slice(self, old: Mapping[str, Any]) -> None:
        """A slice the snapshot no longer holds: its pointer names no day; its rows go after the grace."""
        old_days = slice_days(old)
        superseded = _superseded_of(old) + [[d, v["version"], utc_text(self.now)] for d, v in old_days.items()]
        kept = self._collect(old["customerId"], old["entitlementId"], superseded)
        if not kept:
            self.store.delete_rows(RATED_SLICES, [old])
            self.stats.slices_removed += 1
            return
        row = {**dict(old), "days": "{}", "lineCount": 0, "billingPreTaxTotal": "0", "superseded": jsonutil.dumps(kept)}
        row |= {"storedAt": utc_text(self.now), "snapshotETag": self.snapshot.etag}
        row["snapshotCreatedAt"] = self.snapshot.created
        if old_days:
            self.stats.slices_removed += 1
        self.store.upsert_one(RATED_SLICES, row)

    def _collect(self, customer_id: str, entitlement_id: str, superseded: list[list[str]]) -> list[list[str]]:
        """Delete the rows of versions superseded longer than GRACE ago; the younger ones are returned."""
        kept: list[list[str]] = []
        cutoff = utc_text(self.now - GRACE)
        partition = rated_lines_partition(customer_id, entitlement_id)
        for day, version, since in superseded:
            if since > cutoff:
                kept.append([day, version, since])
                continue
            prefix = f"{rated_day_prefix(day, self.snapshot.currency)}{version}|"
            rows = self.store.query(
                RATED_LINES,
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                {"pk": partition, "lo": prefix, "hi": prefix[:-1] + "}"},
                select=["PartitionKey", "RowKey"],
            )
            self.stats.line_rows_deleted += self.store.delete_rows(RATED_LINES, rows)
        return kept

    # -- customer totals ---------------------------------------------------------------------------------------

    @staticmethod
    def _add_to_customer(days: dict[str, dict[str, Any]], piece: _Slice) -> None:
        for day, view in piece.days.items():
            total = days.setdefault(day, {"lines": 0, "billingPreTaxTotal": "0", "subscriptions": 0})
            total["lines"] += view["lines"]
            total["subscriptions"] += 1
            total["billingPreTaxTotal"] = _sum((total["billingPreTaxTotal"], view["billingPreTaxTotal"]))

    def _write_customer(
        self,
        customer_id: str,
        periods: dict[str, dict[str, dict[str, Any]]],
        existing: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        for period, days in periods.items():
            self._write_customer_period(customer_id, period, days, existing)

    def _write_customer_period(
        self,
        customer_id: str,
        period: str,
        days: dict[str, dict[str, Any]],
        existing: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        pk, rk = customer_key(customer_id), rated_customer_key(period, self.snapshot.currency)
        text = jsonutil.dumps(dict(sorted(days.items())))
        old = existing.pop((pk, rk), None)
        if old is not None and old.get("days") == text:
            return
        self.store.upsert_one(
            RATED_CUSTOMER_DAYS,
            {
                "PartitionKey": pk,
                "RowKey": rk,
                "customerId": customer_id,
                "period": period,
                "currencyCode": self.snapshot.currency,
                "days": text,
                "billingPreTaxTotal": _sum(v["billingPreTaxTotal"] for v in days.values()),
                "storedAt": utc_text(self.now),
                "snapshotETag": self.snapshot.etag,
            },
        )
        self.stats.customers_written += 1


_COMPARED = ("days", "customerName", "entitlementDescription", "subscriptionId", "tier2MpnId")


def _superseded_of(row: Mapping[str, Any] | None) -> list[list[str]]:
    if row is None:
        return []
    try:
        found = jsonutil.loads(row.get("superseded") or "[]")
    except ValueError:
        return []
    return [list(map(str, item)) for item in found if isinstance(item, list) and len(item) == 3]
