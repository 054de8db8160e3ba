"""The table schema, defined once: every table's name, its keys and its rows.

The timer functions write rows only through the builders here and the API reads them only through the names
and keys here, so the contract between the two lives in one module (docs/architecture.md describes it).
Customer and subscription ids are lower-cased before they become keys or properties. Money and quantities are
text with every digit; ``raw`` is a record's JSON as received (re-serialised by ``shared.jsonutil.dumps``).
Data rows hold nothing that depends on when they were fetched, so a second run writes identical rows.
"""

from __future__ import annotations

import decimal
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypedDict, TypeVar

from shared import jsonutil
from shared.keys import digest, make_key
from shared.pricing import amounts
from shared.pricing.amounts import EXACT, Amounts
from shared.records import (
    BadRecord,
    optional_number,
    optional_text,
    optional_time,
    require_id,
    required_number,
    required_time,
)
from shared.shapes import (
    AZURE_UTILIZATION_RECORD,
    CUSTOMER_MONTHLY_USAGE_RECORD,
    SUBSCRIPTION_USAGE_SUMMARY,
    conform,
)
from shared.timeutil import utc_text

# -- table names (each prefixed with TABLE_PREFIX) ------------------------------------------------------------

USAGE_RECORDS = "UsageRecords"
USAGE_SUMMARIES = "UsageSummaries"
UTILIZATION = "Utilization"
CUSTOMERS = "Customers"
SUBSCRIPTIONS = "Subscriptions"
SYNC_STATE = "SyncState"
RUNS = "Runs"
QUARANTINE = "Quarantine"
# Azure plan rated usage (the Graph billing export), see shared/rated/ingest.py for how a snapshot is replaced:
RATED_SLICES = "RatedSlices"  # per (customer, Azure subscription, period, currency): the served version, daily totals
RATED_CUSTOMER_DAYS = "RatedCustomerDays"  # per (customer, period, currency): daily totals over its subscriptions
RATED_LINES = "RatedLines"  # every line item as received, under its day slice's version
ALL_TABLES = (
    USAGE_RECORDS,
    USAGE_SUMMARIES,
    UTILIZATION,
    CUSTOMERS,
    SUBSCRIPTIONS,
    SYNC_STATE,
    RUNS,
    QUARANTINE,
    RATED_SLICES,
    RATED_CUSTOMER_DAYS,
    RATED_LINES,
)

# -- fixed keys -------------------------------------------------------------------------------------------------

LATEST = "latest"  # UsageRecords partition / UsageSummaries row of the newest figures
CUSTOMER_PARTITION = "customer"  # the one partition of Customers
INVENTORY_STATE = "inventory"  # SyncState partition of the inventory's own state
INVENTORY_META = "meta"  # ... and its one row
UTILIZATION_STATE = "utilization"  # SyncState partition: doneThrough per subscription
USAGE_SUMMARY_STATE = "usage_summary"  # SyncState partition: lastSuccessAt per subscription
RATED_USAGE_STATE = "rated_usage"  # SyncState partition: one row per export stream (billing period, currency)
_PERIOD_PREFIX = "period-"
_WINDOW_KEY_FORMAT = "%Y%m%dT%H%MZ"
RUN_ERRORS_KEPT = 50  # errors and skipped subjects a run record lists (it counts them all)
# A quarantine row always fits: at most this much of the record (16,000 characters are at most 64,000 bytes
# of UTF-16, under the 64 KiB property limit), with the whole record's SHA-256 and length.
QUARANTINE_RAW_CHARS = 16_000
QUARANTINE_TEXT_CHARS = 1_000  # of the reason and of the source


LEGACY_OFFER = "MS-AZR-0145P"
AZURE_PLAN_PREFIX = "DZH318Z0BPS6"


class SubscriptionKind(StrEnum):
    """What this service makes of a subscription's offer id (the offer ids themselves stay open strings)."""

    LEGACY = "legacy"  # MS-AZR-0145P: utilization and usage summaries
    AZURE_PLAN = "azure_plan"  # DZH318Z0BPS6:...: usage summaries
    OTHER = "other"  # licences and the rest: no Azure usage

    @classmethod
    def of_offer(cls, offer_id: str) -> SubscriptionKind:
        """The kind of an offer id."""
        offer = offer_id.upper()
        if offer == LEGACY_OFFER:
            return cls.LEGACY
        if offer.startswith(AZURE_PLAN_PREFIX):
            return cls.AZURE_PLAN
        return cls.OTHER


KINDS = frozenset(SubscriptionKind)


class Relationship(StrEnum):
    """Whether the partner may read a customer (403/20002 means it may not)."""

    OK = "ok"
    FORBIDDEN = "forbidden"


class RunStatus(StrEnum):
    """A run record's status."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # some unit of work failed (errors say which)
    STALLED = "stalled"  # the budget ran out with work pending and nothing finished (notes say why)


# -- keys -------------------------------------------------------------------------------------------------------


def customer_key(customer_id: str) -> str:
    """The key of a customer: RowKey in Customers and UsageRecords, PartitionKey in Subscriptions."""
    return make_key(customer_id.lower())


def subscription_key(customer_id: str, subscription_id: str) -> str:
    """The PartitionKey of a subscription's data rows, and its RowKey in SyncState."""
    return make_key(customer_id.lower(), subscription_id.lower())


def period_key(billing_start: str) -> str:
    """``period-YYYY-MM-DD``: the date of a billing period's start as Partner Center wrote it (its local date)."""
    return _PERIOD_PREFIX + billing_start[:10]


def period_start(row_key: str) -> str | None:
    """The billing period start date of a ``period-YYYY-MM-DD`` RowKey, or None for any other key."""
    return row_key.removeprefix(_PERIOD_PREFIX) if row_key.startswith(_PERIOD_PREFIX) else None


def run_key(started_at: datetime) -> str:
    """A Runs RowKey: ``10**13`` less the start in epoch milliseconds, so the newest run sorts first."""
    return f"{10**13 - int(started_at.timestamp() * 1000):013d}"


def utilization_key(usage_start: datetime | str, window_start: datetime, identity: str) -> str:
    """``{usageStartUtc}|{windowStart}|{identity}``: a RowKey range is a usage-time range.

    ``usage_start`` may be given as its ``utc_text`` already."""
    start = usage_start if isinstance(usage_start, str) else utc_text(usage_start)
    return f"{start}|{_window_text(window_start)}|{identity}"


def window_key(window_start: datetime) -> str:
    """A reported-time window's start as utilization RowKeys hold it (``YYYYMMDDTHHMMZ``)."""
    return _window_text(window_start)


@lru_cache(maxsize=256)
def _window_text(window_start: datetime) -> str:
    # every record of a window formats the same start: once per window, not once per row
    return window_start.strftime(_WINDOW_KEY_FORMAT)


def rated_slice_key(entitlement_id: str, period: str, currency: str) -> str:
    """RatedSlices RowKey (PartitionKey: ``customer_key``): ``{azure subscription}|{YYYY-MM}|{currency}``."""
    return make_key(entitlement_id.lower(), period, currency.upper())


def rated_customer_key(period: str, currency: str) -> str:
    """RatedCustomerDays RowKey (PartitionKey: ``customer_key``): ``{YYYY-MM}|{currency}``."""
    return make_key(period, currency.upper())


def rated_lines_partition(customer_id: str, entitlement_id: str) -> str:
    """RatedLines PartitionKey: one Azure subscription of one customer."""
    return make_key(customer_id.lower(), entitlement_id.lower())


def rated_day_prefix(day: str, currency: str) -> str:
    """The RowKey prefix of one day slice's lines, every version: ``{YYYY-MM-DD}|{currency}|``."""
    return make_key(day, currency.upper()) + "|"


def rated_line_key(day: str, currency: str, version: str, index: int) -> str:
    """RatedLines RowKey: ``{day}|{currency}|{version}|{index}``; a RowKey range is a day range."""
    return f"{rated_day_prefix(day, currency)}{version}|{index:06d}"


def rated_stream_key(billing_period: str, currency: str) -> str:
    """The SyncState RowKey of one export stream (``current``/``last``, currency)."""
    return make_key(billing_period, currency.upper())


# -- rated usage rows: the contracts the rated ingest writes and the API reads ---------------------------------------

_Day = TypeVar("_Day")


def exact_sum(values: Iterable[str]) -> str:
    """The sum of decimal texts with every digit kept."""
    with decimal.localcontext(EXACT):
        return str(sum((Decimal(v) for v in values), Decimal(0)))


def _json_of(text: Any, empty: str) -> Any:
    try:
        return jsonutil.loads(text or empty)
    except ValueError:
        return jsonutil.loads(empty)


def _days_of(row: Mapping[str, Any], read: Callable[[Any], _Day | None]) -> dict[str, _Day]:
    """A row's ``days`` map, each day read by ``read``; a damaged map or day reads as no day."""
    days = _json_of(row.get("days"), "{}")
    items = days.items() if isinstance(days, dict) else ()
    return {str(day): view for day, value in items if (view := read(value)) is not None}


def _text_of(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    return None if value is None or value == "" else str(value)


def _as_stored(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    return None if value is None else str(value)


def _int_of(row: Mapping[str, Any], name: str) -> int | None:
    value = row.get(name)
    return None if value is None or value == "" else int(value)


@dataclass(frozen=True)
class DayView:
    """One day of a pointer: the version its lines are stored under and their totals (text, every digit)."""

    version: str
    lines: int
    billing_pre_tax_total: str
    pricing_pre_tax_total: Mapping[str, str] = field(default_factory=dict)  # by pricing currency ("" if none)
    by_category: Amounts = field(default_factory=dict)  # meter category -> [cost, list]: what prices are made of

    def as_json(self) -> dict[str, Any]:
        """Its shape inside the pointer's ``days``."""
        return {
            "version": self.version,
            "lines": self.lines,
            "billingPreTaxTotal": self.billing_pre_tax_total,
            "pricingPreTaxTotal": dict(self.pricing_pre_tax_total),
            "byCategory": amounts.as_json(self.by_category),
        }

    def amounts(self) -> Amounts:
        """Its cost and list per category; a day stored before categories were kept: its cost, list unknown."""
        return self.by_category or {"": [Decimal(self.billing_pre_tax_total), None]}

    @classmethod
    def of_json(cls, value: Any) -> DayView | None:
        """A day as stored; None for one that is not a day (a damaged row names no day rather than a wrong one)."""
        if not isinstance(value, Mapping) or not isinstance(value.get("version"), str):
            return None
        pricing = value.get("pricingPreTaxTotal")
        return cls(
            version=value["version"],
            lines=int(value.get("lines") or 0),
            billing_pre_tax_total=str(value.get("billingPreTaxTotal") or "0"),
            pricing_pre_tax_total={str(k): str(v) for k, v in pricing.items()} if isinstance(pricing, Mapping) else {},
            by_category=amounts.of_json(value.get("byCategory")),
        )


@dataclass(frozen=True)
class Superseded:
    """A day's version its pointer no longer names, kept for readers in flight; ``since`` is when it was replaced."""

    day: str
    version: str
    since: str


class _Period(TypedDict):
    customer_id: str
    period: str
    currency: str


def _period_of(row: Mapping[str, Any]) -> _Period:
    """Whose, which month and which currency a RatedSlices or RatedCustomerDays row is."""
    return {"customer_id": str(row["customerId"]), "period": str(row["period"]), "currency": str(row["currencyCode"])}


class _OfCustomer:
    """A row whose PartitionKey is its customer's key (RatedSlices, RatedCustomerDays)."""

    customer_id: str

    @property
    def partition_key(self) -> str:
        """Its PartitionKey: the customer."""
        return customer_key(self.customer_id)


@dataclass(frozen=True, kw_only=True)
class RatedPointer(_OfCustomer):
    """A RatedSlices row: which version of each day of one (customer, Azure subscription, period, currency) is served.

    Written whole, after the rows of every version it names (one entity: readers see one snapshot or the other).
    """

    customer_id: str
    entitlement_id: str
    period: str  # YYYY-MM
    currency: str
    days: Mapping[str, DayView]  # by day (YYYY-MM-DD), in day order
    customer_name: str | None = None
    entitlement_description: str | None = None
    subscription_id: str | None = None  # the Azure plan
    tier2_mpn_id: str | None = None  # the reseller of record (indirect model)
    superseded: tuple[Superseded, ...] = ()
    snapshot_etag: str | None = None  # of the export that last changed it
    snapshot_created_at: str | None = None
    stored_at: str | None = None

    @property
    def row_key(self) -> str:
        """Its RowKey: ``{azure subscription}|{YYYY-MM}|{currency}``."""
        return rated_slice_key(self.entitlement_id, self.period, self.currency)

    @property
    def line_count(self) -> int:
        """The lines of every day it names."""
        return sum(view.lines for view in self.days.values())

    @property
    def billing_pre_tax_total(self) -> str:
        """The exact sum of its days' totals."""
        return exact_sum(view.billing_pre_tax_total for view in self.days.values())

    @property
    def names(self) -> tuple[str | None, ...]:
        """What it says besides its days: customer, subscription, plan and reseller."""
        return (self.customer_name, self.entitlement_description, self.subscription_id, self.tier2_mpn_id)

    def row(self) -> dict[str, Any]:
        """Its RatedSlices row."""
        return {
            "PartitionKey": self.partition_key,
            "RowKey": self.row_key,
            "customerId": self.customer_id,
            "entitlementId": self.entitlement_id,
            "period": self.period,
            "currencyCode": self.currency,
            "customerName": self.customer_name,
            "entitlementDescription": self.entitlement_description,
            "subscriptionId": self.subscription_id,
            "tier2MpnId": self.tier2_mpn_id,
            "days": jsonutil.dumps({day: view.as_json() for day, view in self.days.items()}),
            "lineCount": self.line_count,
            "billingPreTaxTotal": self.billing_pre_tax_total,
            "superseded": jsonutil.dumps([[s.day, s.version, s.since] for s in self.superseded]),
            "snapshotETag": self.snapshot_etag,
            "snapshotCreatedAt": self.snapshot_created_at,
            "storedAt": self.stored_at,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RatedPointer:
        """The pointer of a RatedSlices row (damaged ``days`` or ``superseded`` read as empty)."""
        superseded = _json_of(row.get("superseded"), "[]")
        return cls(
            **_period_of(row),
            entitlement_id=str(row["entitlementId"]),
            days=_days_of(row, DayView.of_json),
            customer_name=_as_stored(row, "customerName"),
            entitlement_description=_as_stored(row, "entitlementDescription"),
            subscription_id=_as_stored(row, "subscriptionId"),
            tier2_mpn_id=_as_stored(row, "tier2MpnId"),
            superseded=tuple(
                Superseded(*map(str, item))
                for item in (superseded if isinstance(superseded, list) else ())
                if isinstance(item, list) and len(item) == 3
            ),
            snapshot_etag=_as_stored(row, "snapshotETag"),
            snapshot_created_at=_as_stored(row, "snapshotCreatedAt"),
            stored_at=_as_stored(row, "storedAt"),
        )


@dataclass(frozen=True)
class CustomerDay:
    """One day of a customer over its Azure subscriptions: lines, exact total, subscriptions with charges."""

    lines: int
    billing_pre_tax_total: str
    subscriptions: int

    def plus(self, view: DayView) -> CustomerDay:
        """This day with one more Azure subscription's day added."""
        total = exact_sum((self.billing_pre_tax_total, view.billing_pre_tax_total))
        return CustomerDay(self.lines + view.lines, total, self.subscriptions + 1)

    def as_json(self) -> dict[str, Any]:
        """Its shape inside the row's ``days``."""
        total = self.billing_pre_tax_total
        return {"lines": self.lines, "billingPreTaxTotal": total, "subscriptions": self.subscriptions}

    @classmethod
    def of_json(cls, value: Any) -> CustomerDay | None:
        """A day as stored; None for one that is not a day."""
        if not isinstance(value, Mapping):
            return None
        total = str(value.get("billingPreTaxTotal") or "0")
        return cls(int(value.get("lines") or 0), total, int(value.get("subscriptions") or 0))


NO_CUSTOMER_DAY = CustomerDay(0, "0", 0)


@dataclass(frozen=True, kw_only=True)
class RatedCustomerPeriod(_OfCustomer):
    """A RatedCustomerDays row: a customer's totals per day over its Azure subscriptions, for a period and currency."""

    customer_id: str
    period: str
    currency: str
    days: Mapping[str, CustomerDay]
    snapshot_etag: str | None = None
    stored_at: str | None = None

    @property
    def row_key(self) -> str:
        """Its RowKey: ``{YYYY-MM}|{currency}``."""
        return rated_customer_key(self.period, self.currency)

    @property
    def billing_pre_tax_total(self) -> str:
        """The exact sum of its days' totals."""
        return exact_sum(view.billing_pre_tax_total for view in self.days.values())

    def row(self) -> dict[str, Any]:
        """Its RatedCustomerDays row (days in day order)."""
        days = dict(sorted(self.days.items()))
        return {
            "PartitionKey": self.partition_key,
            "RowKey": self.row_key,
            "customerId": self.customer_id,
            "period": self.period,
            "currencyCode": self.currency,
            "days": jsonutil.dumps({day: view.as_json() for day, view in days.items()}),
            "billingPreTaxTotal": self.billing_pre_tax_total,
            "storedAt": self.stored_at,
            "snapshotETag": self.snapshot_etag,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RatedCustomerPeriod:
        """The totals of a RatedCustomerDays row (damaged ``days`` read as empty)."""
        return cls(
            **_period_of(row),
            days=_days_of(row, CustomerDay.of_json),
            snapshot_etag=_as_stored(row, "snapshotETag"),
            stored_at=_as_stored(row, "storedAt"),
        )


# What the API shows of an export stream (its stored snapshot and when it was last checked), in this order.
SNAPSHOT_FIELDS = ("billingPeriod", "currencyCode", "snapshotETag", "snapshotCreatedAt", "ingestedAt", "checkedAt")


@dataclass(frozen=True, kw_only=True)
class ExportStream:
    """A SyncState ``rated_usage`` row: one export stream (``current``/``last``, currency), the export in flight
    (polled again by the next run until it ends) and the snapshot stored. Written whole."""

    billing_period: str
    currency: str
    operation_url: str | None = None
    operation_started_at: str | None = None
    snapshot_etag: str | None = None
    snapshot_created_at: str | None = None
    ingested_at: str | None = None
    checked_at: str | None = None
    no_data_at: str | None = None
    line_count: int | None = None
    quarantined_lines: int | None = None
    slices: int | None = None
    periods: tuple[str, ...] = ()  # the months the snapshot held
    settled_period: str | None = None  # ``last`` only: the period whose settled snapshot is stored

    @property
    def key(self) -> str:
        """Its RowKey."""
        return rated_stream_key(self.billing_period, self.currency)

    def row(self) -> dict[str, Any]:
        """Its SyncState row."""
        return {
            "PartitionKey": RATED_USAGE_STATE,
            "RowKey": self.key,
            "billingPeriod": self.billing_period,
            "currencyCode": self.currency,
            "operationUrl": self.operation_url,
            "operationStartedAt": self.operation_started_at,
            "snapshotETag": self.snapshot_etag,
            "snapshotCreatedAt": self.snapshot_created_at,
            "ingestedAt": self.ingested_at,
            "checkedAt": self.checked_at,
            "noDataAt": self.no_data_at,
            "lineCount": self.line_count,
            "quarantinedLines": self.quarantined_lines,
            "slices": self.slices,
            "periods": ",".join(self.periods) or None,
            "settledPeriod": self.settled_period,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> ExportStream:
        """The stream of a SyncState ``rated_usage`` row (an empty property reads as absent)."""
        return cls(
            billing_period=str(row["billingPeriod"]),
            currency=str(row["currencyCode"]).upper(),
            operation_url=_text_of(row, "operationUrl"),
            operation_started_at=_text_of(row, "operationStartedAt"),
            snapshot_etag=_text_of(row, "snapshotETag"),
            snapshot_created_at=_text_of(row, "snapshotCreatedAt"),
            ingested_at=_text_of(row, "ingestedAt"),
            checked_at=_text_of(row, "checkedAt"),
            no_data_at=_text_of(row, "noDataAt"),
            line_count=_int_of(row, "lineCount"),
            quarantined_lines=_int_of(row, "quarantinedLines"),
            slices=_int_of(row, "slices"),
            periods=tuple(p for p in str(row.get("periods") or "").split(",") if p),
            settled_period=_text_of(row, "settledPeriod"),
        )

    def snapshot(self) -> dict[str, Any]:
        """What the API shows of it (``SNAPSHOT_FIELDS``; absent values as None)."""
        row = self.row()
        return {name: row[name] for name in SNAPSHOT_FIELDS}


# -- rated usage ingest: progress of an export in flight, its staging (issue 22) -----------------------------------
# An export is staged blob by blob (inline in the timer, or one queue message per blob on RATED_INGEST_QUEUE) into a
# staging table of its own, then committed slice by slice; see shared/rated/exports.py. Everything of one export is
# named by its ``export_id``, so a new manifest (new eTag or other blobs) never mixes with a stale one.

RATED_INGEST_STATE = "rated_ingest"  # SyncState partition: one ExportProgress per export stream
RATED_STAGING_PREFIX = "RatedStaging"  # + export id: the staging table of one export, dropped once it is committed
RATED_INGEST_QUEUE = "rated-ingest"  # one message per blob (and a commit message); the host's poison queue:
RATED_INGEST_POISON_QUEUE = RATED_INGEST_QUEUE + "-poison"
STAGING_INDEX = "index"  # staging partition: one row per (customer, Azure subscription, period) staged
STAGING_BLOBS = "blobs"  # staging partition: one BlobProgress per blob
STAGING_COMMIT = "commit"  # staging partition (and RowKey) of the one CommitProgress


def export_id_of(etag: str, blob_names: Iterable[str]) -> str:
    """The identity of one export's data: its manifest eTag and its blobs (16 hex)."""
    digest_ = hashlib.sha256(etag.encode("utf-8"))
    for name in blob_names:
        digest_.update(b"\0" + name.encode("utf-8"))
    return digest_.hexdigest()[:16]


def staging_table(export_id: str) -> str:
    """The short name of one export's staging table (letters and digits only, as table names must be)."""
    return RATED_STAGING_PREFIX + export_id


def staging_partition(customer_id: str, entitlement_id: str) -> str:
    """A staging PartitionKey of chunks: one Azure subscription of one customer (a ``|`` in it, unlike the others)."""
    return make_key(customer_id.lower(), entitlement_id.lower())


def staging_chunk_key(day: str, blob: int, segment: str, seq: int) -> str:
    """``{day}|{blob}|{segment}|{seq}``: a day's chunks are one RowKey range; a segment is one try at a blob."""
    return f"{day}|{blob:05d}|{segment}|{seq:05d}"


def staging_slice_key(customer_id: str, entitlement_id: str, period: str) -> str:
    """A STAGING_INDEX RowKey: ``{customer}|{azure subscription}|{YYYY-MM}``."""
    return make_key(customer_id.lower(), entitlement_id.lower(), period)


def _json_list(row: Mapping[str, Any], name: str) -> list[Any]:
    value = _json_of(row.get(name), "[]")
    return value if isinstance(value, list) else []


@dataclass(frozen=True, kw_only=True)
class ExportProgress:
    """A SyncState ``rated_ingest`` row: the export of one stream being staged and committed, across runs.

    Written by the timer only (workers write their blob rows and the commit row). ``marker`` is what progress
    looked like at the last run; ``stalled_runs`` counts the runs since it last moved.
    """

    billing_period: str
    currency: str
    export_id: str | None = None
    manifest_etag: str | None = None
    manifest_created: str | None = None
    root_directory: str | None = None
    sas_token: str | None = None  # a read-only SAS of about an hour; never logged nor shown
    blob_count: int = 0
    fanout: bool = False  # staged by queue messages (else inline, by the timer)
    started_at: str | None = None
    runs: int = 0  # timer runs that worked on it
    stalled_runs: int = 0
    marker: str | None = None
    progress_at: str | None = None
    settles: str | None = None  # ``last``: the period this export settles once stored (RATED_USAGE_SETTLE_DAYS)

    @property
    def key(self) -> str:
        """Its RowKey (the stream's)."""
        return rated_stream_key(self.billing_period, self.currency)

    def row(self) -> dict[str, Any]:
        """Its SyncState row."""
        return {
            "PartitionKey": RATED_INGEST_STATE,
            "RowKey": self.key,
            "billingPeriod": self.billing_period,
            "currencyCode": self.currency,
            "exportId": self.export_id,
            "manifestETag": self.manifest_etag,
            "manifestCreatedAt": self.manifest_created,
            "rootDirectory": self.root_directory,
            "sasToken": self.sas_token,
            "blobCount": self.blob_count,
            "fanout": self.fanout,
            "startedAt": self.started_at,
            "runs": self.runs,
            "stalledRuns": self.stalled_runs,
            "marker": self.marker,
            "progressAt": self.progress_at,
            "settles": self.settles,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> ExportProgress:
        """The progress of a SyncState ``rated_ingest`` row."""
        return cls(
            billing_period=str(row["billingPeriod"]),
            currency=str(row["currencyCode"]).upper(),
            export_id=_text_of(row, "exportId"),
            manifest_etag=_as_stored(row, "manifestETag"),
            manifest_created=_text_of(row, "manifestCreatedAt"),
            root_directory=_text_of(row, "rootDirectory"),
            sas_token=_text_of(row, "sasToken"),
            blob_count=_int_of(row, "blobCount") or 0,
            fanout=bool(row.get("fanout")),
            started_at=_text_of(row, "startedAt"),
            runs=_int_of(row, "runs") or 0,
            stalled_runs=_int_of(row, "stalledRuns") or 0,
            marker=_text_of(row, "marker"),
            progress_at=_text_of(row, "progressAt"),
            settles=_text_of(row, "settles"),
        )


@dataclass(frozen=True, kw_only=True)
class BlobProgress:
    """A staging row of one blob: how far it is staged. ``segments`` are the tries whose chunks count
    (``[segment, first line, last line]``, contiguous from line 1); chunks of any other try are ignored, so a
    worker that died halfway, or a second worker on the same blob, changes nothing. Replaced only if unchanged
    since read (ETag), by whoever stages the blob."""

    index: int
    name: str
    lines_done: int = 0  # the blob's line number (1-based, empty lines counted) staged through
    lines: int = 0  # line items read (quarantined included)
    quarantined: int = 0
    segments: tuple[tuple[str, int, int], ...] = ()
    staged: bool = False
    attempts: int = 0  # tries that failed (a poisoned message counts its every try)
    last_error: str | None = None
    poisoned: bool = False
    enqueued_at: str | None = None
    staged_at: str | None = None
    periods: tuple[str, ...] = ()  # the months its recorded segments hold

    @property
    def key(self) -> str:
        """Its RowKey."""
        return f"{self.index:05d}"

    def row(self) -> dict[str, Any]:
        """Its staging row."""
        return {
            "PartitionKey": STAGING_BLOBS,
            "RowKey": self.key,
            "name": self.name,
            "linesDone": self.lines_done,
            "lines": self.lines,
            "quarantined": self.quarantined,
            "segments": jsonutil.dumps([list(s) for s in self.segments]),
            "staged": self.staged,
            "attempts": self.attempts,
            "lastError": None if self.last_error is None else self.last_error[:QUARANTINE_TEXT_CHARS],
            "poisoned": self.poisoned,
            "enqueuedAt": self.enqueued_at,
            "stagedAt": self.staged_at,
            "periods": ",".join(self.periods) or None,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> BlobProgress:
        """The progress of a staging blob row."""
        return cls(
            index=int(row["RowKey"]),
            name=str(row["name"]),
            lines_done=_int_of(row, "linesDone") or 0,
            lines=_int_of(row, "lines") or 0,
            quarantined=_int_of(row, "quarantined") or 0,
            segments=tuple(
                (str(s[0]), int(s[1]), int(s[2])) for s in _json_list(row, "segments") if isinstance(s, list)
            ),
            staged=bool(row.get("staged")),
            attempts=_int_of(row, "attempts") or 0,
            last_error=_text_of(row, "lastError"),
            poisoned=bool(row.get("poisoned")),
            enqueued_at=_text_of(row, "enqueuedAt"),
            staged_at=_text_of(row, "stagedAt"),
            periods=tuple(p for p in str(row.get("periods") or "").split(",") if p),
        )


@dataclass(frozen=True, kw_only=True)
class CommitProgress:
    """The staging row of the commit: how far it went (slice groups in STAGING_INDEX order), what it wrote, who
    holds it. Resumed from ``cursor`` by the next committer; the lease keeps two from working at once."""

    cursor: str | None = None  # staging_partition of the last (customer, Azure subscription) committed
    customer_done: bool = True  # the customer of ``cursor`` was finished (its totals, its slices gone)
    final_done: bool = False  # customers gone from the snapshot were handled: the export is committed
    lease_until: str | None = None
    slices: int = 0
    slices_written: int = 0
    slices_removed: int = 0
    days_written: int = 0
    line_rows_written: int = 0
    line_rows_deleted: int = 0
    customers_written: int = 0
    lines: int = 0
    periods: tuple[str, ...] = ()

    def row(self) -> dict[str, Any]:
        """Its staging row."""
        return {
            "PartitionKey": STAGING_COMMIT,
            "RowKey": STAGING_COMMIT,
            "cursor": self.cursor,
            "customerDone": self.customer_done,
            "finalDone": self.final_done,
            "leaseUntil": self.lease_until,
            "slices": self.slices,
            "slicesWritten": self.slices_written,
            "slicesRemoved": self.slices_removed,
            "daysWritten": self.days_written,
            "lineRowsWritten": self.line_rows_written,
            "lineRowsDeleted": self.line_rows_deleted,
            "customersWritten": self.customers_written,
            "lines": self.lines,
            "periods": ",".join(self.periods) or None,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> CommitProgress:
        """The commit's progress of its staging row."""
        return cls(
            cursor=_text_of(row, "cursor"),
            customer_done=bool(row.get("customerDone", True)),
            final_done=bool(row.get("finalDone")),
            lease_until=_text_of(row, "leaseUntil"),
            slices=_int_of(row, "slices") or 0,
            slices_written=_int_of(row, "slicesWritten") or 0,
            slices_removed=_int_of(row, "slicesRemoved") or 0,
            days_written=_int_of(row, "daysWritten") or 0,
            line_rows_written=_int_of(row, "lineRowsWritten") or 0,
            line_rows_deleted=_int_of(row, "lineRowsDeleted") or 0,
            customers_written=_int_of(row, "customersWritten") or 0,
            lines=_int_of(row, "lines") or 0,
            periods=tuple(p for p in str(row.get("periods") or "").split(",") if p),
        )


# -- the inventory ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """A subscription as the inventory knows it."""

    customer_id: str
    subscription_id: str
    kind: SubscriptionKind
    offer_id: str
    status: str

    @property
    def key(self) -> str:
        """The partition key of this subscription's data rows."""
        return subscription_key(self.customer_id, self.subscription_id)

    @property
    def label(self) -> str:
        """How logs and run records name it."""
        return f"customer {self.customer_id} subscription {self.subscription_id}"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Subscription:
        """The subscription of a Subscriptions row."""
        return cls(
            customer_id=row["customerId"],
            subscription_id=row["subscriptionId"],
            kind=SubscriptionKind(row["kind"]) if row.get("kind") in KINDS else SubscriptionKind.OTHER,
            offer_id=row.get("offerId", ""),
            status=row.get("status") or "",
        )


def customer_row(
    customer_id: str, record: Any, *, relationship: Relationship = Relationship.OK, error_code: str | None = None
) -> dict[str, Any]:
    """The Customers row of one customer record as received."""
    profile = record.get("companyProfile") if isinstance(record, Mapping) else None
    name = profile.get("companyName") if isinstance(profile, Mapping) else None
    customer_id = customer_id.lower()
    return {
        "PartitionKey": CUSTOMER_PARTITION,
        "RowKey": customer_key(customer_id),
        "customerId": customer_id,
        "companyName": name,
        "raw": jsonutil.dumps(record),
        "relationship": str(relationship),
        "errorCode": error_code,
    }


def subscription_row(customer_id: str, record: Any) -> dict[str, Any]:
    """The Subscriptions row of one subscription record; status and offer kept as strings, unknown ones too."""
    if not isinstance(record, Mapping):
        raise BadRecord("subscription is not a JSON object")
    customer_id = customer_id.lower()
    subscription_id = require_id(record, "id")
    offer_id = optional_text(record, "offerId") or ""
    return {
        "PartitionKey": customer_key(customer_id),
        "RowKey": make_key(subscription_id),
        "customerId": customer_id,
        "subscriptionId": subscription_id,
        "offerId": offer_id,
        "offerName": optional_text(record, "offerName"),
        "friendlyName": optional_text(record, "friendlyName"),
        "status": optional_text(record, "status"),
        "billingType": optional_text(record, "billingType"),
        "partnerId": optional_text(record, "partnerId"),  # the indirect reseller's MPN id, when one sold it
        "kind": str(SubscriptionKind.of_offer(offer_id)),
        "raw": jsonutil.dumps(record),
    }


# -- data rows ------------------------------------------------------------------------------------------------------


def usage_record_rows(record: Any, billing_month: str) -> list[dict[str, Any]]:
    """The ``latest`` and the billing month's row of one CustomerMonthlyUsageRecord; BadRecord says why not."""
    if not isinstance(record, Mapping):
        raise BadRecord("record is not a JSON object")
    customer_id = require_id(record, "id", "resourceId")
    optional_time(record, "lastModifiedDate")
    budget = record.get("budget")
    if budget is not None and not isinstance(budget, Mapping):
        raise BadRecord("budget is not an object")
    totals = optional_number(record, "totalCost"), optional_number(record, "usdTotalCost")
    conform(record, CUSTOMER_MONTHLY_USAGE_RECORD)  # what is served conforms to what the API publishes
    upgraded = record.get("isUpgraded")
    properties = {
        "customerId": customer_id,
        "billingMonth": billing_month,
        "raw": jsonutil.dumps(record),
        "totalCost": totals[0],
        "usdTotalCost": totals[1],
        "currencyCode": optional_text(record, "currencyCode"),
        "currencyLocale": optional_text(record, "currencyLocale"),
        "name": optional_text(record, "name") or optional_text(record, "resourceName"),
        "isUpgraded": upgraded if isinstance(upgraded, bool) else None,
        "lastModifiedDate": optional_text(record, "lastModifiedDate"),
    }
    key = customer_key(customer_id)
    return [
        {"PartitionKey": LATEST, "RowKey": key, **properties},
        {"PartitionKey": billing_month, "RowKey": key, **properties},
    ]


def usage_summary_rows(
    customer_id: str, subscription_id: str, record: Any, *, latest: bool = True
) -> list[dict[str, Any]]:
    """The ``latest`` (optionally) and the billing period's row of one SubscriptionUsageSummary."""
    if not isinstance(record, Mapping):
        raise BadRecord(f"usage summary is not a JSON object but a JSON {type(record).__name__}")
    items = record.get("items")
    if "billingStartDate" not in record and isinstance(items, list):
        raise BadRecord(f"usage summary collection holds {len(items)} items, expected 1")
    required_time(record, "billingStartDate")
    required_time(record, "billingEndDate")
    optional_number(record, "totalCost")
    optional_number(record, "usdTotalCost")
    conform(record, SUBSCRIPTION_USAGE_SUMMARY)
    customer_id, subscription_id = customer_id.lower(), subscription_id.lower()
    properties = {
        "customerId": customer_id,
        "subscriptionId": subscription_id,
        "raw": jsonutil.dumps(record),
        "billingStartDate": record["billingStartDate"],
        "billingEndDate": record["billingEndDate"],
        "totalCost": optional_number(record, "totalCost"),
        "usdTotalCost": optional_number(record, "usdTotalCost"),
        "currencyCode": optional_text(record, "currencyCode"),
        "currencyLocale": optional_text(record, "currencyLocale"),
        "lastModifiedDate": optional_text(record, "lastModifiedDate"),
    }
    partition = subscription_key(customer_id, subscription_id)
    row_keys = [*([LATEST] if latest else []), period_key(properties["billingStartDate"])]
    return [{"PartitionKey": partition, "RowKey": row_key, **properties} for row_key in row_keys]


def utilization_row(
    customer_id: str, subscription_id: str, record: Any, window_start: datetime, window_end: datetime
) -> dict[str, Any]:
    """One AzureUtilizationRecord reported in a window; its identity is (window, meter, instance, start, end).

    Readers read ``raw`` (and the keys); what a row holds besides is what a portal or an operator filters on
    without parsing it: the ids and the exact quantity. Times, window, meter, resource and unit are in the keys
    or in ``raw`` and are not repeated (each costs every row its encoding, size and transfer).
    """
    if not isinstance(record, Mapping):
        raise BadRecord("record is not a JSON object")
    usage_start = required_time(record, "usageStartTime")
    usage_end = required_time(record, "usageEndTime")
    resource = record.get("resource")
    meter_id = resource.get("id") if isinstance(resource, Mapping) else None
    if not isinstance(meter_id, str) or not meter_id:
        raise BadRecord("missing resource.id (meter)")
    quantity = required_number(record, "quantity")
    conform(record, AZURE_UTILIZATION_RECORD)
    instance = record.get("instanceData")
    resource_uri = instance.get("resourceUri") if isinstance(instance, Mapping) else None
    start_text = utc_text(usage_start)
    identity = digest(meter_id.lower(), (resource_uri or "").lower(), start_text, utc_text(usage_end))
    customer_id, subscription_id = customer_id.lower(), subscription_id.lower()
    return {
        "PartitionKey": subscription_key(customer_id, subscription_id),
        "RowKey": utilization_key(start_text, window_start, identity),
        "customerId": customer_id,
        "subscriptionId": subscription_id,
        "raw": jsonutil.dumps(record),
        "quantity": quantity,
    }


# -- bookkeeping rows -------------------------------------------------------------------------------------------------


def state_row(partition: str, key: str, **fields: Any) -> dict[str, Any]:
    """A SyncState row (merged, so only ``fields`` change)."""
    return {"PartitionKey": partition, "RowKey": key, **fields}


def escape_surrogates(text: str) -> str:
    """Lone surrogates (text UTF-8 cannot encode) written as JSON escapes ``\\udXXX``; other text unchanged."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    return "".join(f"\\u{ord(char):04x}" if "\ud800" <= char <= "\udfff" else char for char in text)


def quarantine_row(function: str, *, source: str, raw_text: str, reason: str) -> dict[str, Any]:
    """A Quarantine row, which always fits and always encodes; its identity is the source and the whole record.

    ``raw`` is the record's JSON text, its lone surrogates escaped as JSON does (``rawEscaped``) and cut to
    QUARANTINE_RAW_CHARS (``rawTruncated``); ``rawSha256`` and ``rawLength`` are of the whole text received.
    """
    kept = escape_surrogates(raw_text)
    return {
        "PartitionKey": make_key(function),
        "RowKey": digest(source, raw_text, length=32),
        "source": escape_surrogates(source)[:QUARANTINE_TEXT_CHARS],
        "reason": escape_surrogates(reason)[:QUARANTINE_TEXT_CHARS],
        "raw": kept[:QUARANTINE_RAW_CHARS],
        "rawLength": len(raw_text),
        "rawSha256": hashlib.sha256(raw_text.encode("utf-8", "surrogatepass")).hexdigest(),
        "rawTruncated": len(kept) > QUARANTINE_RAW_CHARS,
        "rawEscaped": kept != raw_text,
    }


def run_row(
    *,
    function: str,
    run_id: str,
    correlation_id: str | None,
    started_at: datetime,
    finished_at: datetime | None,
    status: RunStatus,
    unit: str,
    counts: Mapping[str, int],
    errors: Sequence[Mapping[str, Any]],
    skipped: Sequence[str],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """A Runs row: what one run of a timer function did; ``done`` and ``pending`` count ``unit``s."""
    return {
        "PartitionKey": function,
        "RowKey": run_key(started_at),
        "function": function,
        "runId": run_id,
        "correlationId": correlation_id,
        "startedAt": started_at.isoformat(),
        "finishedAt": None if finished_at is None else finished_at.isoformat(),
        "status": str(status),
        "unit": unit,
        **counts,
        "errorCount": len(errors),
        "skippedCount": len(skipped),
        "errors": jsonutil.dumps(list(errors[:RUN_ERRORS_KEPT])),
        "skipped": jsonutil.dumps(list(skipped[:RUN_ERRORS_KEPT])),
        "notes": jsonutil.dumps(list(notes[:RUN_ERRORS_KEPT])),
    }


# -- API grants -------------------------------------------------------------------------------------------------------
# Who may read what under /api/scoped/ (shared/access/grants.py reads them, tools/grants.py writes them). One row per
# (tenant, client application): a multi-tenant application has the same id in every tenant that consented to it.

API_GRANTS = "ApiGrants"
GRANT_PARTITION = "grant"  # the one partition of ApiGrants


class GrantKind(StrEnum):
    """What a grant gives: everything, the customers of resellers (MPN ids), or customers by id."""

    ALL = "all"
    RESELLERS = "resellers"
    CUSTOMERS = "customers"


def grant_key(tenant_id: str, app_id: str) -> str:
    """The ApiGrants RowKey of one client application of one tenant."""
    return make_key(tenant_id.lower(), app_id.lower())


@dataclass(frozen=True)
class Grant:
    """What one client application of one tenant may read; ids are kept stripped and lower-case."""

    tenant_id: str
    app_id: str
    kind: GrantKind
    values: frozenset[str] = frozenset()  # reseller MPN ids or customer ids
    note: str = ""
    show_cost: bool = False  # may it read the partner's cost? (without it: prices under its price rule only)

    def __post_init__(self) -> None:
        if self.kind not in set(GrantKind):
            raise ValueError(f"a grant is one of {', '.join(GrantKind)}, not {str(self.kind)[:20]!r}")
        tenant_id, app_id = self.tenant_id.strip().lower(), self.app_id.strip().lower()
        if not tenant_id or not app_id:
            raise ValueError("a grant names a tenant and an application")
        values = frozenset(v.strip().lower() for v in self.values if v.strip())
        if self.kind != GrantKind.ALL and not values:
            raise ValueError(f"a {self.kind} grant names at least one id")
        if self.kind == GrantKind.ALL and values:
            raise ValueError("an 'all' grant takes no ids")
        for name, value in (("tenant_id", tenant_id), ("app_id", app_id), ("kind", GrantKind(self.kind))):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "values", values)

    @property
    def key(self) -> str:
        """Its ApiGrants RowKey."""
        return grant_key(self.tenant_id, self.app_id)

    def row(self, *, granted_at: datetime) -> dict[str, Any]:
        """Its ApiGrants row."""
        return {
            "PartitionKey": GRANT_PARTITION,
            "RowKey": self.key,
            "tenantId": self.tenant_id,
            "appId": self.app_id,
            "kind": str(self.kind),
            "values": ",".join(sorted(self.values)),
            "note": self.note,
            "showCost": self.show_cost,
            "grantedAt": utc_text(granted_at),
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Grant:
        """The grant of an ApiGrants row; ValueError for a row that grants nothing (and why)."""
        if not row.get("tenantId"):
            raise ValueError("stored before grants named a tenant: it grants nothing until it is added again")
        values = frozenset(str(row.get("values") or "").split(","))
        tenant_id, app_id, note = str(row["tenantId"]), str(row.get("appId") or ""), str(row.get("note") or "")
        grant = cls(tenant_id, app_id, GrantKind(str(row.get("kind"))), values, note, row.get("showCost") is True)
        if row.get("RowKey", grant.key) != grant.key:
            raise ValueError("its RowKey is not the one of its tenant and application")
        return grant
